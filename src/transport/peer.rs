//! The outgoing side: one worker thread per remote member, owning a persistent
//! TCP connection made from this node's own `local_ip` (bound before
//! connecting, so per-address firewall rules can partition nodes on one host).
//!
//! Messages are one-way: the peer answers over its own connection to us.
//! Frames wait in two queues (Raft first, then client traffic, see
//! [`outbox`](super::outbox)) and go out in bounded, vectored batches.
//!
//! The connection's own liveness: the worker writes a `Ping` at least every
//! `keepalive`, and the server answers each with a `Pong`. The worker reads
//! whatever came back without blocking, before every write and on every
//! wake-up: any byte proves the connection alive; EOF or an error means the
//! peer closed it. A ping unanswered for `liveness_timeout` means it is dead
//! (a FIN or RST lost in a partition). A broken connection is never written
//! to again: the forwarded requests written on it lately are reported in
//! doubt ([`Handler::on_in_doubt`]), those never written are reported
//! undeliverable, and the next frame dials a new connection, with backoff.

use super::frame::{read_frame, write_frame};
use super::outbox::{
    encode_batch, is_client_traffic, next_batch, split_by_written, write_all_vectored, InDoubt, BATCH_BYTES,
    BATCH_FRAMES,
};
use super::Handler;
use crate::wire::{frame::Body, Ping};
use crossbeam_channel::{bounded, Receiver, Select, Sender, TryRecvError, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages waiting in each of a link's queues; beyond this, new ones are dropped (Raft retries).
const QUEUE_CAPACITY: usize = 8192;
/// Reads per wake-up when draining what the peer sent: a peer cannot keep the worker reading forever.
const MAX_DRAIN_READS: usize = 64;

/// How to reach one peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Used in the thread name: the local port.
    pub name: String,
    pub local_ip: IpAddr,
    pub my_id: String,
    pub peer: String,
    /// Our side of the handshake.
    pub identity: Arc<super::Identity>,
    /// Also how long a [`PeerLink::probe`] waits for its answer.
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    /// A ping goes out at least this often, idle or not: it keeps the peer's
    /// idle timeout from firing and its answer proves the connection alive.
    pub keepalive: Duration,
    /// A ping unanswered for this long means the connection is dead.
    pub liveness_timeout: Duration,
    /// Forwarded requests written within this long before a connection
    /// breaks are reported in doubt; older ones have timed out already.
    pub in_doubt_window: Duration,
    pub max_backoff: Duration,
}

enum Control {
    Probe,
    /// Fault injection: drop the connection and dial none until then.
    CutUntil(Instant),
    Stop,
}

