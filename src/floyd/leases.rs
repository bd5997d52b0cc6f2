//! Leases of the built-in store (protocol 6): keys that vanish when the
//! process keeping their lease alive stops (`state_machine/lease.rs`).

use super::Floyd;
use crate::error::{Error, Result};
use crate::limits::MAX_KEEPALIVE_IDS;
use crate::state_machine::lease::check_ttl;
use crate::state_machine::CommandKind;
use crate::wire::{LeaseInfo, LeaseKeepAliveResult};
use bytes::Bytes;
use crossbeam_channel::{bounded, Sender};
use parking_lot::Mutex;
use prost::Message as _;
use std::time::Duration;

/// A lease as [`Floyd::lease_time_to_live`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseStatus {
    pub id: u64,
    /// The TTL it was granted with (each keep-alive renews it for as long).
    pub ttl_ms: u64,
    /// What is left of it now, as this node's state machine sees it.
    pub remaining_ms: u64,
    /// Keys attached to it.
    pub keys: u64,
}

impl Floyd {
    /// Grants a lease of `ttl_ms` and returns its id (never 0). A TTL
    /// shorter than [`Floyd::min_lease_ttl_ms`] is raised to it; longer
    /// than a year is `InvalidArgument`. The lease ends, deleting every key
    /// attached to it, once `ttl_ms` pass without a keep-alive, or when
    /// revoked. Linearizable (one log entry).
    pub fn lease_grant(&self, ttl_ms: u64) -> Result<u64> {
        self.key_value_only("lease_grant")?;
        check_ttl(ttl_ms)?;
        let ttl_ms = ttl_ms.max(self.min_lease_ttl_ms());
        let bytes = self.execute(CommandKind::LeaseGrant { ttl_ms })?;
        let id: [u8; 8] = bytes
            .as_ref()
            .try_into()
            .map_err(|_| Error::Internal("a lease grant answered no id".into()))?;
        Ok(u64::from_be_bytes(id))
    }

    /// The shortest TTL a lease is granted: 2 × `check_leader_us`, the
    /// longest election timeout on the randomized timer (an election can
    /// take that long, and no keep-alive is applied meanwhile).
    pub fn min_lease_ttl_ms(&self) -> u64 {
        (self.node.opts.check_leader_us / 1000).saturating_mul(2).max(1)
    }

    /// Renews lease `id` for its TTL from now; the TTL. `NotFound` once it
    /// expired or was revoked. The lease lasts at least that long from the
    /// moment this call began (also across leader changes: a new leader
    /// gives every lease a whole TTL from its first entry). Calls from many
    /// threads share one log entry: a handle keeps one keep-alive entry in
    /// flight, and the calls that arrive meanwhile ride the next.
    pub fn lease_keepalive(&self, id: u64) -> Result<u64> {
        self.key_value_only("lease_keepalive")?;
        if id == 0 {
            return Err(Error::InvalidArgument("lease id 0 names no lease".into()));
        }
        self.keep_alives.renew(self, id)
    }

    /// Ends lease `id` now, deleting every key attached to it (at one
    /// revision). `NotFound` if there is no such lease.
    pub fn lease_revoke(&self, id: u64) -> Result<()> {
        self.key_value_only("lease_revoke")?;
        self.execute(CommandKind::LeaseRevoke { id }).map(|_| ())
    }

    /// Lease `id`'s TTL, time left and number of keys; linearizable
    /// (ReadIndex, as `read`). `NotFound` if there is no such lease.
    pub fn lease_time_to_live(&self, id: u64) -> Result<LeaseStatus> {
        self.key_value_only("lease_time_to_live")?;
        let bytes = self.execute(CommandKind::LeaseQuery { id })?;
        let info = LeaseInfo::decode(bytes.as_ref())
            .map_err(|e| Error::Internal(format!("a lease's state does not decode: {e}")))?;
        Ok(LeaseStatus {
            id: info.id,
            ttl_ms: info.ttl_ms,
            remaining_ms: info.remaining_ms,
            keys: info.keys,
        })
    }

