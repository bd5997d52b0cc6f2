//! The public handle: open a node, then write, read and query it.

mod async_calls;
mod coordination;
mod leases;
mod redis;
mod watches;

pub use coordination::{prefix_end, Branch, Cmp, KeyValue, KvList, KvMeta, Txn, TxnResponse};
pub use leases::LeaseStatus;
pub use redis::{redis_command_reads, redis_commands, redis_glob, RedisValue};

use crate::error::{Error, Result};
use crate::options::Options;
use crate::runtime::host::Host;
use crate::runtime::node::Node;
use crate::runtime::{self};
use crate::state_machine::{CommandKind, StateMachine};
use bytes::Bytes;
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A member of a floyd cluster, running inside this process: one group on a
/// host, the host its own (`Floyd::open`) or shared ([`Host::open_group`]).
///
/// Thread-safe: every method may be called from many threads at once.
/// Dropping it (or [`Floyd::close`]) stops the group; a node opened on its
/// own also stops and joins every thread it started.
pub struct Floyd {
    node: Arc<Node>,
    /// A node opened on its own owns its private host.
    host: Mutex<Option<Host>>,
    keep_alives: leases::KeepAlives,
}

impl Floyd {
    /// Validates `options`, opens (or creates) the data under `options.path`,
    /// and starts the node's threads. The node joins the cluster at once.
    /// All or nothing: on error, whatever had started is stopped and the
    /// data directory is released.
    pub fn open(options: Options) -> Result<Floyd> {
        Floyd::start(options, None)
    }

    /// Like [`Floyd::open`], but the node replicates `machine` instead of
    /// the built-in key-value store: [`Floyd::propose`] drives it, and the
    /// key-value and lock calls answer `InvalidArgument`. Every member of the
    /// cluster must run the same kind of machine.
    ///
    /// The machine's state is volatile as far as floyd knows: at every open
    /// floyd loads the latest snapshot, if any, with
    /// [`StateMachine::snapshot_load`], then replays the log after it, so
    /// the machine must start empty. On error, or at [`Floyd::close`], the
    /// machine is dropped.
    pub fn open_with_state_machine(options: Options, machine: Box<dyn StateMachine>) -> Result<Floyd> {
        Floyd::start(options, Some(machine))
    }

    fn start(options: Options, machine: Option<Box<dyn StateMachine>>) -> Result<Floyd> {
        let members = options.members.clone();
        let (host_opts, group_opts) = options.split();
        let host = Host::open_private(host_opts, &members)?;
        let node = host.start_group(0, group_opts, machine)?;
        Ok(Floyd::for_group(node, Some(host)))
    }

    /// The handle of a group started on a host (`host`: the private one it owns).
    pub(crate) fn for_group(node: Arc<Node>, host: Option<Host>) -> Floyd {
        Floyd {
            node,
            host: Mutex::new(host),
            keep_alives: leases::KeepAlives::default(),
        }
    }

    /// The group this handle runs, on its host (0 for a node opened on its own).
    pub fn group(&self) -> u64 {
        self.node.group
    }

    /// Has the cluster's user-defined state machine apply `data` once a
    /// majority has it, and returns what its `apply` answered on the leader
    /// (every replica applies the same command at the same index).
    /// Linearizable; a follower forwards it to the leader. `StateMachine`
    /// with the message if `apply` refused it (the node goes on);
    /// `InvalidArgument` on a node that runs the key-value store.
    pub fn propose(&self, data: &[u8]) -> Result<Vec<u8>> {
        if !self.node.state_machine.is_user() {
            return Err(Error::InvalidArgument(
                "propose needs a user-defined state machine (open_with_state_machine); \
                 this node runs the built-in key-value store"
                    .into(),
            ));
        }
        self.execute(CommandKind::Custom {
            data: Bytes::copy_from_slice(data),
        })
        .map(|v| v.to_vec())
    }

    /// Refuses the key-value and lock calls on a node with a user-defined
    /// state machine, before anything reaches the log.
    fn key_value_only(&self, call: &str) -> Result<()> {
        if self.node.state_machine.is_user() {
            return Err(Error::InvalidArgument(format!(
                "{call}: this node runs a user-defined state machine, which has no keys or locks; use propose"
            )));
        }
        Ok(())
    }

