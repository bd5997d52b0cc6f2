//! The RPC server: a listener thread and one worker thread per connection.
//!
//! Every connection starts with a handshake naming the cluster, the sender,
//! the protocol version and the sender's membership ([`config_id`](super::config_id));
//! frames from anything else (garbage, another cluster, a stranger, a node
//! configured with other members) close the connection with a log line and
//! never reach the core. After the handshake the server only reads, except
//! that it answers every `Ping` with a `Pong`: that is how the dialing side
//! learns its connection is alive.
//!
//! At most `MAX_CONNECTIONS` are served; when full, a new connection takes
//! the place of the oldest one not yet past its handshake, so junk cannot
//! lock members out.
//!
//! Accept errors (EMFILE and the like) back off from 5 ms to 1 s and are
//! logged once per burst. A connection thread removes itself from the
//! registry when it ends, so the live count is exact without waiting for the
//! next accept; `stop` still joins every connection thread.

use super::frame::{body_to_message, read_frame, read_group_frame, write_frame, FrameError};
use super::stream::Stream;
use super::tls::TlsConfig;
use super::Handler;
use super::Identity;
use crate::metrics::Refusal;
use crate::wire::{frame::Body, HandshakeAck, Pong};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Version of the frame protocol, checked in the handshake. 2: `config_id`
/// and `Pong`; 3: `cluster_uid`, configuration entries; 4: snapshot chunks;
/// 5: leadership transfer (`TimeoutNow`, `RequestVote.leader_transfer`, the
/// `TransferLeader` command): a node of version 4 would drop the frame and
/// its connection, or refuse the vote.
pub const PROTOCOL_VERSION: u32 = 5;
/// The newest version spoken, announced in the handshake beside
/// [`PROTOCOL_VERSION`] (which nodes of version 5 check for equality). 6:
/// frames carry a group id (many groups per host). A link sends frames of
/// groups other than 0 only to peers that announce 6; to the others it
/// speaks version 5, group 0 only, so a cluster can be upgraded one node at a time.
/// 7: quiet groups (`AppendEntries.quiesce`, `AppendEntriesResponse.wake`):
/// a group goes quiet only while every member announces 7, since a member
/// of version 6 would take the last heartbeat for an ordinary one and time
/// its leader out. 8: Redis commands in the log (`Command.redis`): a
/// leader proposes them only while every member announces 8, since a
/// member of version 7 would refuse the entry that the others apply.
pub const MAX_PROTOCOL_VERSION: u32 = 8;
/// The version whose frames carry a group id.
pub const GROUPS_VERSION: u32 = 6;
/// The version that understands quiet groups.
pub const QUIESCE_VERSION: u32 = 7;
/// The version that applies Redis commands.
pub const DATA_TYPES_VERSION: u32 = 8;
use crate::limits::MAX_CONNECTIONS;
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name used in thread names (the local port).
    pub name: String,
    /// Whom to admit: the handshake rules, following the node's configuration.
    pub identity: Arc<Identity>,
    /// Largest frame read; the node passes [`MAX_FRAME_BYTES`](super::MAX_FRAME_BYTES).
    pub max_frame_bytes: usize,
    /// A connection silent for this long is closed (peers send pings when idle).
    pub idle_timeout: Duration,
    /// Mutual TLS: only peers whose certificate chains to the CA and speaks
    /// for the member they claim to be are served.
    pub tls: Option<Arc<TlsConfig>>,
}

/// A connection being served.
struct Live {
    /// A clone of its socket, so `stop` (or an eviction) can close it.
    sock: TcpStream,
    thread: JoinHandle<()>,
    /// Set once the peer passed the handshake: from then on it is a member's.
    admitted: Arc<AtomicBool>,
}

#[derive(Default)]
struct Registry {
    /// Connections still being served: a clone of the socket (so `stop` can
    /// close it) and the thread serving it.
    live: HashMap<u64, Live>,
    /// Threads that removed themselves from `live` as their last act; joined
    /// on the next accept or at `stop`.
    finished: Vec<JoinHandle<()>>,
}

