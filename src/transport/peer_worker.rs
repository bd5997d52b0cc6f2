//! A peer link's worker thread (`floyd-peer-<port>-><peer>`, started by
//! [`PeerLink::spawn`](super::peer::PeerLink::spawn)): it owns the
//! connection, dials it with backoff, writes the queued frames in batches,
//! keeps it alive with pings, streams snapshots at their pace, and reports
//! what a broken connection leaves undelivered or in doubt
//! ([`peer`](super::peer) has the whole story).

use super::frame::{encode_frame, read_frame, write_frame};
use super::outbox::{
    encode_batch, next_batch, split_by_written, write_all_vectored, InDoubt, Outgoing, BATCH_BYTES,
    BATCH_FRAMES,
};
use super::peer::{since_epoch_ms, Control, PeerConfig, Queues, SharedConn};
use super::snapshot_send::{OutgoingStream, SnapshotOffer};
use super::stream::{Readable, Stream};
use super::Handler;
use crate::storage::GroupId;
use crate::wire::{frame::Body, Ping};
use crossbeam_channel::{Select, TryRecvError};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One live connection and what the worker knows about it.
pub(super) struct Conn {
    pub(super) stream: Stream,
    /// When the last ping was written.
    last_ping: Instant,
    /// When the first ping written since we last heard from the peer went out.
    unanswered_since: Option<Instant>,
    /// A probe's ping must be answered by then.
    probe_deadline: Option<Instant>,
    in_doubt: InDoubt,
    /// The peer speaks frames with a group id (version 6): frames of groups
    /// other than 0 may go to it. Nodes of version 5 know only group 0.
    pub(super) groups: bool,
}

pub(super) struct PeerWorker {
    cfg: PeerConfig,
    handler: Arc<dyn Handler>,
    connected_at: Arc<AtomicU64>,
    pub(super) peer_version: Arc<AtomicU32>,
    pub(super) bytes_sent: Arc<AtomicU64>,
    conn: Option<Conn>,
    backoff: Duration,
    retry_at: Instant,
    refusals: RefusalLog,
    /// Set by `cut_for`: no connection before then.
    cut_until: Option<Instant>,
    /// The snapshot streams in progress, one per group, served in turn.
    streams: std::collections::BTreeMap<GroupId, OutgoingStream>,
    /// The last group a chunk went out for (the next goes to the one after).
    last_stream: GroupId,
    /// One pace for every stream of the link: a host's snapshots together
    /// never take more than `snapshot_bytes_per_sec` of it.
    pacer: super::snapshot_send::Pacer,
}

impl PeerWorker {
    pub(super) fn new(cfg: PeerConfig, handler: Arc<dyn Handler>, connected_at: Arc<AtomicU64>) -> Self {
        let cfg_rate = cfg.snapshot_bytes_per_sec;
        PeerWorker {
            cfg,
            handler,
            connected_at,
            peer_version: Arc::default(),
            bytes_sent: Arc::default(),
            conn: None,
            backoff: Duration::ZERO,
            retry_at: Instant::now(),
            refusals: RefusalLog::default(),
            cut_until: None,
            streams: Default::default(),
            last_stream: 0,
            pacer: super::snapshot_send::Pacer::new(cfg_rate, Instant::now()),
        }
    }

    /// Serves the queues; each turn takes the connection out of `shared`
    /// (senders write on it directly only between turns) and puts it back.
    pub(super) fn run(mut self, q: Queues, shared: SharedConn) {
        let mut timer = None;
        loop {
            self.wait(&q, timer);
            let mut slot = shared.lock();
            self.conn = slot.take();
            if !self.turn(&q) {
                return;
            }
            timer = self.next_timer();
            *slot = self.conn.take();
        }
    }

