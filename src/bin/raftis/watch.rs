//! `FLOYD.WATCH start end start_revision`: a floyd watch streamed to a
//! client, as Redis's SUBSCRIBE streams messages. The connection then
//! carries only the watch: `["watch", id]` first, then one
//! `["event", revision, "put"|"delete", key, value]` per change, in
//! revision order, each once, as this node applies them; a last
//! `["end", error]` if the watch ends by itself (the node closed, a
//! snapshot replaced its state, the client fell behind). Closing the
//! connection ends the watch. A client that saw revision r and watches
//! again from r + 1 (after a restart of the node too) misses and repeats
//! nothing, within the history the node keeps.

use crate::resp::Reply;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use floyd::{EventKind, Floyd, WatchUpdate};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Changes queued for a client that reads slower than they come; past it
/// the watch ends with a last `["end", "BUSY …"]` (watch again from the
/// last revision seen + 1).
const MAX_QUEUED: usize = 100_000;
/// How often an idle stream looks whether its client went away.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// A watch started for a connection.
pub struct WatchStream {
    floyd: Arc<Floyd>,
    id: u64,
    rx: Receiver<Reply>,
}

/// Starts watching `[start, end)` from `start_revision` (0: from now).
pub fn start(
    floyd: &Arc<Floyd>,
    start: &[u8],
    end: &[u8],
    start_revision: u64,
) -> floyd::Result<WatchStream> {
    let (tx, rx) = crossbeam_channel::bounded(MAX_QUEUED + 1);
    let mut forward = Forward { tx, ended: false };
    let id = floyd.watch(start, end, start_revision, move |update| forward.update(update))?;
    Ok(WatchStream {
        floyd: floyd.clone(),
        id,
        rx,
    })
}

/// The callback's side: runs on floyd's watch thread, never blocks.
struct Forward {
    /// Room for `MAX_QUEUED` changes and the last word after them.
    tx: Sender<Reply>,
    ended: bool,
}

impl Forward {
    fn update(&mut self, update: WatchUpdate<'_>) {
        if self.ended {
            return;
        }
        match update {
            WatchUpdate::Events(events) => {
                for e in events {
                    if self.tx.len() >= MAX_QUEUED {
                        return self.end(Reply::Error(
                            "BUSY the client read the watch too slowly: watch again from the last revision seen + 1"
                                .into(),
                        ));
                    }
                    let kind = match e.kind {
                        EventKind::Put => "put",
                        EventKind::Delete => "delete",
                    };
                    let reply = Reply::Array(vec![
                        Reply::Bulk(b"event".to_vec()),
                        Reply::Int(e.mod_revision as i64),
                        Reply::Bulk(kind.as_bytes().to_vec()),
                        Reply::Bulk(e.key.to_vec()),
                        Reply::Bulk(e.value.to_vec()),
                    ]);
                    if let Err(TrySendError::Disconnected(_)) = self.tx.try_send(reply) {
                        self.ended = true;
                        return;
                    }
                }
            }
            WatchUpdate::Ended(e) => self.end(crate::commands::error_reply(&e)),
        }
    }

    fn end(&mut self, why: Reply) {
        self.ended = true;
        let _ = self
            .tx
            .try_send(Reply::Array(vec![Reply::Bulk(b"end".to_vec()), why]));
    }
}

impl WatchStream {
    /// Streams the watch to `stream` until the client goes away or the
    /// watch ends, after the replies already in `out`.
    pub fn serve(self, stream: &mut TcpStream, mut out: Vec<u8>) {
        Reply::Array(vec![Reply::Bulk(b"watch".to_vec()), Reply::Int(self.id as i64)]).encode(&mut out);
        let _ = self.run(stream, out);
        // Ended by the client or by itself: either way, no call after.
        let _ = self.floyd.unwatch(self.id);
    }

    fn run(&self, stream: &mut TcpStream, mut out: Vec<u8>) -> std::io::Result<()> {
        loop {
            if !out.is_empty() {
                stream.write_all(&out)?;
                out.clear();
            }
            let mut next = match self.rx.recv_timeout(IDLE_CHECK) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) if client_gone(stream)? => return Ok(()),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            // Whatever else is queued goes in the same write.
            while let Some(reply) = next.take() {
                let last = is_end(&reply);
                reply.encode(&mut out);
                if last {
                    return stream.write_all(&out);
                }
                if out.len() < 64 << 10 {
                    next = self.rx.try_recv().ok();
                }
            }
        }
    }
}

fn is_end(r: &Reply) -> bool {
    matches!(r, Reply::Array(items) if matches!(items.first(), Some(Reply::Bulk(b)) if b == b"end"))
}

/// Whether the client closed its side (anything it sends is ignored: the
/// connection carries the watch only).
fn client_gone(stream: &mut TcpStream) -> std::io::Result<bool> {
    stream.set_nonblocking(true)?;
    let mut buf = [0u8; 512];
    let gone = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false)?;
    Ok(gone)
}