struct Shared {
    cfg: ServerConfig,
    handler: Arc<dyn Handler>,
    stopping: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<Registry>,
}

/// A running server. Thread-safe; `stop` joins every thread it started.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    listener_thread: Mutex<Option<JoinHandle<()>>>,
    /// Dropped at `stop`: wakes the listener out of an accept backoff.
    wake: Mutex<Option<Sender<()>>>,
}

impl Server {
    /// Starts serving on an already bound listener.
    pub fn start(
        listener: TcpListener,
        cfg: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Server> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            handler,
            stopping: AtomicBool::new(false),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(Registry::default()),
        });
        let (wake, woken) = crossbeam_channel::bounded(1);
        let s = shared.clone();
        let thread = super::spawn_named(format!("floyd-listen-{}", shared.cfg.name), move || {
            let handler = s.handler.clone();
            super::guarded(&*handler, || accept_loop(listener, s, woken))
        })?;
        Ok(Server {
            shared,
            addr,
            listener_thread: Mutex::new(Some(thread)),
            wake: Mutex::new(Some(wake)),
        })
    }

    /// Connections currently being served (handshaking or past it).
    pub fn connection_count(&self) -> usize {
        self.shared.conns.lock().live.len()
    }

    /// Stops accepting, closes every connection and joins all server threads.
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.wake.lock().take();
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.listener_thread.lock().take() {
            let _ = t.join();
        }
        // No thread can register any more; one that ends now either is still
        // in `live` (taken here) or has moved itself to `finished` (taken here too).
        let Registry { live, finished } = std::mem::take(&mut *self.shared.conns.lock());
        for l in live.values() {
            let _ = l.sock.shutdown(Shutdown::Both);
        }
        for (_, l) in live {
            let _ = l.thread.join();
        }
        for thread in finished {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Backoff and logging for accept errors: the first error of a burst is
/// logged, the rest only counted, and the count is logged when the burst ends.
#[derive(Debug, Default)]
struct AcceptErrors {
    /// Errors in the current burst.
    count: u64,
    delay: Duration,
}

impl AcceptErrors {
    /// Records an error; returns how long to wait and whether to log it.
    fn failed(&mut self) -> (Duration, bool) {
        self.count += 1;
        self.delay = if self.count == 1 {
            ACCEPT_BACKOFF_MIN
        } else {
            (self.delay * 2).min(ACCEPT_BACKOFF_MAX)
        };
        (self.delay, self.count == 1)
    }

    /// Records a success; returns the length of the burst it ends, if any.
    fn succeeded(&mut self) -> Option<u64> {
        let burst = std::mem::take(&mut self.count);
        self.delay = Duration::ZERO;
        (burst > 0).then_some(burst)
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, woken: Receiver<()>) {
    let mut errors = AcceptErrors::default();
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                let (delay, log) = errors.failed();
                if log {
                    tracing::warn!(error = %e, "accept failed; backing off (further errors counted)");
                }
                // Out of descriptors, say: spinning on accept would only burn CPU and flood the log.
                match woken.recv_timeout(delay) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
        };
        if let Some(burst) = errors.succeeded() {
            tracing::warn!(errors = burst, "accept works again after {burst} failures");
        }
        let finished = std::mem::take(&mut shared.conns.lock().finished);
        for t in finished {
            let _ = t.join();
        }
        if shared.conns.lock().live.len() >= MAX_CONNECTIONS && !evict_unadmitted(&shared) {
            tracing::warn!("refusing connection: {MAX_CONNECTIONS} already open, all of members");
            shared.handler.on_refused(Refusal::TooManyConnections);
            continue;
        }
        if let Err(e) = spawn_connection(stream, &shared) {
            tracing::warn!(error = %e, "could not start a connection thread");
        }
    }
    if let Some(burst) = errors.succeeded().filter(|n| *n > 1) {
        tracing::warn!(
            errors = burst,
            "stopped while accept was failing ({burst} failures)"
        );
    }
}

