//! Opening and closing one group on its host: its state machine and
//! snapshots, its core restored from the shared log store, its links.

use super::host::HostShared;
use super::node::Node;
use super::{core_config, snapshot, tick_of, wall_clock_ms};
use crate::core::{RaftCore, Restored};
use crate::error::{Error, Result};
use crate::options::{GroupOptions, Options};
use crate::state_machine::{Machine, StateMachine};
use crate::storage::snapshots::SnapshotStore;
use crate::storage::{GroupId, LogStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a closing group waits for the log writer to write what it
/// produced (a disk that stalls longer loses nothing that was acknowledged:
/// those Readies were never acknowledged).
const CLOSE_WAIT: Duration = Duration::from_secs(30);

/// Where a group's snapshots live: group 0 where a node opened on its own
/// always kept them, the others apart.
fn snapshot_dir(host: &HostShared, group: GroupId) -> PathBuf {
    match group {
        0 => host.opts.path.join("snapshots"),
        g => host
            .opts
            .path
            .join("groups")
            .join(g.to_string())
            .join("snapshots"),
    }
}

/// Opens group `group` on `host`: restores its core, registers it with the
/// host's threads and links, and returns it.
pub(super) fn open(
    host: &Arc<HostShared>,
    group: GroupId,
    gopts: GroupOptions,
    user: Option<Box<dyn StateMachine>>,
) -> Result<Arc<Node>> {
    let mut opts = Options::from_parts(host.opts.clone(), gopts);
    opts.validate()?;
    if host.groups.read().contains_key(&group) {
        return Err(Error::InvalidArgument(format!(
            "group {group} is already open on this host"
        )));
    }
    if host.closing.lock().contains(&group) {
        return Err(Error::InvalidArgument(format!(
            "group {group} is still closing on this host"
        )));
    }
    let state_machine = match &host.kv {
        None => Machine::open(&opts.path.join("db"), user)?,
        Some(kv) => Machine::in_store(kv, group, user),
    };
    if let Machine::Kv(kv) = &state_machine {
        kv.set_history_revisions(opts.history_revisions);
        kv.set_watch_dispatch(host.watch_tx.clone());
    }
    let started = restore(host, group, opts, state_machine);
    if let Err(e) = &started {
        tracing::error!(group, error = %e, "cannot open the group");
    }
    let node = started?;
    {
        let mut groups = host.groups.write();
        if groups.contains_key(&group) {
            node.state_machine.close();
            return Err(Error::InvalidArgument(format!(
                "group {group} is already open on this host"
            )));
        }
        groups.insert(group, node.clone());
    }
    let linked = node.with_core(|core| node.reconcile_links(core));
    if let Err(e) = linked {
        close(&node);
        return Err(e);
    }
    node.wake_apply();
    // The primary thread learns the group's first tick.
    node.wake_primary();
    tracing::info!(node = %node.id, group, members = ?node.opts.members, "group started");
    Ok(node)
}

/// The group's core, restored from the log store and its latest snapshot.
fn restore(host: &Arc<HostShared>, group: GroupId, opts: Options, machine: Machine) -> Result<Arc<Node>> {
    let store = &host.log_store;
    let loaded = store.load(group)?;
    let snapshot_store = Arc::new(SnapshotStore::open(&snapshot_dir(host, group))?);
    let (applied, snapshot) = snapshot::restore_at_start(&snapshot_store, &machine)?;
    let log_end = loaded.log_start.0 + loaded.entries.len() as u64;
    let known = log_end.max(snapshot.as_ref().map_or(0, |s| s.last_index));
    if applied > known {
        return Err(Error::Corruption(format!(
            "state machine applied index {applied} is past the end of the log ({log_end}) and of the latest snapshot"
        )));
    }
    let tick = tick_of(&opts, !host.private);
    let bootstrap = bootstrap_members(&opts, store, group, known == 0)?;
    if host.private {
        host.identity.set_bootstrap_id(match bootstrap.is_empty() {
            true => 0,
            false => crate::transport::config_id(&bootstrap),
        });
    }
    let restored = Restored {
        hard_state: loaded.hard_state,
        log_start: loaded.log_start,
        entries: loaded.entries,
        applied,
        config: loaded.config,
        snapshot,
    };
    let cfg = core_config(&opts, tick, bootstrap, !host.private);
    if opts.lease_reads && cfg.lease_us == 0 {
        return Err(Error::InvalidArgument(format!(
            "lease reads need an election timeout of at least 3 ticks (check_leader_us {} with a tick of {} µs)",
            opts.check_leader_us,
            tick.as_micros()
        )));
    }
    let mut core = RaftCore::new(cfg, restored, rand::random());
    core.set_clock(wall_clock_ms());
    core.set_monotonic(super::monotonic_us());
    let membership = core.membership().clone();
    if core.config_index() > 0 && !opts.join && membership.voters.iter().ne(opts.members.iter()) {
        tracing::warn!(
            group,
            options = ?opts.members,
            log = ?membership.voters,
            "the member list in the options differs from the configuration in the log; the log's configuration is kept"
        );
    }
    let snapshots = snapshot::Snapshots::new(snapshot_store);
    Ok(Arc::new_cyclic(|me| {
        Node::new(
            group,
            opts,
            host.clone(),
            core,
            machine,
            snapshots,
            tick,
            me.clone(),
        )
    }))
}

/// The bootstrap member list: the one stored at the group's first start,
/// else the options' (stored now). A joining group that has no log has none.
fn bootstrap_members(
    opts: &Options,
    store: &LogStore,
    group: GroupId,
    log_empty: bool,
) -> Result<Vec<String>> {
    if let Some(stored) = store.bootstrap_members(group)? {
        if !opts.join && stored != opts.members {
            tracing::warn!(group, options = ?opts.members, stored = ?stored,
                "the member list in the options differs from the one this node bootstrapped with; keeping the stored one");
        }
        return Ok(stored);
    }
    if opts.join {
        if log_empty {
            tracing::info!(node = %opts.local_id(), group, "joining: waiting for a leader to add this node");
        }
        return Ok(Vec::new());
    }
    store.set_bootstrap_members(group, &opts.members)?;
    Ok(opts.members.clone())
}

/// Stops a group on its host: the host's threads leave it, what it wrote is
/// written, everyone waiting on it is answered `Stopped`, its state machine
/// closes. Its data stays. Idempotent.
pub(super) fn close(node: &Arc<Node>) {
    let host = &node.host;
    {
        let mut groups = host.groups.write();
        if groups.remove(&node.group).is_none() {
            return;
        }
        host.closing.lock().insert(node.group);
    }
    // A quiet leader's followers would wait for it forever (its host stays
    // alive): woken, they hear its heartbeats stop and elect another. (A
    // quiet follower leaves quietly: its group has a leader.)
    node.with_core(|core| {
        if core.role() == crate::core::Role::Leader {
            core.unquiesce();
        }
    });
    node.begin_stop();
    // Whatever thread was serving it finishes first.
    drop(node.applying.lock());
    drop(node.snapshots.taking.lock());
    if !node.wait_log_idle(Instant::now() + CLOSE_WAIT) {
        tracing::warn!(
            group = node.group,
            "closing while the log writer still holds this group's writes"
        );
    }
    host.links.forget(&host.identity, node.group, host.private);
    let stopped = Error::Stopped("the node was closed".into());
    node.waiters.close(&stopped, &stopped);
    node.state_machine.close();
    node.forget_quiet();
    host.closing.lock().remove(&node.group);
    tracing::info!(node = %node.id, group = node.group, "group closed");
}

/// Deletes a closed group's data on its host.
pub(super) fn drop_data(host: &HostShared, group: GroupId) -> Result<()> {
    host.log_store.drop_group(group)?;
    if let Some(kv) = &host.kv {
        let machine = crate::state_machine::KvStateMachine::in_store(kv.clone(), group);
        machine.delete_all()?;
    }
    let snapshots = snapshot_dir(host, group);
    // A group's own directory (`groups/<id>/`); group 0's snapshots are beside the stores.
    let dir = match group {
        0 => snapshots,
        _ => snapshots.parent().map_or(snapshots.clone(), Path::to_path_buf),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// The host's status as JSON: its address, threads, open groups and, per
/// group, role, term, leader, commit and applied index.
pub(super) fn host_status_json(host: &HostShared, threads: &[String]) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let groups: Vec<String> = host
        .nodes()
        .iter()
        .map(|n| {
            let s = n.inspect(|c| c.status());
            format!(
                "{{\"group\":{},\"role\":\"{}\",\"term\":{},\"leader\":{},\"commit\":{},\"applied\":{},\"quiesced\":{}}}",
                n.group,
                s.role.as_str(),
                s.term,
                s.leader.map_or("null".to_string(), |l| format!("\"{l}\"")),
                s.commit,
                s.applied,
                n.is_quiet()
            )
        })
        .collect();
    let threads: Vec<String> = threads.iter().map(|t| format!("\"{t}\"")).collect();
    let peers: Vec<String> = host
        .peer_hosts()
        .iter()
        .map(|p| {
            let ms = p
                .connected_for
                .map_or("null".to_string(), |d| d.as_millis().to_string());
            format!("{{\"host\":\"{}\",\"connected_ms\":{ms}}}", p.id)
        })
        .collect();
    format!(
        "{{\"host\":\"{}\",\"threads\":[{}],\"groups\":[{}],\"peer_hosts\":[{}],\"unknown_group_frames\":{},\"refused_messages\":{},\"log_writes\":{},\"log_syncs\":{},\"disk_full\":{},\"failed\":{},\"quiesced_groups\":{},\"wakeups\":{},\"wakeups_per_sec\":{},\"heartbeats_sent\":{},\"heartbeats_per_sec\":{},\"coalesced_beats\":{},\"coalesced_frames\":{}}}",
        host.id,
        threads.join(","),
        groups.join(","),
        peers.join(","),
        host.metrics.refused.get(crate::metrics::Refusal::UnknownGroup),
        host.metrics.refused.messages(),
        host.log_writes.load(Relaxed),
        host.log_syncs.load(Relaxed),
        host.is_disk_full(),
        host.failure().is_some(),
        host.quiet_groups.load(Relaxed),
        host.wakeups.load(Relaxed),
        host.rates.wakeups_per_sec.load(Relaxed),
        host.heartbeats_sent.load(Relaxed),
        host.rates.heartbeats_per_sec.load(Relaxed),
        host.coalesced_beats.load(Relaxed),
        host.coalesced_frames.load(Relaxed)
    )
}
