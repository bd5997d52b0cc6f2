//! The transport on loopback: handshake checks (cluster, membership,
//! version), oversized frames, Raft traffic overtaking forwarded values,
//! connection reaping, and links that notice a closed or silently dead
//! connection instead of writing into it.

mod common;

use common::wait_until;
use floyd::core::Message;
use floyd::transport::{
    config_id, read_frame, write_frame, Handler, Identity, PeerConfig, PeerLink, Server, ServerConfig,
    MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use floyd::wire::{
    command::Op, frame::Body, ClientRequest, ClientResponse, Command, Handshake, HandshakeAck, Ping, Put,
    RequestVote,
};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(String, Message)>>,
    /// Raft messages and forwarded requests in arrival order: "vote T" / "req N".
    arrivals: Mutex<Vec<String>>,
    undeliverable: Mutex<Vec<u64>>,
    in_doubt: Mutex<Vec<u64>>,
    link_states: Mutex<Vec<bool>>,
    peers_connected: Mutex<Vec<String>>,
    /// The group of every Raft message and forwarded request, in arrival order.
    groups: Mutex<Vec<u64>>,
}

impl Handler for Recorder {
    fn on_message(&self, from: &str, group: u64, msg: Message) {
        self.arrivals.lock().push(format!("vote {}", msg.term()));
        self.groups.lock().push(group);
        self.messages.lock().push((from.to_string(), msg));
    }
    fn on_client_request(&self, _: &str, group: u64, req: ClientRequest) {
        self.arrivals.lock().push(format!("req {}", req.request_id));
        self.groups.lock().push(group);
    }
    fn on_client_response(&self, _: &str, _: u64, _: ClientResponse) {}
    fn on_undeliverable(&self, _: &str, _: u64, req: ClientRequest) {
        self.undeliverable.lock().push(req.request_id);
    }
    fn on_thread_panic(&self, thread: &str, message: &str) {
        panic!("{thread} panicked: {message}");
    }
    fn on_peer_connected(&self, from: &str) {
        self.peers_connected.lock().push(from.to_string());
    }
    fn on_in_doubt(&self, _: &str, request_ids: Vec<(u64, u64)>) {
        self.in_doubt
            .lock()
            .extend(request_ids.into_iter().map(|(_, id)| id));
    }
    fn on_link_state(&self, _: &str, connected: bool) {
        self.link_states.lock().push(connected);
    }
}

const CLIENT: &str = "127.0.0.1:1";

fn ids(members: &[&str]) -> u64 {
    config_id(&members.iter().map(|m| m.to_string()).collect::<Vec<_>>())
}

/// A node of cluster `cluster` that has no identity yet and bootstraps `members`.
fn identity(cluster: &str, members: &[&str]) -> Arc<Identity> {
    let id = Identity::new(cluster, ids(members));
    id.update("", members.iter().map(|m| m.to_string()));
    Arc::new(id)
}

fn server_cfg() -> ServerConfig {
    ServerConfig {
        name: "test".into(),
        identity: identity("c1", &[CLIENT]),
        max_frame_bytes: MAX_FRAME_BYTES,
        idle_timeout: Duration::from_secs(5),
        tls: None,
    }
}

fn server(listener: TcpListener, recorder: Arc<Recorder>) -> Server {
    Server::start(listener, server_cfg(), recorder).unwrap()
}

fn link_cfg(port: u16, my_id: &str, cluster: &str) -> PeerConfig {
    PeerConfig {
        name: "test".into(),
        local_ip: "127.0.0.1".parse().unwrap(),
        my_id: my_id.into(),
        peer: format!("127.0.0.1:{port}"),
        identity: identity(cluster, &[CLIENT]),
        connect_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        keepalive: Duration::from_millis(50),
        liveness_timeout: Duration::from_secs(5),
        in_doubt_window: Duration::from_secs(10),
        max_backoff: Duration::from_millis(100),
        snapshot_chunk_bytes: floyd::transport::DEFAULT_SNAPSHOT_CHUNK_BYTES,
        snapshot_bytes_per_sec: 64 << 20,
        tls: None,
    }
}

