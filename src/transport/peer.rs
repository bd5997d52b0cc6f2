//! The outgoing side: one worker thread per remote member, owning a persistent
//! TCP connection made from this node's own `local_ip` (bound before
//! connecting, so per-address firewall rules can partition nodes on one host).
//!
//! Messages are one-way: the peer answers over its own connection to us.
//! Queued messages are written in batches; a dead connection is replaced
//! with backoff, and a connection the peer closed is noticed before it is
//! written to, never silently reused.

use super::frame::{encode_frame, read_frame, write_frame};
use super::server::PROTOCOL_VERSION;
use super::Handler;
use crate::wire::{frame::Body, Handshake, Ping};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages waiting for one peer; beyond this, new ones are dropped (Raft retries).
const QUEUE_CAPACITY: usize = 8192;
/// Frames written in one go.
const MAX_BATCH: usize = 512;

/// How to reach one peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Used in the thread name: the local port.
    pub name: String,
    pub local_ip: IpAddr,
    pub my_id: String,
    pub peer: String,
    pub cluster_id: String,
    pub connect_timeout: Duration,
    pub write_timeout: Duration,
    /// A ping goes out after this long without traffic, so the peer's idle timeout never fires.
    pub keepalive: Duration,
    pub max_backoff: Duration,
}

enum Outgoing {
    Frame(Body),
    Stop,
}

/// Handle to a peer worker. Thread-safe `send`; `stop` joins the worker.
pub struct PeerLink {
    tx: Sender<Outgoing>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl PeerLink {
    /// Starts the worker thread `floyd-peer-<port>-><peer>`.
    pub fn spawn(cfg: PeerConfig, handler: Arc<dyn Handler>) -> io::Result<PeerLink> {
        let (tx, rx) = bounded(QUEUE_CAPACITY);
        let thread = super::spawn_named(format!("floyd-peer-{}->{}", cfg.name, cfg.peer), move || {
            super::guarded(&*handler.clone(), || PeerWorker::new(cfg, handler).run(rx))
        })?;
        Ok(PeerLink {
            tx,
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// Queues a frame; returns false if it was dropped because the queue is full.
    pub fn send(&self, body: Body) -> bool {
        match self.tx.try_send(Outgoing::Frame(body)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Stops the worker and joins it; queued messages are dropped.
    pub fn stop(&self) {
        if let Some(t) = self.thread.lock().take() {
            let _ = self.tx.send(Outgoing::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.stop();
    }
}

struct PeerWorker {
    cfg: PeerConfig,
    handler: Arc<dyn Handler>,
    conn: Option<TcpStream>,
    backoff: Duration,
    retry_at: Instant,
    buf: Vec<u8>,
}

impl PeerWorker {
    fn new(cfg: PeerConfig, handler: Arc<dyn Handler>) -> Self {
        PeerWorker {
            cfg,
            handler,
            conn: None,
            backoff: Duration::ZERO,
            retry_at: Instant::now(),
            buf: Vec::new(),
        }
    }

    fn run(mut self, rx: Receiver<Outgoing>) {
        loop {
            let mut batch = Vec::new();
            match rx.recv_timeout(self.cfg.keepalive) {
                Ok(Outgoing::Frame(b)) => batch.push(b),
                Ok(Outgoing::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Outgoing::Frame(b)) => batch.push(b),
                    Ok(Outgoing::Stop) => return,
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                if self.conn.is_some() {
                    batch.push(Body::Ping(Ping {}));
                } else {
                    continue;
                }
            }
            self.deliver(batch);
        }
    }

    fn deliver(&mut self, batch: Vec<Body>) {
        if self.conn.as_ref().is_some_and(|c| !still_open(c)) {
            tracing::debug!(peer = %self.cfg.peer, "peer closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() && Instant::now() >= self.retry_at {
            self.reconnect();
        }
        let Some(conn) = self.conn.as_mut() else {
            // Never sent: a forwarded command can be failed as definitely not applied.
            for body in batch {
                if let Body::ClientRequest(req) = body {
                    self.handler.on_undeliverable(&self.cfg.peer, req);
                }
            }
            return;
        };
        self.buf.clear();
        for body in batch {
            encode_frame(body, &mut self.buf);
        }
        if let Err(e) = conn.write_all(&self.buf).and_then(|_| conn.flush()) {
            // Part of the batch may have arrived: forwarded commands stay in
            // doubt and time out as "outcome unknown".
            tracing::debug!(peer = %self.cfg.peer, error = %e, "write failed; dropping connection");
            self.conn = None;
        }
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::new();
        }
    }

    fn reconnect(&mut self) {
        match connect(&self.cfg) {
            Ok(c) => {
                tracing::debug!(peer = %self.cfg.peer, "connected");
                self.conn = Some(c);
                self.backoff = Duration::ZERO;
            }
            Err(e) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_millis(20), self.cfg.max_backoff);
                self.retry_at = Instant::now() + self.backoff;
                tracing::debug!(peer = %self.cfg.peer, error = %e, retry_in = ?self.backoff, "connect failed");
            }
        }
    }
}

/// Whether the peer has not closed the connection. The peer never writes
/// after the handshake, so anything readable means EOF or an error.
fn still_open(conn: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // One non-blocking peek: EAGAIN means open and silent; 0 (EOF), data or an error means not.
    // SAFETY: a valid socket descriptor and a one-byte buffer that outlives the call.
    let n = unsafe {
        libc::recv(
            conn.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Connects from `local_ip`, then performs the handshake.
fn connect(cfg: &PeerConfig) -> io::Result<TcpStream> {
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
    stream.set_read_timeout(Some(cfg.connect_timeout))?;
    let hello = Handshake {
        cluster_id: cfg.cluster_id.clone(),
        from: cfg.my_id.clone(),
        protocol_version: PROTOCOL_VERSION,
    };
    write_frame(&mut stream, Body::Handshake(hello))?;
    match read_frame(&mut stream, 64 << 10) {
        Ok(Body::HandshakeAck(ack)) if ack.accepted => Ok(stream),
        Ok(Body::HandshakeAck(ack)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, ack.reason)),
        Ok(other) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected {other:?}"),
        )),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}
