//! Encoding of client commands carried in log entries.

use crate::error::{Error, Result};
use crate::limits::MAX_KEEPALIVE_IDS;
use crate::options::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::wire::{
    command::Op, AddServer, Command, Custom, Delete, Get, LeaseGrant, LeaseKeepAlive, LeaseQuery,
    LeaseRevoke, LeaseSweep, Put, Range, RedisBatch, RegisterSession, RemoveServer, SessionRef,
    TransferLeader, TryLock, Txn, Unlock,
};
use bytes::Bytes;
use prost::Message as _;

pub use crate::limits::MAX_LOCK_TTL_MS;

/// What a client asks the cluster to do.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandKind {
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    Get {
        key: Bytes,
    },
    TryLock {
        name: Bytes,
        holder: Bytes,
        ttl_ms: u64,
    },
    Unlock {
        name: Bytes,
        holder: Bytes,
    },
    /// Membership requests: the leader turns them into configuration entries.
    AddServer {
        server: String,
    },
    RemoveServer {
        server: String,
    },
    /// Leadership transfer (§3.10): the leader hands over to `server`; never in the log.
    TransferLeader {
        server: String,
    },
    /// A command for a user-defined state machine (`Floyd::propose`), opaque to floyd.
    Custom {
        data: Bytes,
    },
    /// A transaction (protocol 6; compare-and-swap is one): `txn.rs`.
    Txn(Txn),
    /// A range read (protocol 6), served as a `Get` is: never in the log.
    Range(Range),
    /// A put that attaches the key to a lease (protocol 6; `lease.rs`).
    PutLeased {
        key: Bytes,
        value: Bytes,
        lease: u64,
    },
    LeaseGrant {
        ttl_ms: u64,
    },
    LeaseRevoke {
        id: u64,
    },
    /// Renews every lease named (a handle batches its callers' keep-alives).
    LeaseKeepAlive {
        ids: Vec<u64>,
    },
    /// Expires what is due in an idle group (its leader proposes it).
    LeaseSweep,
    /// A lease's TTL and time left: a read, never in the log.
    LeaseQuery {
        id: u64,
    },
    /// Opens a client session (protocol 6; `session.rs`) living `ttl_ms`
    /// of the log's time past its last command.
    RegisterSession {
        ttl_ms: u64,
    },
    /// Redis commands that write (protocol 8; `redis/`), run as one step.
    Redis(RedisBatch),
    /// Redis commands that only read: never in the log.
    RedisRead(RedisBatch),
}