fn link(port: u16, my_id: &str, cluster: &str, handler: Arc<Recorder>) -> PeerLink {
    PeerLink::spawn(link_cfg(port, my_id, cluster), handler).unwrap()
}

fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn vote(term: u64) -> Body {
    Body::RequestVote(RequestVote {
        term,
        ..Default::default()
    })
}

fn request(id: u64, value: bytes::Bytes) -> Body {
    Body::ClientRequest(ClientRequest {
        request_id: id,
        command: Some(Command {
            op: Some(Op::Put(Put {
                key: "k".into(),
                value,
                lease: 0,
            })),
            session: None,
        }),
    })
}

fn terms(r: &Recorder) -> Vec<u64> {
    r.messages.lock().iter().map(|(_, m)| m.term()).collect()
}

fn handshake(from: &str, config_id: u64) -> Body {
    Body::Handshake(Handshake {
        cluster_id: "c1".into(),
        from: from.into(),
        protocol_version: PROTOCOL_VERSION,
        max_protocol_version: floyd::transport::MAX_PROTOCOL_VERSION,
        config_id,
        cluster_uid: String::new(),
    })
}

/// Connects by hand and passes the handshake.
fn raw_member(port: u16) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(common::DEADLINE)).unwrap();
    write_frame(&mut c, handshake(CLIENT, ids(&[CLIENT]))).unwrap();
    match read_frame(&mut c, 1 << 16).unwrap() {
        Body::HandshakeAck(ack) => assert!(ack.accepted, "{}", ack.reason),
        other => panic!("expected an ack, got {other:?}"),
    }
    c
}

/// A peer that accepts `conns` connections one after another, acknowledges
/// each handshake and then only reads: it never answers a ping, like a
/// connection whose other end vanished in a partition.
struct SilentServer {
    frames: Arc<Mutex<Vec<Body>>>,
    accepted: Arc<Mutex<usize>>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    fn start(listener: TcpListener, conns: usize) -> SilentServer {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (f, a) = (frames.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            for _ in 0..conns {
                let (mut c, _) = listener.accept().unwrap();
                assert!(matches!(read_frame(&mut c, 1 << 16), Ok(Body::Handshake(_))));
                // A peer of version 5: its ack announces no newer version.
                let ack = HandshakeAck {
                    accepted: true,
                    reason: String::new(),
                    max_protocol_version: 0,
                };
                write_frame(&mut c, Body::HandshakeAck(ack)).unwrap();
                *a.lock() += 1;
                while let Ok(body) = read_frame(&mut c, MAX_FRAME_BYTES) {
                    f.lock().push(body);
                }
            }
        });
        SilentServer {
            frames,
            accepted,
            thread: Some(thread),
        }
    }

    fn got_request(&self, id: u64) -> bool {
        self.frames
            .lock()
            .iter()
            .any(|b| matches!(b, Body::ClientRequest(r) if r.request_id == id))
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if !std::thread::panicking() {
                t.join().unwrap();
            }
        }
    }
}

#[test]
fn a_member_is_heard_and_a_restarted_peer_gets_every_later_message() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let s = server(listener, received.clone());
    let l = link(port, CLIENT, "c1", Arc::new(Recorder::default()));
    assert!(l.send(0, vote(1)));
    wait_until("first message", || terms(&received) == vec![1]);
    assert_eq!(received.messages.lock()[0].0, CLIENT);

    // The peer restarts: the old connection is closed under the link.
    s.stop();
    let again = Arc::new(Recorder::default());
    let _s2 = server(TcpListener::bind(("127.0.0.1", port)).unwrap(), again.clone());
    wait_until("the link noticing the closed connection", || {
        // Keep sending: Raft retries, and the link must not swallow messages forever.
        l.send(0, vote(2));
        !terms(&again).is_empty()
    });
}

