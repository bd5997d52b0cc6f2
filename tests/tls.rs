//! Issue 12, item 6: mutual TLS between members. A cluster with it elects,
//! replicates and forwards as usual; a member whose certificate is not from
//! the cluster's CA, a member without TLS, and a holder of a valid
//! certificate posing as another member are all refused; unusable files are
//! reported at open.
//!
//! Issue 20, item 5: a certificate speaks for a member (`floyd://ip:port`),
//! not just an IP, so members sharing an IP cannot pose as each other,
//! whether one dials the other or is dialed; a certificate naming only an IP
//! is refused where members share it, and at open.

mod common;

use common::certs::Ca;
use common::{free_ports, wait_until, Cluster};
use floyd::transport::{config_id, read_frame, write_frame, PROTOCOL_VERSION};
use floyd::wire::frame::Body;
use floyd::wire::Handshake;
use floyd::{Error, Floyd, Options, TlsFiles};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

fn with_tls(mut o: Options, files: TlsFiles) -> Options {
    o.tls = Some(files);
    o
}

/// Starts nodes `among` of a cluster reserved with `n` members, node `i`
/// (at member address `id`) with `tls(i, id)`.
fn start(n: usize, among: &[usize], tls: impl Fn(usize, &str) -> Option<TlsFiles>) -> Cluster {
    let mut c = Cluster::start_partial(n, 0);
    c.initial = n;
    for &i in among {
        let mut o = c.options(i);
        o.tls = tls(i, &c.id(i));
        c.open_with(i, o);
    }
    c
}

fn log_of(c: &Cluster, i: usize) -> String {
    std::fs::read_to_string(c.path(i).join("LOG")).unwrap_or_default()
}

#[test]
fn three_members_on_one_ip_with_member_bound_certificates_elect_replicate_forward_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    // All on 127.0.0.1: each certificate names its member, floyd://127.0.0.1:port.
    let mut c = start(3, &[0, 1, 2], |i, id| Some(ca.member_of(&format!("m{i}"), [id])));
    let leader = c.wait_for_leader();
    let follower = c.follower_of(leader);
    // Through a follower: the command is forwarded over a TLS link.
    c.write_retrying(follower, b"k", b"over tls");
    for i in 0..3 {
        c.wait_caught_up(i, leader);
        assert_eq!(c.node(i).dirty_read(b"k").unwrap(), b"over tls");
    }
    // Links reconnect after a member restarts, through a new TLS handshake.
    c.stop(leader);
    c.restart(leader);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k2", b"again");
    for i in 0..3 {
        c.wait_caught_up(i, leader);
        assert_eq!(c.node(i).read(b"k2").unwrap(), b"again");
    }
}

#[test]
fn a_member_far_behind_catches_up_by_a_snapshot_streamed_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let mut c = Cluster::start_partial(3, 0);
    c.initial = 3;
    for i in 0..3 {
        let mut o = with_tls(c.options(i), ca.member_of(&format!("m{i}"), [c.id(i)]));
        o.snapshot_log_entries = 200;
        o.snapshot_keep_entries = 10;
        // Several chunks, each several TLS records.
        o.snapshot_chunk_bytes = 40_000;
        c.open_with(i, o);
    }
    let leader = c.wait_for_leader();
    let lagging = c.follower_of(leader);
    c.stop(lagging);
    let value = vec![b'x'; 500];
    for k in 0..600 {
        c.write_retrying(leader, format!("k{k}").as_bytes(), &value);
    }
    wait_until("the leader compacting its log", || {
        c.node(leader).server_status().first_log_index > 100
    });
    c.restart(lagging);
    c.wait_caught_up(lagging, leader);
    assert!(
        log_of(&c, lagging).contains("snapshot installed"),
        "caught up by a snapshot"
    );
    for k in [0, 299, 599] {
        assert_eq!(
            c.node(lagging).dirty_read(format!("k{k}").as_bytes()).unwrap(),
            value
        );
    }
}

