//! The transport on loopback: handshake checks, oversized frames, and links
//! that notice a closed connection instead of writing into it.

mod common;

use common::wait_until;
use floyd::core::Message;
use floyd::transport::{Handler, PeerConfig, PeerLink, Server, ServerConfig};
use floyd::wire::{frame::Body, ClientRequest, ClientResponse, RequestVote};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<(String, Message)>>,
    undeliverable: Mutex<Vec<u64>>,
}

impl Handler for Recorder {
    fn on_message(&self, from: &str, msg: Message) {
        self.messages.lock().push((from.to_string(), msg));
    }
    fn on_client_request(&self, _: &str, _: ClientRequest) {}
    fn on_client_response(&self, _: &str, _: ClientResponse) {}
    fn on_undeliverable(&self, _: &str, req: ClientRequest) {
        self.undeliverable.lock().push(req.request_id);
    }
    fn on_thread_panic(&self, thread: &str, message: &str) {
        panic!("{thread} panicked: {message}");
    }
}

const CLIENT: &str = "127.0.0.1:1";

fn server(listener: TcpListener, recorder: Arc<Recorder>) -> Server {
    let cfg = ServerConfig {
        name: "test".into(),
        cluster_id: "c1".into(),
        members: HashSet::from([CLIENT.to_string()]),
        max_frame_bytes: 1 << 20,
        idle_timeout: Duration::from_secs(5),
    };
    Server::start(listener, cfg, recorder).unwrap()
}

fn link(port: u16, my_id: &str, cluster: &str, handler: Arc<Recorder>) -> PeerLink {
    let cfg = PeerConfig {
        name: "test".into(),
        local_ip: "127.0.0.1".parse().unwrap(),
        my_id: my_id.into(),
        peer: format!("127.0.0.1:{port}"),
        cluster_id: cluster.into(),
        connect_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        keepalive: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
    };
    PeerLink::spawn(cfg, handler).unwrap()
}

fn vote(term: u64) -> Body {
    Body::RequestVote(RequestVote {
        term,
        ..Default::default()
    })
}

fn terms(r: &Recorder) -> Vec<u64> {
    r.messages.lock().iter().map(|(_, m)| m.term()).collect()
}

#[test]
fn a_member_is_heard_and_a_restarted_peer_gets_every_later_message() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Recorder::default());
    let s = server(listener, received.clone());
    let l = link(port, CLIENT, "c1", Arc::new(Recorder::default()));
    assert!(l.send(vote(1)));
    wait_until("first message", || terms(&received) == vec![1]);
    assert_eq!(received.messages.lock()[0].0, CLIENT);

    // The peer restarts: the old connection is closed under the link.
    s.stop();
    let again = Arc::new(Recorder::default());
    let _s2 = server(TcpListener::bind(("127.0.0.1", port)).unwrap(), again.clone());
    wait_until("the link noticing the closed connection", || {
        // Keep sending: Raft retries, and the link must not swallow messages forever.
        l.send(vote(2));
        !terms(&again).is_empty()
    });
}

#[test]
fn strangers_and_other_clusters_are_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Recorder::default());
    let _s = server(listener, received.clone());
    let wrong_cluster = link(port, CLIENT, "other", Arc::new(Recorder::default()));
    let stranger = link(port, "127.0.0.1:2", "c1", Arc::new(Recorder::default()));
    let member = link(port, CLIENT, "c1", Arc::new(Recorder::default()));
    for _ in 0..5 {
        wrong_cluster.send(vote(7));
        stranger.send(vote(8));
    }
    member.send(vote(9));
    wait_until("the member's message", || terms(&received).contains(&9));
    assert!(!terms(&received).iter().any(|t| *t == 7 || *t == 8));
}

#[test]
fn oversized_frames_and_garbage_close_the_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
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
    l.send(Body::ClientRequest(ClientRequest {
        request_id: 42,
        command: None,
    }));
    wait_until("undeliverable report", || {
        handler.undeliverable.lock().contains(&42)
    });
}