#[test]
fn strangers_and_other_clusters_are_refused() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let wrong_cluster = link(port, CLIENT, "other", Arc::new(Recorder::default()));
    let stranger = link(port, "127.0.0.1:2", "c1", Arc::new(Recorder::default()));
    let member = link(port, CLIENT, "c1", Arc::new(Recorder::default()));
    for _ in 0..5 {
        wrong_cluster.send(0, vote(7));
        stranger.send(0, vote(8));
    }
    member.send(0, vote(9));
    wait_until("the member's message", || terms(&received).contains(&9));
    assert!(!terms(&received).iter().any(|t| *t == 7 || *t == 8));
}

/// Collects the text of warnings and errors logged through it.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(self.clone())
    }
    fn count(&self, needle: &str) -> usize {
        self.0.lock().iter().filter(|w| w.contains(needle)).count()
    }
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!("{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::WARN
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(String::new());
        event.record(&mut f);
        self.0.lock().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn links_with_another_member_list_are_refused_and_say_why_once() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let server_log = Warnings::default();
    let _s = tracing::dispatcher::with_default(&server_log.dispatch(), || server(listener, received.clone()));
    // Both dialers are members in the server's eyes, but one knows fewer
    // members and the other more: they would count quorums differently.
    let (fewer_log, more_log) = (Warnings::default(), Warnings::default());
    let mut fewer = link_cfg(port, CLIENT, "c1");
    fewer.identity = identity("c1", &["127.0.0.1:3"]);
    let mut more = link_cfg(port, CLIENT, "c1");
    more.identity = identity("c1", &[CLIENT, "127.0.0.1:2"]);
    let links: Vec<PeerLink> = [(fewer, &fewer_log), (more, &more_log)]
        .into_iter()
        .map(|(cfg, log)| {
            let handler = Arc::new(Recorder::default());
            tracing::dispatcher::with_default(&log.dispatch(), || PeerLink::spawn(cfg, handler).unwrap())
        })
        .collect();
    wait_until("several refused redials of each link", || {
        for l in &links {
            l.send(0, vote(7));
        }
        server_log.count("member list differs") >= 6
    });
    assert!(server_log.count("ours has 1 members: 127.0.0.1:1") >= 6);
    for log in [&fewer_log, &more_log] {
        assert_eq!(
            log.count("member list differs"),
            1,
            "logged once per reason: {:?}",
            log.0.lock()
        );
    }
    assert!(links.iter().all(|l| !l.is_connected()));
    assert!(received.arrivals.lock().is_empty());
    assert!(received.peers_connected.lock().is_empty());
}

#[test]
fn oversized_frames_and_garbage_close_the_connection() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    for junk in [
        &[0x7f, 0xff, 0xff, 0xff][..],
        b"\x00\x00\x00\x04\xff\xff\xff\xff",
        b"PING\r\n",
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(junk).unwrap();
        let mut buf = Vec::new();
        // The server answers a bad handshake (or nothing) and closes: read reaches EOF.
        let _ = c.read_to_end(&mut buf);
    }
    assert!(received.messages.lock().is_empty());
}

#[test]
fn a_forwarded_command_that_cannot_be_sent_is_reported_undeliverable() {
    let port = common::free_ports(1)[0]; // nobody listens there
    let handler = Arc::new(Recorder::default());
    let l = link(port, CLIENT, "c1", handler.clone());
    l.send(
        0,
        Body::ClientRequest(ClientRequest {
            request_id: 42,
            command: None,
        }),
    );
    wait_until("undeliverable report", || {
        handler.undeliverable.lock().contains(&42)
    });
}