    /// Stores `value` under `key` once a majority has it. Linearizable.
    pub fn write(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.key_value_only("write")?;
        let cmd = CommandKind::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        self.execute(cmd).map(|_| ())
    }

    /// Removes `key` (deleting a missing key succeeds).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.key_value_only("delete")?;
        self.execute(CommandKind::Delete {
            key: Bytes::copy_from_slice(key),
        })
        .map(|_| ())
    }

    /// The value of `key`, linearizable, without a log entry (ReadIndex): the
    /// leader confirms its leadership with one heartbeat round; on a follower
    /// the leader names the index and this node answers from its own state
    /// machine once it has applied that far.
    pub fn read(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.key_value_only("read")?;
        self.execute(CommandKind::Get {
            key: Bytes::copy_from_slice(key),
        })
        .map(|v| v.to_vec())
    }

    /// The value of `key` in this node's state machine: fast, possibly stale.
    pub fn dirty_read(&self, key: &[u8]) -> Result<Vec<u8>> {
        self.key_value_only("dirty_read")?;
        CommandKind::Get {
            key: Bytes::copy_from_slice(key),
        }
        .validate()?;
        self.node.check_usable()?;
        self.node.state_machine.get(key)?.ok_or(Error::NotFound)
    }

    /// Takes lock `name` for `holder` for `ttl_ms` milliseconds (1 ms to a day),
    /// or renews it if `holder` already holds it. Returns the fencing token:
    /// the log index of the entry that acquired the lock, larger than every
    /// token handed out before it; a renewal keeps the token. `Locked` if
    /// another holder has it and its lease has not run out.
    ///
    /// Expiry is judged by the times leaders stamp on log entries, never by a
    /// replica's clock, so every replica agrees. A holder must still assume
    /// the lock may be gone `ttl_ms` after it *sent* this call (clocks drift,
    /// a leader change is not instant) and pass the token to whatever the
    /// lock protects, which must refuse requests carrying a token lower than
    /// the highest it has seen: that, not the lease, keeps a paused holder safe.
    pub fn try_lock(&self, name: &[u8], holder: &[u8], ttl_ms: u64) -> Result<u64> {
        self.key_value_only("try_lock")?;
        let value = self.execute(CommandKind::TryLock {
            name: Bytes::copy_from_slice(name),
            holder: Bytes::copy_from_slice(holder),
            ttl_ms,
        })?;
        let token: [u8; 8] = value
            .as_ref()
            .try_into()
            .map_err(|_| Error::Internal(format!("lock token of {} bytes", value.len())))?;
        Ok(u64::from_be_bytes(token))
    }

    /// Releases lock `name` held by `holder`. `NotHolder` if another holds it,
    /// its lease ran out, or it is not held.
    pub fn unlock(&self, name: &[u8], holder: &[u8]) -> Result<()> {
        self.key_value_only("unlock")?;
        self.execute(CommandKind::Unlock {
            name: Bytes::copy_from_slice(name),
            holder: Bytes::copy_from_slice(holder),
        })
        .map(|_| ())
    }

    /// Adds `server` (`"ip:port"`) to the cluster: the leader first catches it
    /// up as a learner, then makes it a voter. Returns once it votes (the
    /// change is committed). `Busy` while another change is in progress;
    /// succeeds at once if it is a voter already.
    pub fn add_server(&self, server: &str) -> Result<()> {
        let server = crate::options::canonical_member(server)?;
        self.execute(CommandKind::AddServer { server }).map(|_| ())
    }

    /// Removes `server` from the cluster; returns once the change is
    /// committed. Removing the leader makes it step down then. `Busy` while
    /// another change is in progress; `InvalidArgument` for a server that is
    /// not a member, or the last voter.
    pub fn remove_server(&self, server: &str) -> Result<()> {
        let server = crate::options::canonical_member(server)?;
        self.execute(CommandKind::RemoveServer { server }).map(|_| ())
    }

    /// Hands leadership to voter `server` (`"ip:port"`, dissertation §3.10):
    /// the leader brings it up to date and tells it to campaign at once;
    /// returns once `server` leads (at once if it does already). A follower
    /// forwards the request to the leader. Writes made meanwhile wait for the
    /// handover (an election timeout at most) and are then applied by this
    /// leader or retried on the new one.
    ///
    /// `Timeout` if `server` did not take over within about two election
    /// timeouts (it is down or cut off, say): the old leader leads on and
    /// takes writes again. `InvalidArgument` for a server that is not a
    /// voter; `Busy` while a membership change or another transfer runs.
    pub fn transfer_leader(&self, server: &str) -> Result<()> {
        let server = crate::options::canonical_member(server)?;
        // Room for the leader's own wait, finding it, and its answer.
        let election = Duration::from_micros(self.node.opts.check_leader_us);
        let timeout = runtime::transfer::transfer_timeout(&self.node.opts) + election;
        self.execute_within(CommandKind::TransferLeader { server }, timeout)
            .map(|_| ())
    }

    /// The leader's `"ip:port"`, if one is known (none once this handle's
    /// group is closed, or its host).
    pub fn get_leader(&self) -> Option<String> {
        self.node.check_usable().ok()?;
        self.node.leader()
    }

    pub fn has_leader(&self) -> bool {
        self.get_leader().is_some()
    }

    /// Whether this node leads its group (never once it is closed).
    pub fn is_leader(&self) -> bool {
        self.node.check_usable().is_ok() && self.node.is_leader()
    }

    /// `Ok` while this node takes calls; else why not (`Stopped`, `Failed`).
    pub fn check_usable(&self) -> Result<()> {
        self.node.check_usable()
    }

    /// This node's view: role, term, leader, vote, log and commit positions.
    pub fn server_status(&self) -> ServerStatus {
        let (s, m, config_index, pending_change, progress) = self.node.inspect(|core| {
            let peers: Vec<(String, u64, u64)> = core
                .membership()
                .members()
                .filter_map(|p| {
                    core.progress(p)
                        .map(|pr| (p.clone(), pr.match_index, pr.next_index))
                })
                .collect();
            (
                core.status(),
                core.membership().clone(),
                core.config_index(),
                core.pending_conf_change(),
                peers,
            )
        });
        let peers = progress
            .into_iter()
            .map(|(id, match_index, next_index)| PeerStatus {
                last_contact_ms: self.node.last_contact_ms(&id),
                id,
                match_index,
                next_index,
            })
            .collect();
        ServerStatus {
            voters: m.voters.into_iter().collect(),
            learners: m.learners.into_iter().collect(),
            config_index,
            pending_change,
            peers,
            locks_held: self.node.state_machine.locks_held().unwrap_or(0),
            client_sessions: self.node.state_machine.client_sessions(),
            quiesced: self.node.is_quiet(),
            node: s.id,
            role: s.role.as_str().to_string(),
            term: s.term,
            leader: s.leader,
            voted_for: s.vote,
            last_log_term: s.last_log_term,
            last_log_index: s.last_log_index,
            commit_index: s.commit,
            last_applied: s.applied,
            first_log_index: s.first_log_index,
            snapshot_index: self.node.snapshots.store.latest_index(),
        }
    }

    /// Changes the lowest level written to `<path>/LOG` and the log callback.
    pub fn set_log_level(&self, level: crate::logging::LogLevel) {
        self.node.log.set_level(level);
    }

    /// Every member of the cluster in this node's latest configuration
    /// (voters and learners), as `"ip:port"`, sorted.
    pub fn get_all_servers(&self) -> Vec<String> {
        self.node.membership().members().cloned().collect()
    }

    /// Test hooks (fault injection): a slow or failing disk, a busy state
    /// machine. Not part of the stable API.
    #[doc(hidden)]
    pub fn faults(&self) -> &crate::Faults {
        self.node.faults()
    }

    /// Test hook: drops this node's link to member `peer` and makes none for
    /// `duration` (a one-way partition). False if `peer` is not a member.
    #[doc(hidden)]
    pub fn cut_link_for(&self, peer: &str, duration: std::time::Duration) -> bool {
        self.node.peer(peer).map(|l| l.cut_for(duration)).is_some()
    }

    /// The metrics of this node's host and of its group, in the
    /// OpenMetrics text format Prometheus scrapes (README.md, "Metrics";
    /// `Host::metrics` has every group's).
    pub fn metrics(&self) -> String {
        self.node.metrics_text()
    }

    /// The status of the host this handle's node runs on, as JSON (its
    /// threads, groups, log writes and syncs: see `Host::status_json`), if
    /// the handle owns it (a node opened with [`Floyd::open`]); `None` for
    /// a group of a shared host (ask the [`Host`]).
    pub fn host_status_json(&self) -> Option<String> {
        self.host.lock().as_ref().map(Host::status_json)
    }

    /// Stops and joins every thread of the node and closes its databases, so
    /// the same path can be opened again at once, even while this handle lives.
    /// Idempotent; later calls fail with `Stopped`.
    pub fn close(&self) {
        match self.host.lock().as_ref() {
            Some(host) => host.close(),
            None => runtime::close_group(&self.node),
        }
    }

    /// Runs a command on the leader (forwarding it if this node is a follower),
    /// retrying while it is certain the command was not applied.
    fn execute(&self, cmd: CommandKind) -> Result<Bytes> {
        self.execute_within(cmd, self.node.opts.request_timeout)
    }

    /// [`Floyd::execute`] with a deadline of `timeout` from now.
    fn execute_within(&self, cmd: CommandKind, timeout: Duration) -> Result<Bytes> {
        // The command is answered by its deadline, give or take a turn of the
        // primary thread; past that, the outcome is unknown here.
        let started = Instant::now();
        let wait_until = started + timeout + ANSWER_GRACE;
        let kind = crate::metrics::CallKind::of(&cmd);
        self.node
            .metrics
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = match self.node.execute_blocking(cmd, timeout, wait_until) {
            Some(r) => r,
            None => Err(self.timeout()),
        };
        let metrics = &self.node.host_metrics();
        match kind {
            crate::metrics::CallKind::Read => metrics.read_call.observe(started.elapsed()),
            _ => metrics.write_call.observe(started.elapsed()),
        }
        if matches!(result, Err(Error::Timeout(_))) {
            self.node.metrics.timeouts[kind as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    fn timeout(&self) -> Error {
        if let Err(e) = self.node.check_usable() {
            return e;
        }
        Error::Timeout(format!(
            "no result within {:?}; the command may or may not have been applied",
            self.node.opts.request_timeout
        ))
    }
}

/// How long past its deadline a blocking call waits for its command's own
/// answer (a parked command is answered on the primary thread's next turn).
const ANSWER_GRACE: Duration = Duration::from_millis(50);

impl Drop for Floyd {
    fn drop(&mut self) {
        self.close();
    }
}

/// One node's view of the cluster, as printed by `GetServerStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    pub node: String,
    pub role: String,
    pub term: u64,
    pub leader: Option<String>,
    pub voted_for: Option<String>,
    pub last_log_term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub last_applied: u64,
    /// The oldest entry still in the log (older ones are in a snapshot).
    pub first_log_index: u64,
    /// The index of the latest snapshot on disk (0: none).
    pub snapshot_index: u64,
    /// The configuration in force here: voters and learners (being caught up).
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// Log index of that configuration's entry (0: the bootstrap member list).
    pub config_index: u64,
    /// A membership change not finished yet, if any.
    pub pending_change: Option<String>,
    /// On the leader: each other member's replication progress.
    pub peers: Vec<PeerStatus>,
    /// Locks held (not expired) in this node's state machine.
    pub locks_held: u64,
    /// Client sessions the group keeps (one per handle that wrote to it,
    /// until it expires): a count that keeps growing means handles opened
    /// and dropped in a loop.
    pub client_sessions: u64,
    /// The group is quiet here: idle, not ticking or heartbeating (issue 23).
    pub quiesced: bool,
}

/// What the leader knows of one member's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: String,
    pub match_index: u64,
    pub next_index: u64,
    /// Milliseconds since this node last heard from it; `None` if never.
    pub last_contact_ms: Option<u64>,
}

