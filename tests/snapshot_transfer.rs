//! InstallSnapshot on loopback: a real `PeerLink` streams a snapshot to a real
//! `Server` whose handler feeds a `SnapshotReceiver`. Covers byte-identical
//! arrival of a multi-file snapshot, Raft frames overtaking a paced stream,
//! refused chunks that leave nothing committed, a connection cut mid-stream,
//! an unreadable file, a stopped link, and a replaced offer.

mod common;

use common::wait_until;
use floyd::core::Message;
use floyd::storage::snapshots::{SnapshotHandle, SnapshotStore};
use floyd::transport::{
    config_id, read_frame, write_frame, Handler, Identity, PeerConfig, PeerLink, ReceivedSnapshot, Server,
    ServerConfig, SnapshotOffer, SnapshotReceiver, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use floyd::wire::{
    frame::Body, ClientRequest, ClientResponse, Handshake, Ping, RequestVote, SnapshotChunk, SnapshotMeta,
};
use parking_lot::Mutex;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEADER: &str = "127.0.0.1:1";

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Vote(u64),
    Chunk { index: u64, seq: u64, done: bool },
    Received(u64),
    Refused(String),
}

/// Both ends' handler: the follower's assembles chunks, the leader's records reports.
struct Recorder {
    receiver: Option<SnapshotReceiver>,
    events: Mutex<Vec<Event>>,
    received: Mutex<Vec<ReceivedSnapshot>>,
    sent: Mutex<Vec<(u64, bool)>>,
    /// The group of every chunk, in arrival order.
    chunk_groups: Mutex<Vec<u64>>,
}