/// When full, a new connection takes the place of the oldest one still
/// short of its handshake: junk and slow handshakes (idle sockets, a byte
/// at a time) cannot lock a member out. Returns whether one was closed.
fn evict_unadmitted(shared: &Shared) -> bool {
    let conns = shared.conns.lock();
    let oldest = conns
        .live
        .iter()
        .filter(|(_, l)| !l.admitted.load(Ordering::Acquire))
        .min_by_key(|(id, _)| **id);
    match oldest {
        Some((id, l)) => {
            tracing::debug!(
                connection = id,
                "full: closing the oldest connection not past its handshake"
            );
            // Its thread ends on the closed socket and leaves the registry.
            let _ = l.sock.shutdown(Shutdown::Both);
            true
        }
        None => false,
    }
}

fn spawn_connection(stream: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let registered = stream.try_clone()?;
    let admitted = Arc::new(AtomicBool::new(false));
    let flag = admitted.clone();
    let s = shared.clone();
    // Register before the thread runs so `stop` always sees it, and so the
    // thread's own removal below always finds its entry.
    let mut conns = shared.conns.lock();
    let thread = super::spawn_named(format!("floyd-conn-{}-{id}", shared.cfg.name), move || {
        super::guarded(&*s.handler.clone(), || serve_connection(stream, &s, &flag));
        // Last act: leave the registry, closing its clone of the socket now.
        let mut conns = s.conns.lock();
        if let Some(me) = conns.live.remove(&id) {
            let _ = me.sock.shutdown(Shutdown::Both);
            conns.finished.push(me.thread);
        }
    })?;
    conns.live.insert(
        id,
        Live {
            sock: registered,
            thread,
            admitted,
        },
    );
    Ok(())
}

fn serve_connection(sock: TcpStream, shared: &Shared, admitted: &AtomicBool) {
    let peer_addr = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = sock.set_nodelay(true);
    let _ = sock.set_read_timeout(Some(shared.cfg.idle_timeout));
    let _ = sock.set_write_timeout(Some(shared.cfg.idle_timeout));
    let mut stream = match &shared.cfg.tls {
        None => Stream::plain(sock),
        Some(tls) => match Stream::tls_server(sock, tls) {
            Ok(s) => s,
            // Closed before a byte came: a port probe (a load balancer's
            // health check, say), not a refusal worth counting.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                tracing::debug!(peer = %peer_addr, error = %e, "connection closed before its TLS handshake");
                return;
            }
            Err(e) => {
                tracing::warn!(peer = %peer_addr, error = %e, "connection refused: TLS handshake failed");
                shared.handler.on_refused(Refusal::TlsHandshake);
                return;
            }
        },
    };
    let from = match accept_handshake(&mut stream, shared) {
        Ok(from) => from,
        Err((Some(why), reason)) => {
            tracing::warn!(peer = %peer_addr, %reason, "connection refused");
            shared.handler.on_refused(why);
            return;
        }
        Err((None, reason)) => {
            tracing::debug!(peer = %peer_addr, %reason, "connection closed before its handshake");
            return;
        }
    };
    admitted.store(true, Ordering::Release);
    tracing::debug!(peer = %from, addr = %peer_addr, "peer connected");
    shared.handler.on_peer_connected(&from);
    let counted = Counted {
        inner: stream,
        bytes: shared.handler.received_bytes_counter(&from),
    };
    let mut reader = std::io::BufReader::with_capacity(256 << 10, counted);
    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let (group, body) = match read_group_frame(&mut reader, shared.cfg.max_frame_bytes) {
            Ok(f) => f,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::warn!(peer = %from, error = %e, "closing connection");
                shared.handler.on_refused(Refusal::BadFrame);
                return;
            }
        };
        match body_to_message(body) {
            Ok(msg) => shared.handler.on_message(&from, group, msg),
            Err(Body::ClientRequest(req)) => shared.handler.on_client_request(&from, group, req),
            Err(Body::ClientResponse(resp)) => shared.handler.on_client_response(&from, group, resp),
            Err(Body::SnapshotChunk(chunk)) => shared.handler.on_snapshot_chunk(&from, group, *chunk),
            Err(Body::Heartbeats(beats)) => shared.handler.on_heartbeats(&from, beats),
            Err(Body::Ping(_)) => {
                if let Err(e) = write_frame(reader.get_mut(), Body::Pong(Pong {})) {
                    tracing::debug!(peer = %from, error = %e, "cannot answer a ping; closing connection");
                    return;
                }
            }
            Err(other) => {
                tracing::warn!(peer = %from, frame = ?other, "unexpected frame; closing connection");
                shared.handler.on_refused(Refusal::UnexpectedFrame);
                return;
            }
        }
    }
}