    /// One turn of the worker; false once it is told to stop (the link is shut down then).
    fn turn(&mut self, q: &Queues) -> bool {
        let mut probe = false;
        loop {
            match q.control.try_recv() {
                Ok(Control::Probe) => probe = true,
                Ok(Control::Flush) => {}
                Ok(Control::CutUntil(t)) => {
                    self.cut_until = Some(t);
                    self.break_connection("cut by a fault hook");
                }
                Ok(Control::Stop) | Err(TryRecvError::Disconnected) => {
                    self.shut_down(q);
                    return false;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        while let Ok(offer) = q.snapshot.try_recv() {
            self.offer(offer);
        }
        let redial = self.check_connection();
        let pending = !q.raft.is_empty() || !q.client.is_empty() || !self.streams.is_empty();
        let now = Instant::now();
        self.cut_until = self.cut_until.filter(|t| now < *t);
        let may_dial = self.cut_until.is_none();
        let mut dialed = false;
        if self.conn.is_none() && may_dial && (probe || redial || (pending && now >= self.retry_at)) {
            // A probe or a failed probe means the peer was just heard from: skip the backoff.
            self.reconnect();
            dialed = true;
            // The handshake just proved the new connection alive.
            probe = false;
        }
        if self.conn.is_some() {
            self.write_batch(q, probe);
            self.write_chunk();
        } else {
            self.drop_queued(q);
            // A stream waits out the backoff for its dial, but not a failed dial or a cut.
            if dialed || !may_dial {
                self.abandon_stream("no connection");
            }
        }
        true
    }

    /// Sleeps until a queue or the control channel has something, or `timer` is due.
    fn wait(&self, q: &Queues, timer: Option<Instant>) {
        let mut sel = Select::new();
        sel.recv(&q.control);
        sel.recv(&q.raft);
        sel.recv(&q.client);
        sel.recv(&q.snapshot);
        match timer {
            Some(at) => {
                let _ = sel.ready_timeout(at.saturating_duration_since(Instant::now()));
            }
            None => {
                sel.ready();
            }
        }
    }

    /// The next ping, liveness, probe or chunk deadline; without a
    /// connection, the next dial if a stream waits for one.
    fn next_timer(&self) -> Option<Instant> {
        let Some(c) = self.conn.as_ref() else {
            return (!self.streams.is_empty()).then_some(self.retry_at);
        };
        let mut at = c.last_ping + self.cfg.keepalive;
        if !self.streams.is_empty() {
            at = at.min(self.pacer.next_at());
        }
        if let Some(t) = c.unanswered_since {
            at = at.min(t + self.cfg.liveness_timeout);
        }
        if let Some(t) = c.probe_deadline {
            at = at.min(t);
        }
        Some(at)
    }

    /// Reads what the peer sent and applies the liveness rules; returns
    /// whether a probe went unanswered (the caller redials at once).
    fn check_connection(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.stream.drain_nonblocking() {
            Readable::Heard => {
                conn.unanswered_since = None;
                conn.probe_deadline = None;
            }
            Readable::Silent => {}
            Readable::Closed(why) => {
                self.break_connection(&why);
                return false;
            }
        }
        let now = Instant::now();
        if let Some(t) = conn
            .unanswered_since
            .filter(|t| now >= *t + self.cfg.liveness_timeout)
        {
            let why = format!("no answer to pings for {:?}", now - t);
            self.break_connection(&why);
            return false;
        }
        if conn.probe_deadline.is_some_and(|t| now >= t) {
            self.break_connection("no answer to a probe");
            return true;
        }
        conn.in_doubt.prune(now);
        false
    }

    /// Writes the next batch on the live connection, with a ping first when one is due.
    fn write_batch(&mut self, q: &Queues, probe: bool) {
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.stream.has_unsent() {
            // A direct send's tail, or its error.
            if let Err(e) = conn.stream.flush() {
                return self.break_connection(&format!("write failed: {e}"));
            }
        }
        let ping = probe || Instant::now() >= conn.last_ping + self.cfg.keepalive;
        let mut bodies = Vec::new();
        if ping {
            bodies.push(Outgoing {
                group: 0,
                body: Body::Ping(Ping {}),
            });
        }
        bodies.extend(next_batch(
            || q.raft.try_recv().ok(),
            || q.client.try_recv().ok(),
            BATCH_BYTES,
            BATCH_FRAMES,
        ));
        if bodies.is_empty() {
            return;
        }
        let (peer, handler) = (&self.cfg.peer, &self.handler);
        if !conn.groups {
            bodies = drop_for_old_peer(bodies, peer, &**handler);
        }
        let encoded = encode_batch(bodies, |frame, e| {
            tracing::error!(peer = %peer, error = %e, "dropping a frame over the cluster's frame limit");
            if let Body::ClientRequest(req) = frame.body {
                handler.on_undeliverable(peer, frame.group, req);
            }
        });
        match write_all_vectored(&mut conn.stream, &encoded.bufs) {
            Ok(()) => {
                let bytes: usize = encoded.bufs.iter().map(Vec::len).sum();
                self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
                let now = Instant::now();
                if ping {
                    conn.last_ping = now;
                    conn.unanswered_since.get_or_insert(now);
                }
                if probe {
                    let deadline = now + self.cfg.connect_timeout;
                    conn.probe_deadline = Some(conn.probe_deadline.map_or(deadline, |d| d.min(deadline)));
                }
                for (_, group, req) in &encoded.requests {
                    conn.in_doubt.record(now, *group, req.request_id);
                }
            }
            Err((written, e)) => {
                let now = Instant::now();
                let (doubt, unsent) = split_by_written(encoded, written);
                for (group, req) in doubt {
                    conn.in_doubt.record(now, group, req.request_id);
                }
                self.break_connection(&format!("write failed: {e}"));
                for (group, req) in unsent {
                    self.handler.on_undeliverable(&self.cfg.peer, group, req);
                }
            }
        }
    }

    /// Starts streaming `offer`, unless it is its group's stream in progress.
    fn offer(&mut self, offer: SnapshotOffer) {
        if self
            .streams
            .get(&offer.group)
            .is_some_and(|s| s.offer().key() == offer.key())
        {
            return;
        }
        self.abandon_group_stream(offer.group, "replaced by another offer");
        let (group, index) = (offer.group, offer.snapshot.index());
        match OutgoingStream::new(offer, self.cfg.snapshot_chunk_bytes) {
            Ok(s) => {
                tracing::info!(peer = %self.cfg.peer, group, snapshot = index, "sending a snapshot");
                self.streams.insert(group, s);
            }
            Err(e) => {
                tracing::warn!(peer = %self.cfg.peer, snapshot = index, error = %e, "cannot send a snapshot");
                self.handler.on_snapshot_sent(&self.cfg.peer, group, index, false);
            }
        }
    }

    /// Abandons every stream (the connection or the link is gone).
    fn abandon_stream(&mut self, why: &str) {
        let groups: Vec<GroupId> = self.streams.keys().copied().collect();
        for group in groups {
            self.abandon_group_stream(group, why);
        }
    }

    fn abandon_group_stream(&mut self, group: GroupId, why: &str) {
        if let Some(s) = self.streams.remove(&group) {
            tracing::info!(peer = %self.cfg.peer, group, snapshot = s.index(), reason = %why, "snapshot stream abandoned");
            self.handler
                .on_snapshot_sent(&self.cfg.peer, group, s.index(), false);
        }
    }

    /// Writes the next chunk, of the next group's stream in turn, if it is due.
    fn write_chunk(&mut self) {
        if self.conn.is_none() || self.streams.is_empty() || Instant::now() < self.pacer.next_at() {
            return;
        }
        let group = self
            .streams
            .range(self.last_stream.saturating_add(1)..)
            .next()
            .or_else(|| self.streams.iter().next())
            .map(|(g, _)| *g)
            .expect("not empty");
        self.last_stream = group;
        // A peer of version 5 would take any group's chunks for group 0's
        // (checked here, not at the offer: the connection may have changed).
        if group != 0 && !self.conn.as_ref().is_some_and(|c| c.groups) {
            return self.abandon_group_stream(group, "the peer speaks protocol version 5: group 0 only");
        }
        let s = self.streams.get_mut(&group).expect("present");
        let chunk = match s.next_chunk() {
            Ok(Some(chunk)) => chunk,
            // Unreachable: a stream is taken away once its final chunk is written.
            Ok(None) => return self.abandon_group_stream(group, "ended"),
            Err(e) => {
                tracing::warn!(peer = %self.cfg.peer, group, snapshot = s.index(), error = %e, "snapshot stream failed");
                return self.abandon_group_stream(group, "unreadable");
            }
        };
        let (done, index, started) = (chunk.done, s.index(), s.started);
        let mut buf = Vec::new();
        if let Err(e) = encode_frame(group, &Body::SnapshotChunk(Box::new(chunk)), &mut buf) {
            tracing::error!(peer = %self.cfg.peer, group, snapshot = index, error = %e, "snapshot chunk does not fit a frame");
            return self.abandon_group_stream(group, "chunk too large");
        }
        let conn = self.conn.as_mut().expect("checked");
        if let Err((_, e)) = write_all_vectored(&mut conn.stream, std::slice::from_ref(&buf)) {
            return self.break_connection(&format!("write failed: {e}"));
        }
        self.pacer.sent(buf.len(), Instant::now());
        self.bytes_sent.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let finished_after = done.then(|| started.elapsed());
        self.handler
            .on_snapshot_chunk_sent(&self.cfg.peer, group, buf.len(), finished_after);
        if done {
            self.streams.remove(&group);
            tracing::info!(peer = %self.cfg.peer, group, snapshot = index, "snapshot sent");
            self.handler.on_snapshot_sent(&self.cfg.peer, group, index, true);
        }
    }

    /// Without a connection nothing can be sent: Raft frames are dropped (Raft
    /// retries) and forwarded commands fail as certainly not applied.
    fn drop_queued(&self, q: &Queues) {
        for frame in q.raft.try_iter().chain(q.client.try_iter()) {
            if let Body::ClientRequest(req) = frame.body {
                self.handler.on_undeliverable(&self.cfg.peer, frame.group, req);
            }
        }
    }

    fn break_connection(&mut self, why: &str) {
        let Some(mut conn) = self.conn.take() else { return };
        let _ = conn.stream.socket().shutdown(Shutdown::Both);
        self.connected_at.store(0, Ordering::Relaxed);
        tracing::info!(peer = %self.cfg.peer, reason = %why, "connection lost");
        let ids = conn.in_doubt.take(Instant::now());
        if !ids.is_empty() {
            self.handler.on_in_doubt(&self.cfg.peer, ids);
        }
        self.abandon_stream("connection lost");
        self.handler.on_link_state(&self.cfg.peer, false);
    }

    /// At stop the node fails every pending forward itself: nothing is
    /// reported in doubt. Snapshot offers are reported abandoned.
    fn shut_down(&mut self, q: &Queues) {
        self.abandon_stream("link stopped");
        for offer in q.snapshot.try_iter() {
            self.handler
                .on_snapshot_sent(&self.cfg.peer, offer.group, offer.snapshot.index(), false);
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.stream.socket().shutdown(Shutdown::Both);
            self.connected_at.store(0, Ordering::Relaxed);
            self.handler.on_link_state(&self.cfg.peer, false);
        }
    }

    fn reconnect(&mut self) {
        match connect(&self.cfg) {
            Ok((stream, version)) => {
                tracing::debug!(peer = %self.cfg.peer, version, "connected");
                let groups = version >= super::GROUPS_VERSION;
                let now = Instant::now();
                self.conn = Some(Conn {
                    stream,
                    last_ping: now,
                    unanswered_since: None,
                    probe_deadline: None,
                    in_doubt: InDoubt::new(self.cfg.in_doubt_window),
                    groups,
                });
                if !groups {
                    tracing::info!(peer = %self.cfg.peer,
                        "the peer speaks protocol version 5: only group 0's frames go to it");
                }
                self.backoff = Duration::ZERO;
                self.refusals.reset();
                self.peer_version.store(version, Ordering::Relaxed);
                self.connected_at.store(since_epoch_ms() + 1, Ordering::Relaxed);
                self.handler.on_link_state(&self.cfg.peer, true);
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_millis(20), self.cfg.max_backoff);
                self.retry_at = Instant::now() + self.backoff;
                match e {
                    ConnectError::Refused(reason) if self.refusals.is_new(&reason) => {
                        tracing::warn!(peer = %self.cfg.peer, %reason, "the peer refused our handshake");
                    }
                    ConnectError::Tls(e) if self.refusals.is_new(&e.to_string()) => {
                        tracing::warn!(peer = %self.cfg.peer, error = %e, "TLS handshake with the peer failed");
                    }
                    e => {
                        tracing::debug!(peer = %self.cfg.peer, error = %e, retry_in = ?self.backoff, "connect failed");
                    }
                }
            }
        }
    }
}

/// A peer of version 5 knows no groups: a frame of a group other than 0
/// would be taken for group 0's. Such frames are dropped (a forwarded
/// command is reported undeliverable: certainly not applied).
fn drop_for_old_peer(frames: Vec<Outgoing>, peer: &str, handler: &dyn Handler) -> Vec<Outgoing> {
    let (keep, drop): (Vec<_>, Vec<_>) = frames.into_iter().partition(|f| f.group == 0);
    if !drop.is_empty() {
        tracing::debug!(peer = %peer, frames = drop.len(), "dropped frames of groups other than 0 for a peer of version 5");
    }
    for frame in drop {
        if let Body::ClientRequest(req) = frame.body {
            handler.on_undeliverable(peer, frame.group, req);
        }
    }
    keep
}

/// Whether `body` belongs to a read's confirmation round (ReadIndex): a
/// heartbeat that carries a read sequence, its answer, or a follower's read
/// request and its answer. Those go out directly: a read waits on nothing
/// else. Everything else goes through the worker, which batches frames
/// into one write; measured, writing appends and their answers directly
/// cost writes more (lost batching) than it saved.
pub(super) fn is_read_round(body: &Body) -> bool {
    match body {
        Body::AppendEntries(a) => a.entries.is_empty() && a.read_seq > 0,
        Body::AppendEntriesResponse(r) => r.read_seq > 0,
        Body::ReadIndexRequest(_) | Body::ReadIndexResponse(_) => true,
        _ => false,
    }
}

/// Remembers the last handshake refusal, so a misconfigured peer is
/// reported once per distinct reason instead of on every redial.
#[derive(Default)]
struct RefusalLog {
    last: Option<String>,
}

impl RefusalLog {
    /// Whether `reason` differs from the last refusal (and should be logged).
    fn is_new(&mut self, reason: &str) -> bool {
        if self.last.as_deref() == Some(reason) {
            return false;
        }
        self.last = Some(reason.to_string());
        true
    }

    /// After a successful handshake, a later refusal is news again.
    fn reset(&mut self) {
        self.last = None;
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// The peer answered the handshake with a refusal and this reason.
    #[error("refused: {0}")]
    Refused(String),
    /// The TLS handshake failed: a certificate problem on either side.
    #[error("{0}")]
    Tls(io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Connects from `local_ip`, then performs the handshake; returns the
/// newest protocol version the peer announced (0 from nodes of version 5).
fn connect(cfg: &PeerConfig) -> Result<(Stream, u32), ConnectError> {
    let peer: SocketAddr = cfg.peer.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad peer address {}", cfg.peer),
        )
    })?;
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(cfg.local_ip, 0).into())?;
    socket.connect_timeout(&peer.into(), cfg.connect_timeout)?;
    let sock: TcpStream = socket.into();
    sock.set_nodelay(true)?;
    sock.set_write_timeout(Some(cfg.write_timeout))?;
    // Only the handshakes are read blocking; afterwards reads never wait.
    sock.set_read_timeout(Some(cfg.connect_timeout))?;
    let mut stream = match &cfg.tls {
        Some(tls) => Stream::tls_client(sock, tls, peer, &cfg.identity).map_err(ConnectError::Tls)?,
        None => Stream::plain(sock),
    };
    let hello = cfg.identity.hello(&cfg.my_id);
    write_frame(&mut stream, Body::Handshake(hello))?;
    match read_frame(&mut stream, 64 << 10) {
        Ok(Body::HandshakeAck(ack)) if ack.accepted => Ok((stream, ack.max_protocol_version)),
        Ok(Body::HandshakeAck(ack)) => Err(ConnectError::Refused(ack.reason)),
        Ok(other) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {other:?}")).into()),
        // Under TLS, a peer that refuses our certificate says so only now.
        Err(e) if cfg.tls.is_some() => Err(ConnectError::Tls(io::Error::other(e.to_string()))),
        Err(e) => Err(io::Error::other(e.to_string()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::peer::PeerLink;
    use super::*;

    #[test]
    fn a_refusal_is_logged_once_per_distinct_reason() {
        let mut log = RefusalLog::default();
        assert!(log.is_new("member list differs"));
        assert!(!log.is_new("member list differs"));
        assert!(!log.is_new("member list differs"));
        assert!(log.is_new("protocol version 1"));
        assert!(log.is_new("member list differs"));
        log.reset();
        assert!(log.is_new("member list differs"));
    }

    /// A peer of version 5 reads every snapshot chunk as group 0's: a
    /// snapshot of another group must not stream to it (it would install
    /// that group's state as its own), and is reported abandoned instead.
    #[test]
    fn a_peer_of_version_5_gets_no_snapshot_of_another_group() {
        use crate::storage::snapshots::SnapshotStore;
        use crate::wire::{ClientRequest, ClientResponse, HandshakeAck, SnapshotMeta};

        #[derive(Default)]
        struct Outcomes(parking_lot::Mutex<Vec<(GroupId, bool)>>);
        impl Handler for Outcomes {
            fn on_message(&self, _: &str, _: GroupId, _: crate::core::Message) {}
            fn on_client_request(&self, _: &str, _: GroupId, _: ClientRequest) {}
            fn on_client_response(&self, _: &str, _: GroupId, _: ClientResponse) {}
            fn on_undeliverable(&self, _: &str, _: GroupId, _: ClientRequest) {}
            fn on_thread_panic(&self, thread: &str, message: &str) {
                panic!("{thread}: {message}");
            }
            fn on_snapshot_sent(&self, _: &str, group: GroupId, _: u64, ok: bool) {
                self.0.lock().push((group, ok));
            }
        }

        // A node of version 5: its ack announces no newer version; it
        // records the group of every chunk (which it would not see).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let chunks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = chunks.clone();
        let old = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            assert!(matches!(read_frame(&mut c, 1 << 16), Ok(Body::Handshake(_))));
            let ack = HandshakeAck {
                accepted: true,
                reason: String::new(),
                max_protocol_version: 0,
            };
            write_frame(&mut c, Body::HandshakeAck(ack)).unwrap();
            while let Ok((group, body)) = super::super::frame::read_group_frame(&mut c, 1 << 20) {
                if let Body::SnapshotChunk(_) = body {
                    seen.lock().push(group);
                }
            }
        });

        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let staging = store.stage("test").unwrap();
        std::fs::write(staging.data_dir().join("data"), b"state").unwrap();
        let meta = SnapshotMeta {
            last_index: 7,
            last_term: 1,
            ..Default::default()
        };
        let snapshot = store.commit(staging, meta).unwrap();
        let outcomes = Arc::new(Outcomes::default());
        let cfg = PeerConfig {
            name: "test".into(),
            local_ip: "127.0.0.1".parse().unwrap(),
            my_id: "127.0.0.1:1".into(),
            peer: format!("127.0.0.1:{port}"),
            identity: Arc::new(super::super::Identity::new("c1", 1)),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(1),
            liveness_timeout: Duration::from_secs(30),
            in_doubt_window: Duration::from_secs(10),
            max_backoff: Duration::from_millis(100),
            snapshot_chunk_bytes: 4,
            snapshot_bytes_per_sec: 0,
            tls: None,
        };
        let link = PeerLink::spawn(cfg, outcomes.clone()).unwrap();
        for group in [7, 0] {
            assert!(link.send_snapshot(SnapshotOffer {
                group,
                term: 1,
                leader: "127.0.0.1:1".into(),
                snapshot: snapshot.clone(),
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while outcomes.0.lock().len() < 2 {
            assert!(Instant::now() < deadline, "outcomes: {:?}", outcomes.0.lock());
            std::thread::park_timeout(Duration::from_millis(5));
        }
        link.stop();
        old.join().unwrap();
        let mut got = outcomes.0.lock().clone();
        got.sort_unstable();
        assert_eq!(got, vec![(0, true), (7, false)]);
        let chunks = chunks.lock();
        assert!(!chunks.is_empty() && chunks.iter().all(|g| *g == 0), "{chunks:?}");
    }
}