/// The original Floyd's status header.
pub const STATUS_HEADER: &str = "      Node           |    Role    | Term |      Leader      |      VoteFor      | LastLogTerm | LastLogIdx | CommitIndex | LastApplied |";

impl ServerStatus {
    /// The status as one JSON object: the row's fields, then the
    /// configuration, the pending change, the leader's view of each peer and
    /// the number of locks held.
    pub fn to_json(&self) -> String {
        let opt = |o: &Option<String>| o.as_deref().map_or("null".to_string(), json_string);
        let list = |l: &[String]| {
            format!(
                "[{}]",
                l.iter().map(|s| json_string(s)).collect::<Vec<_>>().join(",")
            )
        };
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|p| {
                format!(
                    "{{\"id\":{},\"match_index\":{},\"next_index\":{},\"last_contact_ms\":{}}}",
                    json_string(&p.id),
                    p.match_index,
                    p.next_index,
                    p.last_contact_ms.map_or("null".to_string(), |ms| ms.to_string())
                )
            })
            .collect();
        format!(
            "{{\"node\":{},\"role\":{},\"term\":{},\"leader\":{},\"voted_for\":{},\"last_log_term\":{},\"last_log_index\":{},\"commit_index\":{},\"last_applied\":{},\"voters\":{},\"learners\":{},\"config_index\":{},\"pending_change\":{},\"peers\":[{}],\"locks_held\":{},\"first_log_index\":{},\"snapshot_index\":{},\"client_sessions\":{},\"quiesced\":{}}}",
            json_string(&self.node),
            json_string(&self.role),
            self.term,
            opt(&self.leader),
            opt(&self.voted_for),
            self.last_log_term,
            self.last_log_index,
            self.commit_index,
            self.last_applied,
            list(&self.voters),
            list(&self.learners),
            self.config_index,
            opt(&self.pending_change),
            peers.join(","),
            self.locks_held,
            self.first_log_index,
            self.snapshot_index,
            self.client_sessions,
            self.quiesced
        )
    }

    /// One row under [`STATUS_HEADER`].
    pub fn row(&self) -> String {
        format!(
            "{:>20} | {:>10} | {:>4} | {:>16} | {:>17} | {:>11} | {:>10} | {:>11} | {:>11} |",
            self.node,
            self.role,
            self.term,
            self.leader.as_deref().unwrap_or("-"),
            self.voted_for.as_deref().unwrap_or("-"),
            self.last_log_term,
            self.last_log_index,
            self.commit_index,
            self.last_applied
        )
    }
}