#[test]
fn a_member_whose_certificate_is_not_from_the_cluster_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let rogue = Ca::new(dir.path(), "rogue");
    // The rogue member trusts the cluster's CA but holds a certificate from its own.
    let c = start(3, &[0, 1], |i, id| Some(ca.member_of(&format!("m{i}"), [id])));
    let mut rogue_files = rogue.member_of("m2", [c.id(2)]);
    rogue_files.ca = ca.ca_path();
    let mut rogue_opts = with_tls(c.options(2), rogue_files.clone());
    // Its own certificate does not chain to the CA it names: refused at open.
    match Floyd::open(rogue_opts.clone()) {
        Err(Error::InvalidArgument(why)) => assert!(why.contains("does not chain to the CA"), "{why}"),
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    // Trusting its own CA, it opens, but the members refuse it and it them.
    rogue_opts.tls = Some(TlsFiles {
        ca: rogue.ca_path(),
        ..rogue_files
    });
    let intruder = Floyd::open(rogue_opts).unwrap();
    let leader = c.wait_for_leader_among(&[0, 1]);
    c.write_retrying(leader, b"k", b"v");
    wait_until("both members logging the refused handshakes", || {
        (0..2).all(|i| log_of(&c, i).contains("TLS handshake failed"))
    });
    let intruder_log = std::fs::read_to_string(c.path(2).join("LOG")).unwrap();
    assert!(intruder_log.contains("TLS handshake"), "{intruder_log}");
    assert_eq!(
        intruder.get_leader(),
        None,
        "the intruder never heard from the leader"
    );
    assert!(matches!(intruder.dirty_read(b"k"), Err(Error::NotFound)));
    for i in 0..2 {
        assert_eq!(
            c.node(i).server_status().term,
            c.node(leader).server_status().term
        );
    }
    intruder.close();
}

#[test]
fn a_member_without_tls_cannot_talk_to_a_tls_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let c = start(3, &[0, 1], |i, id| Some(ca.member_of(&format!("m{i}"), [id])));
    let plain = Floyd::open(c.options(2)).unwrap();
    let leader = c.wait_for_leader_among(&[0, 1]);
    c.write_retrying(leader, b"k", b"v");
    wait_until("the members refusing the plain connection", || {
        (0..2).all(|i| log_of(&c, i).contains("TLS handshake failed"))
    });
    assert_eq!(plain.get_leader(), None);
    assert!(matches!(plain.dirty_read(b"k"), Err(Error::NotFound)));
    plain.close();
}

/// A TLS connection to `port` with `files`, then a handshake claiming to be `claimed`.
fn claim(files: &TlsFiles, port: u16, claimed: &str, members: &[String]) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    #[allow(deprecated)] // ring, as the library uses (see src/transport/tls.rs)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&files.ca).unwrap())
        .unwrap();
    let cert = CertificateDer::from_pem_file(&files.cert).unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .unwrap();
    let conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into()),
    )
    .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let hello = Handshake {
        cluster_id: "floyd".into(),
        from: claimed.to_string(),
        protocol_version: PROTOCOL_VERSION,
        max_protocol_version: floyd::transport::MAX_PROTOCOL_VERSION,
        config_id: config_id(members),
        cluster_uid: String::new(),
    };
    write_frame(&mut tls, Body::Handshake(hello)).map_err(|e| e.to_string())?;
    match read_frame(&mut tls, 1 << 16).map_err(|e| e.to_string())? {
        Body::HandshakeAck(ack) if ack.accepted => Ok(()),
        Body::HandshakeAck(ack) => Err(ack.reason),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// `n` member addresses on 127.0.0.1, and their ports.
fn members_on_one_ip(n: usize) -> (Vec<String>, Vec<u16>) {
    let ports = free_ports(n);
    let members = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    (members, ports)
}

#[test]
fn a_certificate_bound_to_one_member_cannot_pose_as_another_member_on_its_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    // A, B and C on one IP; C runs, A and B are only certificates.
    let (m, ports) = members_on_one_ip(3);
    let (a, b, c) = (&m[0], &m[1], &m[2]);
    let mut o = Options::new(&m.join(","), "127.0.0.1", ports[2], dir.path().join("c"));
    o.tls = Some(ca.member_of("c", [c]));
    let node = Floyd::open(o).unwrap();
    let a_files = ca.member_of("a", [a]);
    let b_files = ca.member_of("b", [b]);
    // Each member's certificate speaks for its member...
    claim(&a_files, ports[2], a, &m).unwrap();
    claim(&b_files, ports[2], b, &m).unwrap();
    // ...and B's, though it names the same IP, not for A.
    let why = claim(&b_files, ports[2], a, &m).unwrap_err();
    assert!(
        why.contains(&format!("names floyd://{b}, not floyd://{a}")),
        "{why}"
    );
    // A certificate for several members speaks for each of them.
    let both = ca.member_of("a-and-b", [a, b]);
    claim(&both, ports[2], a, &m).unwrap();
    claim(&both, ports[2], b, &m).unwrap();
    node.close();
}