impl CommandKind {
    /// Checks sizes before anything is proposed.
    pub fn validate(&self) -> Result<()> {
        match self {
            CommandKind::Put { key, value } => check_put(key, value),
            CommandKind::PutLeased { key, value, lease } => {
                check_put(key, value)?;
                check_lease_id(*lease)
            }
            CommandKind::LeaseGrant { ttl_ms } => super::lease::check_ttl(*ttl_ms),
            CommandKind::LeaseRevoke { id } | CommandKind::LeaseQuery { id } => check_lease_id(*id),
            CommandKind::LeaseKeepAlive { ids } => {
                if ids.is_empty() || ids.len() > MAX_KEEPALIVE_IDS {
                    return Err(Error::InvalidArgument(format!(
                        "a keep-alive of {} leases (1 to {MAX_KEEPALIVE_IDS})",
                        ids.len()
                    )));
                }
                ids.iter().try_for_each(|id| check_lease_id(*id))
            }
            CommandKind::LeaseSweep => Ok(()),
            CommandKind::Redis(b) | CommandKind::RedisRead(b) => check_redis(b),
            CommandKind::RegisterSession { ttl_ms } => super::session::check_ttl(*ttl_ms),
            CommandKind::Delete { key } | CommandKind::Get { key } => check_name(key, "key"),
            CommandKind::TryLock { name, holder, ttl_ms } => {
                check_name(name, "lock name")?;
                check_name(holder, "lock holder")?;
                if *ttl_ms == 0 || *ttl_ms > MAX_LOCK_TTL_MS {
                    return Err(Error::InvalidArgument(format!(
                        "lock ttl {ttl_ms} ms is outside 1..={MAX_LOCK_TTL_MS}"
                    )));
                }
                Ok(())
            }
            CommandKind::Unlock { name, holder } => {
                check_name(name, "lock name")?;
                check_name(holder, "lock holder")
            }
            CommandKind::AddServer { server }
            | CommandKind::RemoveServer { server }
            | CommandKind::TransferLeader { server } => crate::options::canonical_member(server).map(|_| ()),
            // (Held to the value limit: it travels in one entry, as a value does.)
            CommandKind::Custom { data } if data.len() > MAX_VALUE_BYTES => Err(Error::InvalidArgument(
                format!("command of {} bytes exceeds {MAX_VALUE_BYTES}", data.len()),
            )),
            CommandKind::Custom { .. } => Ok(()),
            CommandKind::Txn(t) => super::txn::validate(t),
            CommandKind::Range(r) => {
                // A bound may be one byte longer than a key: the key and a
                // zero byte end the range of exactly that key, and start the
                // next page after it.
                let max = MAX_KEY_BYTES + 1;
                for (bound, what) in [(&r.start, "range start"), (&r.end, "range end")] {
                    if bound.len() > max {
                        return Err(Error::InvalidArgument(format!(
                            "{what} of {} bytes exceeds {max}",
                            bound.len()
                        )));
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether this is a read served by ReadIndex (on a follower too), not a log entry.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            CommandKind::Get { .. }
                | CommandKind::Range(_)
                | CommandKind::LeaseQuery { .. }
                | CommandKind::RedisRead(_)
        )
    }

    /// Whether every replica applies it only in an entry marked as proposed
    /// under protocol 6 (`revision.rs`): a leader refuses it with `Busy`
    /// rather than commit it to be refused everywhere.
    pub fn needs_protocol_6(&self) -> bool {
        matches!(
            self,
            CommandKind::Txn(_)
                | CommandKind::PutLeased { .. }
                | CommandKind::LeaseGrant { .. }
                | CommandKind::LeaseRevoke { .. }
                | CommandKind::LeaseKeepAlive { .. }
                | CommandKind::LeaseSweep
                | CommandKind::RegisterSession { .. }
        )
    }

    /// Whether the command changes the store and is sent under the
    /// handle's client session, so that a retry of it is applied once.
    /// (Reads are not in the log; a user machine's commands are opaque and
    /// its effects are not written beside the session's: not protected.)
    pub fn wants_session(&self) -> bool {
        matches!(
            self,
            CommandKind::Put { .. }
                | CommandKind::PutLeased { .. }
                | CommandKind::Delete { .. }
                | CommandKind::Txn(_)
                | CommandKind::TryLock { .. }
                | CommandKind::Unlock { .. }
                | CommandKind::LeaseGrant { .. }
                | CommandKind::LeaseRevoke { .. }
                | CommandKind::LeaseKeepAlive { .. }
                | CommandKind::Redis(_)
        )
    }

    /// Whether every member must speak protocol 8 first: replicas of
    /// earlier releases would refuse the entry, and so differ.
    pub fn needs_protocol_8(&self) -> bool {
        matches!(self, CommandKind::Redis(_))
    }

    /// Whether this is a membership request rather than a state-machine command.
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            CommandKind::AddServer { .. } | CommandKind::RemoveServer { .. }
        )
    }

    pub fn into_wire(self) -> Command {
        self.into_wire_in(None)
    }

    /// The wire form, sent under client session `session`.
    pub fn into_wire_in(self, session: Option<SessionRef>) -> Command {
        let op = match self {
            CommandKind::Put { key, value } => Op::Put(Put { key, value, lease: 0 }),
            CommandKind::Delete { key } => Op::Delete(Delete { key }),
            CommandKind::Get { key } => Op::Get(Get { key }),
            CommandKind::TryLock { name, holder, ttl_ms } => Op::TryLock(TryLock { name, holder, ttl_ms }),
            CommandKind::Unlock { name, holder } => Op::Unlock(Unlock { name, holder }),
            CommandKind::AddServer { server } => Op::AddServer(AddServer { server }),
            CommandKind::RemoveServer { server } => Op::RemoveServer(RemoveServer { server }),
            CommandKind::TransferLeader { server } => Op::TransferLeader(TransferLeader { server }),
            CommandKind::Custom { data } => Op::Custom(Custom { data }),
            CommandKind::Txn(t) => Op::Txn(t),
            CommandKind::Range(r) => Op::Range(r),
            CommandKind::PutLeased { key, value, lease } => Op::Put(Put { key, value, lease }),
            CommandKind::LeaseGrant { ttl_ms } => Op::LeaseGrant(LeaseGrant { ttl_ms }),
            CommandKind::LeaseRevoke { id } => Op::LeaseRevoke(LeaseRevoke { id }),
            CommandKind::LeaseKeepAlive { ids } => Op::LeaseKeepAlive(LeaseKeepAlive { ids }),
            CommandKind::LeaseSweep => Op::LeaseSweep(LeaseSweep {}),
            CommandKind::LeaseQuery { id } => Op::LeaseQuery(LeaseQuery { id }),
            CommandKind::RegisterSession { ttl_ms } => Op::RegisterSession(RegisterSession { ttl_ms }),
            CommandKind::Redis(b) => Op::Redis(b),
            CommandKind::RedisRead(b) => Op::RedisRead(b),
        };
        Command {
            op: Some(op),
            session: session.map(Box::new),
        }
    }

    pub fn from_wire(cmd: Command) -> Result<Self> {
        Ok(match cmd.op {
            Some(Op::Put(p)) if p.lease != 0 => CommandKind::PutLeased {
                key: p.key,
                value: p.value,
                lease: p.lease,
            },
            Some(Op::Put(p)) => CommandKind::Put {
                key: p.key,
                value: p.value,
            },
            Some(Op::Delete(d)) => CommandKind::Delete { key: d.key },
            Some(Op::Get(g)) => CommandKind::Get { key: g.key },
            Some(Op::TryLock(t)) => CommandKind::TryLock {
                name: t.name,
                holder: t.holder,
                ttl_ms: t.ttl_ms,
            },
            Some(Op::Unlock(u)) => CommandKind::Unlock {
                name: u.name,
                holder: u.holder,
            },
            Some(Op::AddServer(a)) => CommandKind::AddServer { server: a.server },
            Some(Op::RemoveServer(r)) => CommandKind::RemoveServer { server: r.server },
            Some(Op::TransferLeader(t)) => CommandKind::TransferLeader { server: t.server },
            Some(Op::Custom(c)) => CommandKind::Custom { data: c.data },
            Some(Op::Txn(t)) => CommandKind::Txn(t),
            Some(Op::Range(r)) => CommandKind::Range(r),
            Some(Op::LeaseGrant(g)) => CommandKind::LeaseGrant { ttl_ms: g.ttl_ms },
            Some(Op::LeaseRevoke(r)) => CommandKind::LeaseRevoke { id: r.id },
            Some(Op::LeaseKeepAlive(k)) => CommandKind::LeaseKeepAlive { ids: k.ids },
            Some(Op::LeaseSweep(_)) => CommandKind::LeaseSweep,
            Some(Op::LeaseQuery(q)) => CommandKind::LeaseQuery { id: q.id },
            Some(Op::RegisterSession(r)) => CommandKind::RegisterSession { ttl_ms: r.ttl_ms },
            Some(Op::Redis(b)) => CommandKind::Redis(b),
            Some(Op::RedisRead(b)) => CommandKind::RedisRead(b),
            None => return Err(Error::InvalidArgument("command without an operation".into())),
        })
    }
}

fn check_put(key: &[u8], value: &[u8]) -> Result<()> {
    check_name(key, "key")?;
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidArgument(format!(
            "value of {} bytes exceeds {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// A Redis batch: at least one command, each with a name, within the
/// size limits of a put (every argument at most a value's size).
fn check_redis(b: &RedisBatch) -> Result<()> {
    if b.calls.is_empty() || b.calls.len() > crate::limits::MAX_REDIS_CALLS {
        return Err(Error::InvalidArgument(format!(
            "a batch of {} Redis commands (1 to {})",
            b.calls.len(),
            crate::limits::MAX_REDIS_CALLS
        )));
    }
    for call in &b.calls {
        if call.args.first().is_none_or(|n| n.is_empty()) {
            return Err(Error::InvalidArgument("a Redis command without a name".into()));
        }
        if let Some(a) = call.args.iter().find(|a| a.len() > MAX_VALUE_BYTES) {
            return Err(Error::InvalidArgument(format!(
                "a Redis argument of {} bytes exceeds {MAX_VALUE_BYTES}",
                a.len()
            )));
        }
    }
    Ok(())
}

fn check_lease_id(id: u64) -> Result<()> {
    if id == 0 {
        return Err(Error::InvalidArgument("lease id 0 names no lease".into()));
    }
    Ok(())
}

fn check_name(name: &[u8], what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("empty {what}")));
    }
    if name.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{what} of {} bytes exceeds {MAX_KEY_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

/// Encodes a command as a log entry payload.
pub fn encode_command(cmd: CommandKind) -> Bytes {
    encode_command_in(cmd, None)
}

/// Encodes a command sent under client session `session` as a log entry payload.
pub fn encode_command_in(cmd: CommandKind, session: Option<SessionRef>) -> Bytes {
    Bytes::from(cmd.into_wire_in(session).encode_to_vec())
}

/// Decodes a log entry payload.
pub fn decode_command(payload: &[u8]) -> Result<Op> {
    Ok(decode_command_in(payload)?.0)
}

/// Decodes a log entry payload, with the client session it was sent under.
pub fn decode_command_in(payload: &[u8]) -> Result<(Op, Option<SessionRef>)> {
    let cmd = Command::decode(payload)
        .map_err(|e| Error::InvalidArgument(format!("command does not decode: {e}")))?;
    let op = cmd
        .op
        .ok_or_else(|| Error::InvalidArgument("command without an operation".into()))?;
    Ok((op, cmd.session.map(|s| *s)))
}