#[test]
fn a_command_over_the_frame_limit_is_undeliverable_and_the_link_goes_on() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let handler = Arc::new(Recorder::default());
    let l = link(port, CLIENT, "c1", handler.clone());
    l.send(0, vote(1));
    wait_until("connected", || terms(&received) == [1]);
    // Zeroed pages are not touched: encoding refuses on the computed length.
    l.send(0, request(5, bytes::Bytes::from(vec![0u8; MAX_FRAME_BYTES + 1])));
    l.send(0, vote(2));
    wait_until("the oversized command reported", || {
        handler.undeliverable.lock().contains(&5)
    });
    wait_until("the next message", || terms(&received) == [1, 2]);
    assert_eq!(*handler.link_states.lock(), [true], "the connection was kept");
    assert!(!received.arrivals.lock().contains(&"req 5".to_string()));
}

#[test]
fn a_vote_queued_behind_large_forwarded_values_overtakes_them() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let l = link(port, CLIENT, "c1", Arc::new(Recorder::default()));
    l.send(0, vote(1));
    wait_until("connected", || terms(&received) == [1]);
    let value = bytes::Bytes::from(vec![7u8; 1 << 20]);
    const N: u64 = 60;
    for id in 0..N {
        assert!(l.send(0, request(id, value.clone())));
    }
    assert!(l.send(0, vote(2)));
    wait_until("everything", || received.arrivals.lock().len() == N as usize + 2);
    let arrivals = received.arrivals.lock().clone();
    let at = arrivals.iter().position(|a| a == "vote 2").unwrap();
    // One queue would deliver it last (61); two let it pass all but the batch in flight.
    assert!(
        at <= 10,
        "the vote arrived after {} of {N} values: {arrivals:?}",
        at - 1
    );
    // Each queue keeps its own order.
    let reqs: Vec<&String> = arrivals.iter().filter(|a| a.starts_with("req")).collect();
    assert!(reqs.iter().zip(0..N).all(|(a, id)| **a == format!("req {id}")));
}

#[test]
fn finished_connections_leave_the_registry_without_another_accept() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let s = server(listener, received.clone());
    let mut conns: Vec<TcpStream> = (0..6).map(|_| raw_member(port)).collect();
    // Two more that never finish a handshake.
    conns.extend((0..2).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()));
    wait_until("every connection served", || s.connection_count() == 8);
    wait_until("every handshake reported", || {
        received.peers_connected.lock().len() == 6
    });
    drop(conns);
    // Before, a finished connection stayed registered until the next accept.
    wait_until("every finished connection gone", || s.connection_count() == 0);
}

#[test]
fn the_server_answers_a_ping_with_a_pong_on_the_same_connection() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let mut c = raw_member(port);
    for _ in 0..3 {
        write_frame(&mut c, Body::Ping(Ping {})).unwrap();
        assert!(matches!(read_frame(&mut c, 1 << 16), Ok(Body::Pong(_))));
    }
    assert_eq!(*received.peers_connected.lock(), [CLIENT]);
}

#[test]
fn a_link_whose_peer_stops_answering_is_declared_dead_and_its_requests_in_doubt() {
    let (listener, port) = listen();
    let fake = SilentServer::start(listener, 1);
    let handler = Arc::new(Recorder::default());
    let mut cfg = link_cfg(port, CLIENT, "c1");
    cfg.liveness_timeout = Duration::from_millis(300);
    let l = PeerLink::spawn(cfg, handler.clone()).unwrap();
    let sent = Instant::now();
    l.send(0, request(7, "v".into()));
    wait_until("the request written", || fake.got_request(7));
    assert!(l.is_connected());
    wait_until("the dead connection noticed", || {
        *handler.link_states.lock() == [true, false]
    });
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "declared dead too early"
    );
    assert!(!l.is_connected());
    assert_eq!(*handler.in_doubt.lock(), [7]);
    assert!(
        handler.undeliverable.lock().is_empty(),
        "it was written: in doubt, not undeliverable"
    );
    assert!(fake.frames.lock().iter().any(|b| matches!(b, Body::Ping(_))));
    drop(l);
}