/// A TLS server holding another member's certificate (valid, from the
/// cluster's CA) at a member's address, as an impostor would answer a member
/// dialing it. Counts the dialers that went on to send their handshake, and
/// those that left without one.
struct Impostor {
    addr: String,
    handshakes: Arc<AtomicUsize>,
    left: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Impostor {
    fn listen(addr: &str, files: &TlsFiles) -> Impostor {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        #[allow(deprecated)] // ring, as the library uses (see src/transport/tls.rs)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_file(&files.cert).unwrap()],
                PrivateKeyDer::from_pem_file(&files.key).unwrap(),
            )
            .unwrap();
        let cfg = Arc::new(cfg);
        let listener = TcpListener::bind(addr).unwrap();
        let (handshakes, left, stop) = Default::default();
        let mut imp = Impostor {
            addr: addr.to_string(),
            handshakes,
            left,
            stop,
            thread: None,
        };
        let (handshakes, left, stop) = (imp.handshakes.clone(), imp.left.clone(), imp.stop.clone());
        imp.thread = Some(std::thread::spawn(move || {
            for sock in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(sock) = sock else { continue };
                sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, sock);
                match read_frame(&mut tls, 1 << 16) {
                    Ok(Body::Handshake(_)) => handshakes.fetch_add(1, Ordering::SeqCst),
                    _ => left.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
        imp
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    fn left(&self) -> usize {
        self.left.load(Ordering::SeqCst)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_member_dialing_another_on_its_ip_refuses_a_certificate_that_is_not_that_members() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let mut c = Cluster::start_partial(3, 0);
    c.initial = 3;
    let (a, b) = (c.id(0), c.id(1));
    // At A's address, a server holding B's certificate (same IP, other
    // member); at B's, one holding a certificate that names only the IP.
    let as_b = Impostor::listen(&a, &ca.member_of("b", [&b]));
    let ip_only = Impostor::listen(&b, &ca.member("ip-only", "127.0.0.1", false));
    c.open_with(2, with_tls(c.options(2), ca.member_of("c", [c.id(2)])));
    wait_until("C dialing A and B", || {
        (as_b.left() > 0 && ip_only.left() > 0) || as_b.handshakes() + ip_only.handshakes() > 0
    });
    assert_eq!(
        as_b.handshakes(),
        0,
        "C sent its handshake to B's certificate at A's address"
    );
    assert_eq!(
        ip_only.handshakes(),
        0,
        "C sent its handshake to a certificate that names only the IP of three members"
    );
    wait_until("C logging why", || {
        let log = log_of(&c, 2);
        log.contains(&format!("names floyd://{b}, not floyd://{a}"))
            && log.contains("names only IP 127.0.0.1")
    });
}

#[test]
fn ip_only_certificates_cannot_tell_members_on_one_ip_apart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let (m, ports) = members_on_one_ip(2);
    let mut o = Options::new(&m.join(","), "127.0.0.1", ports[0], dir.path().join("a"));
    let ip_only = ca.member("ip-only", "127.0.0.1", false);
    // A node whose certificate names only its IP, which another member shares, does not open.
    o.tls = Some(ip_only.clone());
    match Floyd::open(o.clone()) {
        Err(Error::InvalidArgument(why)) => {
            assert!(why.contains("names only IP 127.0.0.1"), "{why}");
            assert!(why.contains(&m[0]) && why.contains(&m[1]), "{why}");
            assert!(why.contains(&format!("URI:floyd://{}", m[0])), "{why}");
        }
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    // With its own bound certificate it opens, and refuses a peer that
    // holds one naming only the IP: it could be either member.
    o.tls = Some(ca.member_of("a", [&m[0]]));
    let node = Floyd::open(o).unwrap();
    let why = claim(&ip_only, ports[0], &m[1], &m).unwrap_err();
    assert!(why.contains("names only IP 127.0.0.1"), "{why}");
    assert!(why.contains("floyd://ip:port"), "{why}");
    claim(&ca.member_of("b", [&m[1]]), ports[0], &m[1], &m).unwrap();
    node.close();
}

#[test]
fn an_ip_only_certificate_still_speaks_for_the_one_member_at_its_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let ports = free_ports(2);
    // Members on two IPs: a certificate naming an IP names one member.
    let members = vec![
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.2:{}", ports[1]),
    ];
    let node_dir = dir.path().join("node");
    let mut o = Options::new(&members.join(","), "127.0.0.1", ports[0], &node_dir);
    o.tls = Some(ca.member("m0", "127.0.0.1", false));
    let node = Floyd::open(o).unwrap();
    // A certificate that names the claimed member's IP passes...
    claim(
        &ca.member("honest", "127.0.0.2", false),
        ports[0],
        &members[1],
        &members,
    )
    .unwrap();
    // ...one from the same CA for another address does not.
    let why = claim(
        &ca.member("elsewhere", "127.0.0.9", false),
        ports[0],
        &members[1],
        &members,
    )
    .unwrap_err();
    assert!(why.contains("does not name 127.0.0.2"), "{why}");
    // Without any certificate, no TLS handshake completes.
    let mut plain = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = Handshake {
        cluster_id: "floyd".into(),
        from: members[1].clone(),
        protocol_version: PROTOCOL_VERSION,
        max_protocol_version: floyd::transport::MAX_PROTOCOL_VERSION,
        config_id: config_id(&members),
        cluster_uid: String::new(),
    };
    write_frame(&mut plain, Body::Handshake(hello)).unwrap();
    assert!(!matches!(
        read_frame(&mut plain, 1 << 16),
        Ok(Body::HandshakeAck(_))
    ));
    node.close();
}

#[test]
fn unusable_tls_files_are_reported_at_open_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let port = free_ports(1)[0];
    let opts = |files: TlsFiles| {
        let mut o = Options::new(
            &format!("127.0.0.1:{port}"),
            "127.0.0.1",
            port,
            dir.path().join("node"),
        );
        o.tls = Some(files);
        o
    };
    let good = ca.member("good", "127.0.0.1", false);
    let not_this_member = format!(
        "names floyd://127.0.0.1:{}, not this member's address floyd://127.0.0.1:{port}",
        port + 1
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let cases: Vec<(TlsFiles, &str)> = vec![
        (
            TlsFiles {
                ca: dir.path().join("missing.pem"),
                ..good.clone()
            },
            "cannot read the TLS CA file",
        ),
        (
            TlsFiles {
                cert: garbage.clone(),
                ..good.clone()
            },
            "no PEM certificate",
        ),
        (
            TlsFiles {
                key: garbage.clone(),
                ..good.clone()
            },
            "no PEM private key",
        ),
        (
            TlsFiles {
                key: ca.member("other", "127.0.0.1", false).key,
                ..good.clone()
            },
            "TLS setup failed",
        ),
        (ca.member("expired", "127.0.0.1", true), "not valid now"),
        (
            ca.member("wrong-ip", "127.0.0.9", false),
            "does not name this node's address 127.0.0.1",
        ),
        (
            ca.member_of("another-member", [format!("127.0.0.1:{}", port + 1)]),
            &not_this_member,
        ),
    ];
    for (files, expected) in cases {
        match Floyd::open(opts(files.clone())) {
            Err(Error::InvalidArgument(why)) => assert!(why.contains(expected), "{files:?}: {why}"),
            other => panic!(
                "{files:?}: expected InvalidArgument with {expected:?}, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // The good files open: a certificate naming the IP of the only member
    // there, or one naming the member.
    Floyd::open(opts(good)).unwrap().close();
    let bound = ca.member_of("bound", [format!("127.0.0.1:{port}")]);
    Floyd::open(opts(bound)).unwrap().close();
}