impl Recorder {
    fn new(receiver: Option<SnapshotReceiver>) -> Arc<Recorder> {
        Arc::new(Recorder {
            receiver,
            events: Mutex::default(),
            received: Mutex::default(),
            sent: Mutex::default(),
            chunk_groups: Mutex::default(),
        })
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    fn saw_chunk(&self, index: u64, min_seq: u64) -> bool {
        self.events()
            .iter()
            .any(|e| matches!(e, Event::Chunk { index: i, seq, .. } if *i == index && *seq >= min_seq))
    }

    fn received(&self, index: u64) -> Option<ReceivedSnapshot> {
        self.received
            .lock()
            .iter()
            .find(|r| r.snapshot.index() == index)
            .cloned()
    }

    fn sent(&self) -> Vec<(u64, bool)> {
        self.sent.lock().clone()
    }
}

impl Handler for Recorder {
    fn on_message(&self, _: &str, _: u64, msg: Message) {
        self.events.lock().push(Event::Vote(msg.term()));
    }
    fn on_client_request(&self, _: &str, _: u64, _: ClientRequest) {}
    fn on_client_response(&self, _: &str, _: u64, _: ClientResponse) {}
    fn on_undeliverable(&self, _: &str, _: u64, _: ClientRequest) {}
    fn on_thread_panic(&self, thread: &str, message: &str) {
        panic!("{thread} panicked: {message}");
    }
    fn on_snapshot_chunk(&self, from: &str, group: u64, chunk: SnapshotChunk) {
        self.chunk_groups.lock().push(group);
        self.events.lock().push(Event::Chunk {
            index: chunk.snapshot_index,
            seq: chunk.seq,
            done: chunk.done,
        });
        let rx = self.receiver.as_ref().expect("a follower");
        match rx.on_chunk(from, chunk) {
            Ok(Some(r)) => {
                self.events.lock().push(Event::Received(r.snapshot.index()));
                self.received.lock().push(r);
            }
            Ok(None) => {}
            Err(e) => self.events.lock().push(Event::Refused(e.to_string())),
        }
    }
    fn on_snapshot_sent(&self, _: &str, _: u64, snapshot_index: u64, ok: bool) {
        self.sent.lock().push((snapshot_index, ok));
    }
}

fn identity() -> Arc<Identity> {
    let members = vec![LEADER.to_string()];
    let id = Identity::new("c1", config_id(&members));
    id.update("", members);
    Arc::new(id)
}

/// The follower: a server on loopback whose handler assembles into a store in `dir`.
fn follower(dir: &Path) -> (Server, u16, Arc<Recorder>, Arc<SnapshotStore>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let store = Arc::new(SnapshotStore::open(dir).unwrap());
    let rec = Recorder::new(Some(SnapshotReceiver::new(store.clone(), 64 << 20)));
    let cfg = ServerConfig {
        name: "follower".into(),
        identity: identity(),
        max_frame_bytes: MAX_FRAME_BYTES,
        idle_timeout: Duration::from_secs(5),
        tls: None,
    };
    let server = Server::start(listener, cfg, rec.clone()).unwrap();
    (server, port, rec, store)
}

fn leader_link(port: u16, chunk: usize, bytes_per_sec: u64) -> (PeerLink, Arc<Recorder>) {
    let cfg = PeerConfig {
        name: "leader".into(),
        local_ip: "127.0.0.1".parse().unwrap(),
        my_id: LEADER.into(),
        peer: format!("127.0.0.1:{port}"),
        identity: identity(),
        connect_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(5),
        keepalive: Duration::from_millis(50),
        liveness_timeout: Duration::from_secs(5),
        in_doubt_window: Duration::from_secs(10),
        max_backoff: Duration::from_millis(100),
        snapshot_chunk_bytes: chunk,
        snapshot_bytes_per_sec: bytes_per_sec,
        tls: None,
    };
    let rec = Recorder::new(None);
    (PeerLink::spawn(cfg, rec.clone()).unwrap(), rec)
}

/// Deterministic bytes that differ at every offset, so a misplaced chunk shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A snapshot on the leader: a file of several chunks plus a partial one,
/// one in a subdirectory, and an empty one.
fn snapshot(store: &SnapshotStore, index: u64, big: usize) -> Arc<SnapshotHandle> {
    let st = store.stage("test").unwrap();
    let data = st.data_dir();
    std::fs::write(data.join("big.sst"), pattern(big, index as u32)).unwrap();
    std::fs::create_dir_all(data.join("sub/dir")).unwrap();
    std::fs::write(data.join("sub/dir/MANIFEST"), pattern(3000, 7)).unwrap();
    std::fs::write(data.join("empty"), b"").unwrap();
    let meta = SnapshotMeta {
        last_index: index,
        last_term: 3,
        config_index: 1,
        config: None,
    };
    store.commit(st, meta).unwrap()
}

fn offer(snapshot: &Arc<SnapshotHandle>) -> SnapshotOffer {
    SnapshotOffer {
        group: 0,
        term: 4,
        leader: LEADER.into(),
        snapshot: snapshot.clone(),
    }
}

fn assert_identical(sent: &SnapshotHandle, got: &SnapshotHandle) {
    assert_eq!(sent.meta(), got.meta());
    let files = sent.files().unwrap();
    assert_eq!(files, ["big.sst", "empty", "sub/dir/MANIFEST"]);
    assert_eq!(got.files().unwrap(), files);
    for f in files {
        let (a, b) = (
            std::fs::read(sent.data_dir().join(&f)).unwrap(),
            std::fs::read(got.data_dir().join(&f)).unwrap(),
        );
        assert!(a == b, "{f} differs ({} vs {} bytes)", a.len(), b.len());
    }
}

/// The follower's snapshots directory holds exactly these snapshots and no staging.
fn assert_only_snapshots(dir: &Path, indexes: &[u64]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = indexes
        .iter()
        .map(|i| format!("snap-{i:020}-{:020}", 3))
        .collect();
    assert_eq!(names, want);
}

#[test]
fn a_snapshot_arrives_byte_identical_while_raft_frames_keep_flowing() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_store = SnapshotStore::open(ldir.path()).unwrap();
    let chunk = 32 << 10;
    let snap = snapshot(&leader_store, 100, 20 * chunk + 123);
    let (_server, port, follower, _store) = follower(fdir.path());
    // About 660 KiB at 512 KiB/s: the stream takes over a second, whatever the machine.
    let rate = 512 << 10;
    let (link, leader) = leader_link(port, chunk, rate);
    let started = Instant::now();
    assert!(link.send_snapshot(offer(&snap)));
    wait_until("the stream under way", || follower.saw_chunk(100, 2));
    for term in 1..=5 {
        assert!(link.send(
            0,
            Body::RequestVote(RequestVote {
                term,
                ..Default::default()
            })
        ));
    }
    wait_until("the snapshot", || follower.received(100).is_some());
    let elapsed = started.elapsed();
    let got = follower.received(100).unwrap();
    assert_eq!((got.term, got.leader.as_str()), (4, LEADER));
    assert_identical(&snap, &got.snapshot);
    assert_only_snapshots(fdir.path(), &[100]);
    wait_until("the sender's report", || leader.sent() == [(100, true)]);