/// Handle to a peer worker. Thread-safe `send`; `stop` joins the worker.
pub struct PeerLink {
    peer: String,
    raft: Sender<Body>,
    client: Sender<Body>,
    control: Sender<Control>,
    connected: Arc<AtomicBool>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

struct Queues {
    raft: Receiver<Body>,
    client: Receiver<Body>,
    control: Receiver<Control>,
}

impl PeerLink {
    /// Starts the worker thread `floyd-peer-<port>-><peer>`.
    pub fn spawn(cfg: PeerConfig, handler: Arc<dyn Handler>) -> io::Result<PeerLink> {
        let (raft, raft_rx) = bounded(QUEUE_CAPACITY);
        let (client, client_rx) = bounded(QUEUE_CAPACITY);
        // Probes coalesce, so a short queue is enough; `stop` waits for room.
        let (control, control_rx) = bounded(16);
        let queues = Queues {
            raft: raft_rx,
            client: client_rx,
            control: control_rx,
        };
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let peer = cfg.peer.clone();
        let thread = super::spawn_named(format!("floyd-peer-{}->{}", cfg.name, cfg.peer), move || {
            super::guarded(&*handler.clone(), || {
                PeerWorker::new(cfg, handler, flag).run(queues)
            })
        })?;
        Ok(PeerLink {
            peer,
            raft,
            client,
            control,
            connected,
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// The member this link dials.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Queues a frame (forwarded commands and their results behind Raft
    /// traffic); returns false if it was dropped because its queue is full.
    pub fn send(&self, body: Body) -> bool {
        let queue = if is_client_traffic(&body) {
            &self.client
        } else {
            &self.raft
        };
        match queue.try_send(body) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Checks the connection now: a ping goes out at once, and without an
    /// answer within `connect_timeout` the connection is replaced. A healthy
    /// connection is left alone, so probing never makes two nodes redial
    /// each other in a loop. Without a connection, dials one.
    pub fn probe(&self) {
        let _ = self.control.try_send(Control::Probe);
    }

    /// Test hook (fault injection): drops the connection now and makes none
    /// for `duration`, as a one-way partition would; frames meanwhile are
    /// dropped and forwarded commands reported undeliverable.
    #[doc(hidden)]
    pub fn cut_for(&self, duration: Duration) {
        let _ = self.control.send(Control::CutUntil(Instant::now() + duration));
    }

    /// Whether the link has a connection it believes alive.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Asks the worker to stop without waiting for it ([`PeerLink::stop`] joins it).
    pub fn request_stop(&self) {
        let _ = self.control.send(Control::Stop);
    }

    /// Whether the worker thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.lock().as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the worker and joins it; queued messages are dropped.
    pub fn stop(&self) {
        if let Some(t) = self.thread.lock().take() {
            let _ = self.control.send(Control::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One live connection and what the worker knows about it.
struct Conn {
    stream: TcpStream,
    /// When the last ping was written.
    last_ping: Instant,
    /// When the first ping written since we last heard from the peer went out.
    unanswered_since: Option<Instant>,
    /// A probe's ping must be answered by then.
    probe_deadline: Option<Instant>,
    in_doubt: InDoubt,
}

struct PeerWorker {
    cfg: PeerConfig,
    handler: Arc<dyn Handler>,
    connected: Arc<AtomicBool>,
    conn: Option<Conn>,
    backoff: Duration,
    retry_at: Instant,
    refusals: RefusalLog,
    /// Set by `cut_for`: no connection before then.
    cut_until: Option<Instant>,
}

impl PeerWorker {
    fn new(cfg: PeerConfig, handler: Arc<dyn Handler>, connected: Arc<AtomicBool>) -> Self {
        PeerWorker {
            cfg,
            handler,
            connected,
            conn: None,
            backoff: Duration::ZERO,
            retry_at: Instant::now(),
            refusals: RefusalLog::default(),
            cut_until: None,
        }
    }

    fn run(mut self, q: Queues) {
        loop {
            self.wait(&q);
            let mut probe = false;
            loop {
                match q.control.try_recv() {
                    Ok(Control::Probe) => probe = true,
                    Ok(Control::CutUntil(t)) => {
                        self.cut_until = Some(t);
                        self.break_connection("cut by a fault hook");
                    }
                    Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return self.shut_down(),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let redial = self.check_connection();
            let pending = !q.raft.is_empty() || !q.client.is_empty();
            let now = Instant::now();
            self.cut_until = self.cut_until.filter(|t| now < *t);
            let may_dial = self.cut_until.is_none();
            if self.conn.is_none() && may_dial && (probe || redial || (pending && now >= self.retry_at)) {
                // A probe or a failed probe means the peer was just heard from: skip the backoff.
                self.reconnect();
                // The handshake just proved the new connection alive.
                probe = false;
            }
            if self.conn.is_some() {
                self.write_batch(&q, probe);
            } else {
                self.drop_queued(&q);
            }
        }
    }

    /// Sleeps until a queue or the control channel has something, or a timer is due.
    fn wait(&self, q: &Queues) {
        let mut sel = Select::new();
        sel.recv(&q.control);
        sel.recv(&q.raft);
        sel.recv(&q.client);
        match self.next_timer() {
            Some(at) => {
                let _ = sel.ready_timeout(at.saturating_duration_since(Instant::now()));
            }
            None => {
                sel.ready();
            }
        }
    }

    /// The next ping, liveness or probe deadline; none without a connection.
    fn next_timer(&self) -> Option<Instant> {
        let c = self.conn.as_ref()?;
        let mut at = c.last_ping + self.cfg.keepalive;
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
        match drain_readable(&conn.stream) {
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
        let ping = probe || Instant::now() >= conn.last_ping + self.cfg.keepalive;
        let mut bodies = Vec::new();
        if ping {
            bodies.push(Body::Ping(Ping {}));
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
        let encoded = encode_batch(bodies, |body, e| {
            tracing::error!(peer = %peer, error = %e, "dropping a frame over the cluster's frame limit");
            if let Body::ClientRequest(req) = body {
                handler.on_undeliverable(peer, req);
            }
        });
        match write_all_vectored(&mut conn.stream, &encoded.bufs) {
            Ok(()) => {
                let now = Instant::now();
                if ping {
                    conn.last_ping = now;
                    conn.unanswered_since.get_or_insert(now);
                }
                if probe {
                    let deadline = now + self.cfg.connect_timeout;
                    conn.probe_deadline = Some(conn.probe_deadline.map_or(deadline, |d| d.min(deadline)));
                }
                for (_, req) in &encoded.requests {
                    conn.in_doubt.record(now, req.request_id);
                }
            }
            Err((written, e)) => {
                let now = Instant::now();
                let (doubt, unsent) = split_by_written(encoded, written);
                for req in doubt {
                    conn.in_doubt.record(now, req.request_id);
                }
                self.break_connection(&format!("write failed: {e}"));
                for req in unsent {
                    self.handler.on_undeliverable(&self.cfg.peer, req);
                }
            }
        }
    }

    /// Without a connection nothing can be sent: Raft frames are dropped (Raft
    /// retries) and forwarded commands fail as certainly not applied.
    fn drop_queued(&self, q: &Queues) {
        for body in q.raft.try_iter().chain(q.client.try_iter()) {
            if let Body::ClientRequest(req) = body {
                self.handler.on_undeliverable(&self.cfg.peer, req);
            }
        }
    }

    fn break_connection(&mut self, why: &str) {
        let Some(mut conn) = self.conn.take() else { return };
        let _ = conn.stream.shutdown(Shutdown::Both);
        self.connected.store(false, Ordering::Relaxed);
        tracing::info!(peer = %self.cfg.peer, reason = %why, "connection lost");
        let ids = conn.in_doubt.take(Instant::now());
        if !ids.is_empty() {
            self.handler.on_in_doubt(&self.cfg.peer, ids);
        }
        self.handler.on_link_state(&self.cfg.peer, false);
    }

    /// At stop the node fails every pending forward itself: nothing is reported in doubt.
    fn shut_down(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.stream.shutdown(Shutdown::Both);
            self.connected.store(false, Ordering::Relaxed);
            self.handler.on_link_state(&self.cfg.peer, false);
        }
    }

    fn reconnect(&mut self) {
        match connect(&self.cfg) {
            Ok(stream) => {
                tracing::debug!(peer = %self.cfg.peer, "connected");
                let now = Instant::now();
                self.conn = Some(Conn {
                    stream,
                    last_ping: now,
                    unanswered_since: None,
                    probe_deadline: None,
                    in_doubt: InDoubt::new(self.cfg.in_doubt_window),
                });
                self.backoff = Duration::ZERO;
                self.refusals.reset();
                self.connected.store(true, Ordering::Relaxed);
                self.handler.on_link_state(&self.cfg.peer, true);
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_millis(20), self.cfg.max_backoff);
                self.retry_at = Instant::now() + self.backoff;
                match e {
                    ConnectError::Refused(reason) if self.refusals.is_new(&reason) => {
                        tracing::warn!(peer = %self.cfg.peer, %reason, "the peer refused our handshake");
                    }
                    e => {
                        tracing::debug!(peer = %self.cfg.peer, error = %e, retry_in = ?self.backoff, "connect failed");
                    }
                }
            }
        }
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

enum Readable {
    /// At least one byte arrived.
    Heard,
    /// Nothing to read: open and quiet.
    Silent,
    Closed(String),
}

/// Reads and discards what the peer sent, without blocking. After the
/// handshake the server writes only pongs, so their content does not matter.
fn drain_readable(conn: &TcpStream) -> Readable {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 4096];
    let mut heard = false;
    for _ in 0..MAX_DRAIN_READS {
        // SAFETY: a valid socket descriptor and a buffer that outlives the call.
        let n = unsafe {
            libc::recv(
                conn.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            heard = true;
            continue;
        }
        if n == 0 {
            return Readable::Closed("the peer closed the connection".into());
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => break,
            io::ErrorKind::Interrupted => continue,
            _ => return Readable::Closed(format!("read failed: {e}")),
        }
    }
    if heard {
        Readable::Heard
    } else {
        Readable::Silent
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// The peer answered the handshake with a refusal and this reason.
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Connects from `local_ip`, then performs the handshake.
fn connect(cfg: &PeerConfig) -> Result<TcpStream, ConnectError> {
    let peer: SocketAddr = cfg.peer.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad peer address {}", cfg.peer),
        )
    })?;
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(cfg.local_ip, 0).into())?;
    socket.connect_timeout(&peer.into(), cfg.connect_timeout)?;
    let mut stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(cfg.write_timeout))?;
    // Only the handshake is read blocking; afterwards reads never wait.
    stream.set_read_timeout(Some(cfg.connect_timeout))?;
    let hello = cfg.identity.hello(&cfg.my_id);
    write_frame(&mut stream, Body::Handshake(hello))?;
    match read_frame(&mut stream, 64 << 10) {
        Ok(Body::HandshakeAck(ack)) if ack.accepted => Ok(stream),
        Ok(Body::HandshakeAck(ack)) => Err(ConnectError::Refused(ack.reason)),
        Ok(other) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected {other:?}")).into()),
        Err(e) => Err(io::Error::other(e.to_string()).into()),
    }
}

#[cfg(test)]
mod tests {
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
}