impl fmt::Display for ServerStatus {
    /// Floyd's header line and this node's row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{STATUS_HEADER}")?;
        write!(f, "{}", self.row())
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_json_escapes_strings() {
        let s = ServerStatus {
            node: "a\"b\\c\n".into(),
            role: "leader".into(),
            term: 3,
            leader: None,
            voted_for: Some("x".into()),
            last_log_term: 3,
            last_log_index: 9,
            commit_index: 8,
            last_applied: 7,
            voters: vec!["v:1".into(), "v:2".into()],
            learners: vec![],
            config_index: 4,
            pending_change: None,
            peers: vec![PeerStatus {
                id: "v:2".into(),
                match_index: 9,
                next_index: 10,
                last_contact_ms: Some(12),
            }],
            locks_held: 1,
            client_sessions: 2,
            quiesced: false,
            first_log_index: 2,
            snapshot_index: 1,
        };
        assert_eq!(
            s.to_json(),
            r#"{"node":"a\"b\\c\u000a","role":"leader","term":3,"leader":null,"voted_for":"x","last_log_term":3,"last_log_index":9,"commit_index":8,"last_applied":7,"voters":["v:1","v:2"],"learners":[],"config_index":4,"pending_change":null,"peers":[{"id":"v:2","match_index":9,"next_index":10,"last_contact_ms":12}],"locks_held":1,"first_log_index":2,"snapshot_index":1,"client_sessions":2,"quiesced":false}"#
        );
    }
}