    /// Stores `value` under `key`, attached to lease `lease`: deleted when
    /// the lease ends (a later write without it detaches the key).
    /// `NotFound` (nothing written) if there is no such lease.
    pub fn write_with_lease(&self, key: &[u8], value: &[u8], lease: u64) -> Result<()> {
        self.key_value_only("write_with_lease")?;
        let cmd = CommandKind::PutLeased {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            lease,
        };
        self.execute(cmd).map(|_| ())
    }
}

/// A handle's keep-alives: one entry in flight at a time, carrying every
/// lease its callers asked to renew meanwhile (group commit), so that
/// keeping many leases alive costs a few entries a round trip, not one per
/// lease.
#[derive(Default)]
pub(crate) struct KeepAlives {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// (ticket, lease, its caller).
    waiting: Vec<(u64, u64, Sender<Turn>)>,
    next_ticket: u64,
    /// A caller is sending a batch: the others wait for their turn.
    sending: bool,
}

/// What a waiting caller is told.
enum Turn {
    Renewed(Result<u64>),
    /// Send the next batch (yours is in it).
    Send,
}

impl KeepAlives {
    fn renew(&self, floyd: &Floyd, id: u64) -> Result<u64> {
        let (tx, rx) = bounded(1);
        let (ticket, send_now) = {
            let mut q = self.queue.lock();
            let ticket = q.next_ticket;
            q.next_ticket += 1;
            q.waiting.push((ticket, id, tx));
            (ticket, !std::mem::replace(&mut q.sending, true))
        };
        // Two batches' time (the one in flight, then this caller's).
        let patience = (floyd.node.opts.request_timeout + Duration::from_secs(1)) * 2;
        if !send_now {
            match rx.recv_timeout(patience) {
                Ok(Turn::Renewed(r)) => return r,
                Ok(Turn::Send) => {}
                Err(_) => {
                    // Under the lock: a turn handed over meanwhile is taken,
                    // never lost with this caller.
                    let mut q = self.queue.lock();
                    match rx.try_recv() {
                        Ok(Turn::Renewed(r)) => return r,
                        Ok(Turn::Send) => {}
                        Err(_) => {
                            q.waiting.retain(|(t, _, _)| *t != ticket);
                            return Err(floyd.timeout());
                        }
                    }
                }
            }
        }
        self.send_batch(floyd);
        match rx.try_recv() {
            Ok(Turn::Renewed(r)) => r,
            _ => Err(Error::Internal("a keep-alive batch left out its sender".into())),
        }
    }

    /// Sends what is waiting (at most one entry's worth), answers each
    /// caller, and hands the next batch to the first caller left waiting.
    fn send_batch(&self, floyd: &Floyd) {
        let batch: Vec<(u64, u64, Sender<Turn>)> = {
            let mut q = self.queue.lock();
            let n = q.waiting.len().min(MAX_KEEPALIVE_IDS);
            q.waiting.drain(..n).collect()
        };
        let ids: Vec<u64> = batch.iter().map(|(_, id, _)| *id).collect();
        let answers = floyd
            .execute(CommandKind::LeaseKeepAlive { ids })
            .and_then(|bytes| {
                LeaseKeepAliveResult::decode(bytes.as_ref())
                    .map_err(|e| Error::Internal(format!("a keep-alive's answer does not decode: {e}")))
            });
        for (i, (_, _, tx)) in batch.into_iter().enumerate() {
            let r = match &answers {
                Ok(a) => match a.ttl_ms.get(i) {
                    Some(0) => Err(Error::NotFound),
                    Some(ttl) => Ok(*ttl),
                    None => Err(Error::Internal(
                        "a keep-alive answered fewer leases than asked".into(),
                    )),
                },
                Err(e) => Err(e.clone()),
            };
            let _ = tx.send(Turn::Renewed(r));
        }
        let mut q = self.queue.lock();
        loop {
            match q.waiting.first() {
                Some((_, _, next)) if next.send(Turn::Send).is_ok() => return,
                // (Gone: it gave up waiting.)
                Some(_) => {
                    q.waiting.remove(0);
                }
                None => {
                    q.sending = false;
                    return;
                }
            }
        }
    }
}