    let events = follower.events();
    let done = events
        .iter()
        .position(|e| matches!(e, Event::Chunk { done: true, .. }))
        .unwrap();
    for term in 1..=5 {
        let vote = events.iter().position(|e| *e == Event::Vote(term)).unwrap();
        assert!(vote < done, "vote {term} waited for the whole stream: {events:?}");
    }
    assert!(
        !events.iter().any(|e| matches!(e, Event::Refused(_))),
        "{events:?}"
    );
    // Paced: at least half the time the rate allows (a lower bound only, never flaky).
    let total = (20 * chunk + 123 + 3000) as f64;
    assert!(
        elapsed.as_secs_f64() >= total / rate as f64 / 2.0,
        "{elapsed:?} for {total} bytes at {rate} B/s"
    );
}

#[test]
fn a_cut_connection_abandons_the_stream_and_a_new_offer_completes() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_store = SnapshotStore::open(ldir.path()).unwrap();
    let chunk = 16 << 10;
    let snap = snapshot(&leader_store, 100, 24 * chunk);
    let (_server, port, follower, store) = follower(fdir.path());
    let (link, leader) = leader_link(port, chunk, 256 << 10);
    assert!(link.send_snapshot(offer(&snap)));
    wait_until("the stream under way", || follower.saw_chunk(100, 2));
    let cut = Duration::from_millis(200);
    let cut_ends = Instant::now() + cut;
    link.cut_for(cut);
    wait_until("the abandoned stream reported", || {
        leader.sent() == [(100, false)]
    });
    assert!(store.latest().is_none(), "a partial stream is never committed");
    let before = follower.events().len();
    wait_until("the cut over", || Instant::now() >= cut_ends);

    assert!(link.send_snapshot(offer(&snap)));
    wait_until("the snapshot", || follower.received(100).is_some());
    assert_identical(&snap, &follower.received(100).unwrap().snapshot);
    assert_only_snapshots(fdir.path(), &[100]);
    wait_until("the sender's report", || {
        leader.sent() == [(100, false), (100, true)]
    });
    let after = &follower.events()[before..];
    assert!(
        matches!(after.first(), Some(Event::Chunk { seq: 0, .. })),
        "the new stream starts at seq 0: {after:?}"
    );
}

#[test]
fn a_replaced_offer_restarts_at_seq_0_and_only_the_newer_snapshot_is_kept() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_store = SnapshotStore::open(ldir.path()).unwrap();
    let chunk = 16 << 10;
    let older = snapshot(&leader_store, 100, 24 * chunk);
    let newer = snapshot(&leader_store, 200, 5 * chunk + 1);
    let (_server, port, follower, store) = follower(fdir.path());
    let (link, leader) = leader_link(port, chunk, 256 << 10);
    assert!(link.send_snapshot(offer(&older)));
    wait_until("the older stream under way", || follower.saw_chunk(100, 2));
    // The same offer again changes nothing; another one replaces it.
    assert!(link.send_snapshot(offer(&older)));
    assert!(link.send_snapshot(offer(&newer)));
    wait_until("the newer snapshot", || follower.received(200).is_some());
    assert_identical(&newer, &follower.received(200).unwrap().snapshot);
    assert_eq!(store.latest_index(), 200);
    assert!(follower.received(100).is_none());
    assert_only_snapshots(fdir.path(), &[200]);
    wait_until("the sender's reports", || {
        leader.sent() == [(100, false), (200, true)]
    });

    let events = follower.events();
    let first_newer = events
        .iter()
        .find(|e| matches!(e, Event::Chunk { index: 200, .. }));
    assert_eq!(
        first_newer,
        Some(&Event::Chunk {
            index: 200,
            seq: 0,
            done: false
        })
    );
    // No chunk of the older stream after the newer one started, and none was refused.
    let start = events.iter().position(|e| Some(e) == first_newer).unwrap();
    assert!(!events[start..]
        .iter()
        .any(|e| matches!(e, Event::Chunk { index: 100, .. })));
    assert!(
        !events.iter().any(|e| matches!(e, Event::Refused(_))),
        "{events:?}"
    );
}

#[test]
fn an_unreadable_file_or_a_stopped_link_ends_the_stream_with_a_failure() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_store = SnapshotStore::open(ldir.path()).unwrap();
    let chunk = 16 << 10;
    let snap = snapshot(&leader_store, 100, 24 * chunk);
    let (_server, port, follower, store) = follower(fdir.path());
    let (link, leader) = leader_link(port, chunk, 256 << 10);
    assert!(link.send_snapshot(offer(&snap)));
    wait_until("the stream under way", || follower.saw_chunk(100, 1));
    // Files go in name order: this one is read after `big.sst`.
    std::fs::remove_file(snap.data_dir().join("sub/dir/MANIFEST")).unwrap();
    wait_until("the failure reported", || leader.sent() == [(100, false)]);
    assert!(store.latest().is_none());

    let whole = snapshot(&leader_store, 200, 24 * chunk);
    assert!(link.send_snapshot(offer(&whole)));
    wait_until("the next stream under way", || follower.saw_chunk(200, 1));
    link.stop();
    assert_eq!(leader.sent(), [(100, false), (200, false)]);
    assert!(
        !link.send_snapshot(offer(&whole)),
        "a stopped link takes no offer"
    );
    assert!(store.latest().is_none());
}