#[test]
fn an_unanswered_probe_replaces_the_connection() {
    let (listener, port) = listen();
    let fake = SilentServer::start(listener, 2);
    let handler = Arc::new(Recorder::default());
    let mut cfg = link_cfg(port, CLIENT, "c1");
    // Liveness alone would take a minute: only the probe can be this fast.
    cfg.liveness_timeout = Duration::from_secs(60);
    cfg.connect_timeout = Duration::from_millis(200);
    let l = PeerLink::spawn(cfg, handler.clone()).unwrap();
    l.send(0, request(3, "v".into()));
    wait_until("the request written", || fake.got_request(3));
    l.probe();
    wait_until("a new connection", || *fake.accepted.lock() == 2);
    wait_until("the redial reported", || {
        *handler.link_states.lock() == [true, false, true]
    });
    assert_eq!(*handler.in_doubt.lock(), [3]);
    drop(l);
}

#[test]
fn probing_a_healthy_link_keeps_it_and_it_keeps_delivering() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let handler = Arc::new(Recorder::default());
    // The probes' deadline is connect_timeout (1 s): long enough for a loaded machine to answer.
    let l = link(port, CLIENT, "c1", handler.clone());
    l.send(0, vote(1));
    wait_until("connected", || terms(&received) == [1]);
    let probed = Instant::now();
    for _ in 0..3 {
        l.probe();
    }
    // Past every probe's deadline, messages still flow on the first connection.
    let mut term = 1;
    wait_until("deliveries well after the probes' deadlines", || {
        term += 1;
        l.send(0, vote(term));
        probed.elapsed() > Duration::from_millis(2500) && terms(&received).len() >= 5
    });
    wait_until("the last message", || terms(&received).contains(&term));
    assert!(l.is_connected());
    assert_eq!(*handler.link_states.lock(), [true], "never torn down");
    assert_eq!(received.peers_connected.lock().len(), 1, "never redialled");
}

/// Issue 21: one connection carries the frames of many groups, each
/// delivered with its group (the id travels in the frame; group 0 writes none).
#[test]
fn frames_of_many_groups_share_a_link_and_arrive_with_their_group() {
    let (listener, port) = listen();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let l = link(port, CLIENT, "c1", Arc::new(Recorder::default()));
    for (i, group) in [0, 7, u64::MAX, 7].into_iter().enumerate() {
        assert!(l.send(group, vote(i as u64 + 1)));
    }
    assert!(l.send(
        42,
        Body::ClientRequest(ClientRequest {
            request_id: 9,
            ..Default::default()
        })
    ));
    wait_until("every frame", || received.groups.lock().len() == 5);
    assert_eq!(terms(&received), vec![1, 2, 3, 4]);
    assert_eq!(*received.groups.lock(), vec![0, 7, u64::MAX, 7, 42]);
}

/// Issue 21: a peer of version 5 (its handshake ack announces nothing
/// newer) knows no groups: only group 0's frames go to it, and a forwarded
/// command of another group is reported undeliverable (certainly not applied).
#[test]
fn a_peer_of_version_5_gets_group_zero_frames_only() {
    let (listener, port) = listen();
    let old = SilentServer::start(listener, 1);
    let sent = Arc::new(Recorder::default());
    let l = link(port, CLIENT, "c1", sent.clone());
    assert!(l.send(7, vote(1)));
    assert!(l.send(0, request(5, "v".into())));
    assert!(l.send(7, request(6, "v".into())));
    assert!(l.send(0, vote(2)));
    wait_until("group 0's frames", || {
        old.got_request(5)
            && old
                .frames
                .lock()
                .iter()
                .any(|b| matches!(b, Body::RequestVote(v) if v.term == 2))
    });
    wait_until("the other group's command reported", || {
        *sent.undeliverable.lock() == vec![6]
    });
    assert!(!old.got_request(6));
    assert!(!old
        .frames
        .lock()
        .iter()
        .any(|b| matches!(b, Body::RequestVote(v) if v.term == 1)));
    l.stop();
}
