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
//!
//! A snapshot offered with [`PeerLink::send_snapshot`] goes out one chunk
//! per turn of the worker's loop, after the frames queued meanwhile, paced to
//! `snapshot_bytes_per_sec` by waking when the next chunk is due (the wait
//! still serves the queues). A broken connection abandons the stream: the
//! follower restarts from seq 0 when the leader offers it again.

use super::frame::encode_frame;
use super::outbox::{is_client_traffic, Outgoing};
use super::peer_worker::{is_read_round, Conn, PeerWorker};
use super::snapshot_send::{SnapshotOffer, MAX_SNAPSHOT_CHUNK_BYTES};
use super::tls::TlsConfig;
use super::Handler;
use crate::storage::GroupId;
use crate::wire::frame::Body;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Messages waiting in each of a link's queues; beyond this, new ones are dropped (Raft retries).
const QUEUE_CAPACITY: usize = 8192;
/// Largest frame a sender writes directly: heartbeats, answers and small
/// appends. Larger ones go through the worker, which may block on the socket.
const DIRECT_FRAME_BYTES: usize = 32 << 10;
/// Offers waiting for the worker; more are refused (the leader offers again).
const OFFER_CAPACITY: usize = 16;

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
    /// Data bytes per snapshot chunk: 1 to [`MAX_SNAPSHOT_CHUNK_BYTES`]
    /// (default [`DEFAULT_SNAPSHOT_CHUNK_BYTES`](super::DEFAULT_SNAPSHOT_CHUNK_BYTES)).
    /// The link's other frames wait behind at most one chunk.
    pub snapshot_chunk_bytes: usize,
    /// Pace of a snapshot stream, chunk framing included; 0: unlimited.
    pub snapshot_bytes_per_sec: u64,
    /// Mutual TLS: the peer's certificate must chain to the CA and speak for the peer.
    pub tls: Option<Arc<TlsConfig>>,
}

pub(super) enum Control {
    Probe,
    /// A sender's direct write left bytes unwritten (or broke the connection): see to them.
    Flush,
    /// Fault injection: drop the connection and dial none until then.
    CutUntil(Instant),
    Stop,
}

/// Handle to a peer worker. Thread-safe `send`; `stop` joins the worker.
pub struct PeerLink {
    peer: String,
    raft: Sender<Outgoing>,
    client: Sender<Outgoing>,
    control: Sender<Control>,
    snapshot: Sender<SnapshotOffer>,
    /// When the connection up now was made ([`since_epoch_ms`] + 1; 0 while
    /// there is none).
    connected_at: Arc<AtomicU64>,
    /// The newest protocol version the peer's last handshake announced; 0
    /// until one has (and from nodes of version 5).
    peer_version: Arc<AtomicU32>,
    /// The live connection, between turns of the worker: a sender may write
    /// a small Raft frame on it directly (see [`PeerLink::send`]).
    conn: SharedConn,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    /// Bytes of frames written to the peer, over every connection (metrics).
    bytes_sent: Arc<AtomicU64>,
}

pub(super) type SharedConn = Arc<parking_lot::Mutex<Option<Conn>>>;

/// Milliseconds since the first call in this process (a monotonic clock
/// an atomic can hold).
pub(super) fn since_epoch_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The worker's ends of the link's queues.
pub(super) struct Queues {
    pub(super) raft: Receiver<Outgoing>,
    pub(super) client: Receiver<Outgoing>,
    pub(super) control: Receiver<Control>,
    pub(super) snapshot: Receiver<SnapshotOffer>,
}