/// Writes chunk frames by hand on a member's connection.
fn raw_member(port: u16) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let hs = Handshake {
        cluster_id: "c1".into(),
        from: LEADER.into(),
        protocol_version: PROTOCOL_VERSION,
        config_id: config_id(&[LEADER.to_string()]),
        cluster_uid: String::new(),
        max_protocol_version: floyd::transport::MAX_PROTOCOL_VERSION,
    };
    write_frame(&mut c, Body::Handshake(hs)).unwrap();
    match read_frame(&mut c, 1 << 16).unwrap() {
        Body::HandshakeAck(ack) => assert!(ack.accepted, "{}", ack.reason),
        other => panic!("expected an ack, got {other:?}"),
    }
    c
}

fn chunk(seq: u64, file: &str, offset: u64, data: &[u8]) -> Body {
    Body::SnapshotChunk(Box::new(SnapshotChunk {
        term: 4,
        leader: LEADER.into(),
        snapshot_index: 100,
        snapshot_term: 3,
        seq,
        file: file.into(),
        offset,
        data: data.to_vec().into(),
        crc32: crc32fast::hash(data),
        ..Default::default()
    }))
}

#[test]
fn bad_chunks_are_refused_without_closing_the_connection_and_leave_nothing() {
    let fdir = tempfile::tempdir().unwrap();
    let (_server, port, follower, store) = follower(fdir.path());
    let mut c = raw_member(port);
    let mut corrupt = chunk(1, "a", 3, b"def");
    if let Body::SnapshotChunk(ch) = &mut corrupt {
        ch.crc32 ^= 1;
    }
    let frames = [
        // A bad checksum.
        chunk(0, "a", 0, b"abc"),
        corrupt,
        // A path out of the staging directory.
        chunk(0, "../../escaped", 0, b"evil"),
        // A gap in the sequence.
        chunk(0, "a", 0, b"abc"),
        chunk(2, "a", 3, b"def"),
    ];
    for f in frames {
        write_frame(&mut c, f).unwrap();
    }
    // The connection is still served: a ping is answered.
    write_frame(&mut c, Body::Ping(Ping {})).unwrap();
    assert!(matches!(read_frame(&mut c, 1 << 16).unwrap(), Body::Pong(_)));
    let refused: Vec<String> = follower
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Refused(why) => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused[0].contains("checksum"), "{refused:?}");
    assert!(refused[1].contains("unsafe file name"), "{refused:?}");
    assert!(refused[2].contains("chunk 2 where chunk 1"), "{refused:?}");
    assert!(store.latest().is_none());
    assert!(!fdir.path().join("escaped").exists());
    assert_only_snapshots(fdir.path(), &[]);
}

/// Issue 21: one link carries the snapshot streams of several groups at
/// once, a chunk of each in turn: a second group's offer no longer replaces
/// the first's. Every stream completes and is reported.
#[test]
fn streams_of_two_groups_share_a_link_and_both_complete() {
    let (ldir, fdir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader_store = SnapshotStore::open(ldir.path()).unwrap();
    let chunk = 16 << 10;
    let a = snapshot(&leader_store, 100, 6 * chunk);
    let (_server, port, follower, _store) = follower(fdir.path());
    let (link, leader) = leader_link(port, chunk, 0);
    assert!(link.send_snapshot(SnapshotOffer {
        group: 3,
        ..offer(&a)
    }));
    assert!(link.send_snapshot(SnapshotOffer {
        group: 4,
        ..offer(&a)
    }));
    wait_until("both streams reported", || leader.sent().len() == 2);
    assert_eq!(leader.sent(), [(100, true), (100, true)]);
    // Reported once written: the follower may still be reading them.
    wait_until("both streams' last chunks read", || {
        follower
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Chunk { done: true, .. }))
            .count()
            == 2
    });
    let groups = follower.chunk_groups.lock().clone();
    let first_four = groups.iter().position(|g| *g == 4).unwrap();
    let last_three = groups.iter().rposition(|g| *g == 3).unwrap();
    assert!(first_four < last_three, "the streams take turns: {groups:?}");
}
