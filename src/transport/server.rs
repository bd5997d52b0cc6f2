//! The RPC server: a listener thread and one worker thread per connection.
//!
//! Every connection starts with a handshake naming the cluster and the
//! sender; frames from anything else (garbage, another cluster, a stranger)
//! close the connection with a log line and never reach the core.

use super::frame::{body_to_message, read_frame, write_frame, FrameError};
use super::Handler;
use crate::wire::{frame::Body, Handshake, HandshakeAck};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Version of the frame protocol, checked in the handshake.
pub const PROTOCOL_VERSION: u32 = 1;
/// Connections served at once; more are refused so a flood cannot exhaust threads.
const MAX_CONNECTIONS: usize = 256;

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name used in thread names (the local port).
    pub name: String,
    pub cluster_id: String,
    pub members: HashSet<String>,
    pub max_frame_bytes: usize,
    /// A connection silent for this long is closed (peers send pings when idle).
    pub idle_timeout: Duration,
}

struct Shared {
    cfg: ServerConfig,
    handler: Arc<dyn Handler>,
    stopping: AtomicBool,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, (TcpStream, JoinHandle<()>)>>,
}

/// A running server. Thread-safe; `stop` joins every thread it started.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    listener_thread: Mutex<Option<JoinHandle<()>>>,
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
            conns: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let thread = super::spawn_named(format!("floyd-listen-{}", shared.cfg.name), move || {
            let handler = s.handler.clone();
            super::guarded(&*handler, || accept_loop(listener, s))
        })?;
        Ok(Server {
            shared,
            addr,
            listener_thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops accepting, closes every connection and joins all server threads.
    pub fn stop(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.listener_thread.lock().take() {
            let _ = t.join();
        }
        let conns: Vec<_> = self.shared.conns.lock().drain().collect();
        for (_, (stream, _)) in &conns {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, (_, thread)) in conns {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        reap_finished(&shared);
        if shared.conns.lock().len() >= MAX_CONNECTIONS {
            tracing::warn!("refusing connection: {MAX_CONNECTIONS} already open");
            continue;
        }
        if let Err(e) = spawn_connection(stream, &shared) {
            tracing::warn!(error = %e, "could not start a connection thread");
        }
    }
}

fn spawn_connection(stream: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let registered = stream.try_clone()?;
    let closer = stream.try_clone()?;
    let s = shared.clone();
    // Register before the thread runs so `stop` always sees it.
    let mut conns = shared.conns.lock();
    let thread = super::spawn_named(format!("floyd-conn-{}-{id}", shared.cfg.name), move || {
        super::guarded(&*s.handler.clone(), || serve_connection(stream, &s));
        // The registry holds a clone of the socket: close it now, not at reaping.
        let _ = closer.shutdown(Shutdown::Both);
    })?;
    conns.insert(id, (registered, thread));
    Ok(())
}

/// Drops the entries of connections whose threads have finished.
fn reap_finished(shared: &Shared) {
    let mut conns = shared.conns.lock();
    let done: Vec<u64> = conns
        .iter()
        .filter(|(_, (_, t))| t.is_finished())
        .map(|(id, _)| *id)
        .collect();
    for id in done {
        if let Some((_, t)) = conns.remove(&id) {
            let _ = t.join();
        }
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let peer_addr = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(shared.cfg.idle_timeout));
    let _ = stream.set_write_timeout(Some(shared.cfg.idle_timeout));
    let from = match accept_handshake(&mut stream, shared) {
        Ok(from) => from,
        Err(reason) => {
            tracing::warn!(peer = %peer_addr, %reason, "connection refused");
            return;
        }
    };
    tracing::debug!(peer = %from, addr = %peer_addr, "peer connected");
    let mut reader = std::io::BufReader::with_capacity(256 << 10, stream);
    loop {
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let body = match read_frame(&mut reader, shared.cfg.max_frame_bytes) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(e) => {
                tracing::warn!(peer = %from, error = %e, "closing connection");
                return;
            }
        };
        match body_to_message(body) {
            Ok(msg) => shared.handler.on_message(&from, msg),
            Err(Body::ClientRequest(req)) => shared.handler.on_client_request(&from, req),
            Err(Body::ClientResponse(resp)) => shared.handler.on_client_response(&from, resp),
            Err(Body::Ping(_)) => {}
            Err(other) => {
                tracing::warn!(peer = %from, frame = ?other, "unexpected frame; closing connection");
                return;
            }
        }
    }
}

/// Reads and checks the handshake; answers it either way.
fn accept_handshake(stream: &mut TcpStream, shared: &Shared) -> Result<String, String> {
    let hs = match read_frame(stream, 64 << 10) {
        Ok(Body::Handshake(hs)) => hs,
        Ok(other) => return Err(format!("expected a handshake, got {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    let refusal = handshake_refusal(&hs, &shared.cfg);
    let ack = HandshakeAck {
        accepted: refusal.is_none(),
        reason: refusal.clone().unwrap_or_default(),
    };
    let _ = write_frame(stream, Body::HandshakeAck(ack));
    match refusal {
        None => Ok(hs.from),
        Some(r) => Err(r),
    }
}

fn handshake_refusal(hs: &Handshake, cfg: &ServerConfig) -> Option<String> {
    if hs.protocol_version != PROTOCOL_VERSION {
        return Some(format!(
            "protocol version {} (we speak {PROTOCOL_VERSION})",
            hs.protocol_version
        ));
    }
    if hs.cluster_id != cfg.cluster_id {
        return Some(format!(
            "cluster {:?} is not ours ({:?})",
            hs.cluster_id, cfg.cluster_id
        ));
    }
    if !cfg.members.contains(&hs.from) {
        return Some(format!("{} is not a member of this cluster", hs.from));
    }
    None
}