/// Reads and checks the handshake; answers it either way. The error says
/// why it was refused, or `None` if the connection closed before a frame
/// (a port probe: nothing to count).
fn accept_handshake(stream: &mut Stream, shared: &Shared) -> Result<String, (Option<Refusal>, String)> {
    let bad = |why: String| (Some(Refusal::BadHandshake), why);
    let hs = match read_frame(stream, 64 << 10) {
        Ok(Body::Handshake(hs)) => hs,
        Ok(other) => return Err(bad(format!("expected a handshake, got {other:?}"))),
        Err(FrameError::Closed) => return Err((None, "closed".into())),
        Err(e) => return Err(bad(e.to_string())),
    };
    let refusal =
        certificate_refusal(stream, &hs.from, &shared.cfg).or_else(|| shared.cfg.identity.refusal(&hs));
    let ack = HandshakeAck {
        accepted: refusal.is_none(),
        reason: refusal.clone().unwrap_or_default(),
        max_protocol_version: MAX_PROTOCOL_VERSION,
    };
    let _ = write_frame(stream, Body::HandshakeAck(ack));
    match refusal {
        None => Ok(hs.from),
        Some(r) => Err((Some(Refusal::NotAdmitted), r)),
    }
}

/// A connection's reads, counted into its peer's bytes received.
struct Counted {
    inner: Stream,
    bytes: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl std::io::Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(b) = &self.bytes {
            b.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Under TLS, the certificate must speak for the member the handshake
/// claims, among the members of our configuration (see [`TlsConfig::refusal`]).
fn certificate_refusal(stream: &Stream, from: &str, cfg: &ServerConfig) -> Option<String> {
    let tls = cfg.tls.as_ref().filter(|_| stream.is_tls())?;
    let Ok(addr) = from.parse::<SocketAddr>() else {
        return Some(format!("{from:?} is no member address"));
    };
    let Some(cert) = stream.peer_certificate() else {
        return Some(format!("no certificate presented (claimed member {from})"));
    };
    tls.refusal(cert, addr, &cfg.identity.member_addrs())
        .map(|why| format!("{why} (claimed member {from})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_exponentially_and_log_once_per_burst() {
        let mut e = AcceptErrors::default();
        let ms = Duration::from_millis;
        let burst: Vec<(Duration, bool)> = (0..10).map(|_| e.failed()).collect();
        assert_eq!(
            burst.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
            [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000].map(ms)
        );
        assert_eq!(
            burst.iter().filter(|(_, log)| *log).count(),
            1,
            "only the first is logged"
        );
        assert!(burst[0].1);
        // The burst ends with a summary of its length, and the backoff starts over.
        assert_eq!(e.succeeded(), Some(10));
        assert_eq!(e.succeeded(), None);
        assert_eq!(e.failed(), (ms(5), true));
        assert_eq!(e.succeeded(), Some(1));
    }
}