impl PeerLink {
    /// Starts the worker thread `floyd-peer-<port>-><peer>`; refuses a
    /// chunk size outside 1..=[`MAX_SNAPSHOT_CHUNK_BYTES`].
    pub fn spawn(cfg: PeerConfig, handler: Arc<dyn Handler>) -> io::Result<PeerLink> {
        if !(1..=MAX_SNAPSHOT_CHUNK_BYTES).contains(&cfg.snapshot_chunk_bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "snapshot chunk of {} bytes: must be 1 to {MAX_SNAPSHOT_CHUNK_BYTES}",
                    cfg.snapshot_chunk_bytes
                ),
            ));
        }
        let (raft, raft_rx) = bounded(QUEUE_CAPACITY);
        let (client, client_rx) = bounded(QUEUE_CAPACITY);
        // Probes coalesce, so a short queue is enough; `stop` waits for room.
        let (control, control_rx) = bounded(16);
        let (snapshot, snapshot_rx) = bounded(OFFER_CAPACITY);
        let queues = Queues {
            raft: raft_rx,
            client: client_rx,
            control: control_rx,
            snapshot: snapshot_rx,
        };
        let peer_version = Arc::new(AtomicU32::new(0));
        let version_seen = peer_version.clone();
        let connected_at = Arc::new(AtomicU64::new(0));
        let since = connected_at.clone();
        let bytes_sent = Arc::new(AtomicU64::new(0));
        let sent = bytes_sent.clone();
        let peer = cfg.peer.clone();
        let conn = SharedConn::default();
        let shared = conn.clone();
        let thread = super::spawn_named(format!("floyd-peer-{}->{}", cfg.name, cfg.peer), move || {
            super::guarded(&*handler.clone(), || {
                let mut worker = PeerWorker::new(cfg, handler, since);
                worker.peer_version = version_seen;
                worker.bytes_sent = sent;
                worker.run(queues, shared)
            })
        })?;
        Ok(PeerLink {
            peer,
            raft,
            client,
            control,
            snapshot,
            connected_at,
            peer_version,
            conn,
            thread: parking_lot::Mutex::new(Some(thread)),
            bytes_sent,
        })
    }

    /// Bytes of frames written to the peer so far, over every connection.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::Relaxed)
    }

    /// The member this link dials.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends a frame of `group`; returns false if it was dropped because its queue is full.
    ///
    /// A small Raft frame goes out at once on the caller's thread when the
    /// connection is idle (no frame queued, the worker not writing): one
    /// thread hand-off less on every Raft round trip. It never blocks: what
    /// the socket does not take at once is left for the worker. Anything
    /// else is queued for the worker, forwarded commands and their results
    /// behind Raft traffic.
    pub fn send(&self, group: GroupId, body: Body) -> bool {
        let frame = Outgoing { group, body };
        let (queue, frame) = if is_client_traffic(&frame.body) {
            (&self.client, frame)
        } else {
            match self.send_directly(frame) {
                Ok(()) => return true,
                Err(frame) => (&self.raft, frame),
            }
        };
        match queue.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The direct path of [`PeerLink::send`]: gives the frame back if it must be queued.
    fn send_directly(&self, out: Outgoing) -> Result<(), Outgoing> {
        if !is_read_round(&out.body) || !self.raft.is_empty() {
            // Behind frames already queued, in order.
            return Err(out);
        }
        let Some(mut slot) = self.conn.try_lock() else {
            return Err(out);
        };
        let Some(conn) = slot
            .as_mut()
            .filter(|c| !c.stream.has_unsent() && (c.groups || out.group == 0))
        else {
            return Err(out);
        };
        let mut frame = Vec::new();
        if encode_frame(out.group, &out.body, &mut frame).is_err() || frame.len() > DIRECT_FRAME_BYTES {
            return Err(out);
        }
        self.bytes_sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
        if !conn.stream.send_nonblocking(&frame) {
            // Left unsent bytes, or broke: the worker finishes the frame or
            // drops the connection (a Raft frame may be lost; Raft resends).
            let _ = self.control.try_send(Control::Flush);
        }
        Ok(())
    }

    /// Streams a snapshot to the peer, without waiting. An offer of the
    /// stream in progress (same leader, term and snapshot) is ignored; any
    /// other replaces it, starting over. The outcome is reported with
    /// [`Handler::on_snapshot_sent`]. Returns false if the offer was dropped
    /// (too many waiting, or the link stopped): nothing is reported for it.
    pub fn send_snapshot(&self, offer: SnapshotOffer) -> bool {
        self.snapshot.try_send(offer).is_ok()
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
        self.connected_at.load(Ordering::Relaxed) != 0
    }

    /// How long the connection up now has been (since its handshake);
    /// `None` while there is none. A peer host that restarted, or came
    /// back after a partition, has a new one.
    pub fn connected_for(&self) -> Option<Duration> {
        match self.connected_at.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(since_epoch_ms().saturating_sub(at - 1))),
        }
    }

    /// Whether the peer's last handshake said it speaks protocol 6 (groups,
    /// the per-term time rule); false until a handshake has.
    pub fn speaks_groups(&self) -> bool {
        self.peer_version.load(Ordering::Relaxed) >= super::GROUPS_VERSION
    }

    /// Whether the peer's last handshake announced `version` or later.
    pub fn speaks(&self, version: u32) -> bool {
        self.peer_version.load(Ordering::Relaxed) >= version
    }

    /// Whether the peer's last handshake said it speaks protocol 7 (quiet
    /// groups: the quiesce heartbeat and the wake request); false until a
    /// handshake has.
    pub fn speaks_quiescence(&self) -> bool {
        self.peer_version.load(Ordering::Relaxed) >= super::QUIESCE_VERSION
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
