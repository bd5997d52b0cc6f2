//! The metrics of a host and its groups in the OpenMetrics text format
//! (which Prometheus scrapes), encoded by `prometheus-client`: the
//! counters and histograms of `crate::metrics`, the host's own counters,
//! and gauges read from each group's core when asked. Every series of a
//! group has the label `group`.

use super::host::HostShared;
use super::node::Node;
use crate::metrics::Histogram;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabel {
    thread: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupKindLabel {
    group: String,
    kind: String,
}

/// A counter of seconds.
type SecondsCounter = Counter<f64, AtomicU64>;

/// A histogram as it stood when scraped (the registry owns what it encodes).
#[derive(Debug)]
struct Snapshot(Histogram);

impl Snapshot {
    fn of(h: &Histogram) -> Snapshot {
        Snapshot(h.copy())
    }
}

impl TypedMetric for Snapshot {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Snapshot {
    fn encode(&self, encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn counter(v: &AtomicU64) -> Counter {
    counter_of(v.load(Relaxed))
}

fn counter_of(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

/// The host's own series.
fn host_series(r: &mut Registry, host: &HostShared, groups_open: usize) {
    let m = &host.metrics;
    r.register(
        "floyd_log_writes",
        "Log writes (each one RocksDB WriteBatch of every group's entries)",
        counter(&host.log_writes),
    );
    r.register(
        "floyd_log_syncs",
        "Log writes synced (one fsync covers every group in the write)",
        counter(&host.log_syncs),
    );
    r.register(
        "floyd_log_entries_written",
        "Entries written to the log",
        counter(&m.log_entries),
    );
    r.register(
        "floyd_fsync_duration_seconds",
        "Synced log writes, from the write to the end of its fsync",
        Snapshot::of(&m.fsync),
    );
    r.register(
        "floyd_write_call_duration_seconds",
        "Blocking calls that write, from submission to answer",
        Snapshot::of(&m.write_call),
    );
    r.register(
        "floyd_read_call_duration_seconds",
        "Blocking reads, from submission to answer",
        Snapshot::of(&m.read_call),
    );
    r.register(
        "floyd_commit_duration_seconds",
        "An entry on its leader, from its proposal to its commit",
        Snapshot::of(&m.commit),
    );
    r.register(
        "floyd_apply_batch_duration_seconds",
        "Applying one batch of committed entries to a state machine",
        Snapshot::of(&m.apply_batch),
    );
    r.register(
        "floyd_connections_refused",
        "Connections refused before or at their handshake (TLS, not a member, another cluster)",
        counter_of(m.refused.connections()),
    );
    let sent = Family::<PeerLabel, Counter>::default();
    for (peer, link) in host.links.all() {
        sent.get_or_create(&PeerLabel { peer }).inc_by(link.bytes_sent());
    }
    r.register(
        "floyd_peer_bytes_sent",
        "Bytes of frames written to each peer host, over every connection",
        sent,
    );
    let received = Family::<PeerLabel, Counter>::default();
    for (peer, bytes) in m.received_by_peer() {
        received.get_or_create(&PeerLabel { peer }).inc_by(bytes);
    }
    r.register(
        "floyd_peer_bytes_received",
        "Bytes read from each peer host's connections (after their handshake)",
        received,
    );
    let refused = Family::<ReasonLabel, Counter>::default();
    for why in crate::metrics::Refusal::ALL {
        let reason = why.label().to_string();
        refused
            .get_or_create(&ReasonLabel { reason })
            .inc_by(m.refused.get(why));
    }
    r.register(
        "floyd_refused_frames",
        "Connections and frames refused, by reason (a connection's handshake, a frame, a group's message)",
        refused,
    );
    let cpu = Family::<ThreadLabel, SecondsCounter>::default();
    for (thread, secs) in crate::metrics::thread_cpu::by_role(&host.opts.local_port.to_string()) {
        cpu.get_or_create(&ThreadLabel { thread }).inc_by(secs);
    }
    r.register(
        "floyd_thread_cpu_seconds",
        "CPU time of the host's threads, by what they do (primary, log, apply, peer, conn, snapshot, ...)",
        cpu,
    );
    r.register(
        "floyd_log_write_entries",
        "Entries in each log write (every group's)",
        Snapshot::of(&m.log_write_entries),
    );
    r.register(
        "floyd_log_write_bytes",
        "Bytes in each log write (every group's entries and metadata)",
        Snapshot::of(&m.log_write_bytes),
    );
    r.register(
        "floyd_snapshot_take_duration_seconds",
        "Taking a snapshot of a group's state machine",
        Snapshot::of(&m.snapshot_take),
    );
    r.register(
        "floyd_snapshot_send_duration_seconds",
        "Streaming a snapshot to a follower, from its first chunk to its last",
        Snapshot::of(&m.snapshot_send),
    );
    r.register(
        "floyd_snapshot_install_duration_seconds",
        "Loading a snapshot received from the leader into the state machine",
        Snapshot::of(&m.snapshot_install),
    );
    r.register(
        "floyd_unknown_group_frames",
        "Frames dropped for naming a group this host does not have",
        counter_of(m.refused.get(crate::metrics::Refusal::UnknownGroup)),
    );
    r.register(
        "floyd_refused_messages",
        "Messages a group refused (from a non-member, in another's name, contradicting its log)",
        counter_of(m.refused.messages()),
    );
    r.register(
        "floyd_heartbeats_sent",
        "Heartbeats sent, by every group",
        counter(&host.heartbeats_sent),
    );
    r.register(
        "floyd_groups_open",
        "Groups open on this host",
        gauge(groups_open as u64),
    );
    r.register(
        "floyd_groups_quiet",
        "Groups quiet (not ticking or heartbeating) on this host",
        gauge(host.quiet_groups.load(Relaxed)),
    );
    r.register(
        "floyd_disk_full",
        "1 while the host refuses writes for want of disk space",
        gauge(u64::from(host.is_disk_full())),
    );
    r.register(
        "floyd_host_failed",
        "1 once the host failed (an I/O error on its log): every group answers Failed",
        gauge(u64::from(host.failure().is_some())),
    );
}

/// Registers a family of per-group counters or gauges: one series per
/// (group, value) of `values`.
fn per_group<M>(r: &mut Registry, name: &str, help: &str, values: impl IntoIterator<Item = (u64, u64)>)
where
    M: IncOrSet + Default + EncodeMetric + TypedMetric + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<GroupLabel, M>::default();
    for (group, v) in values {
        family
            .get_or_create(&GroupLabel {
                group: group.to_string(),
            })
            .inc_or_set(v);
    }
    r.register(name, help, family);
}

/// Sets a scraped value into a counter or a gauge.
trait IncOrSet {
    fn inc_or_set(&self, v: u64);
}

impl IncOrSet for Counter {
    fn inc_or_set(&self, v: u64) {
        self.inc_by(v);
    }
}

impl IncOrSet for Gauge {
    fn inc_or_set(&self, v: u64) {
        self.set(i64::try_from(v).unwrap_or(i64::MAX));
    }
}

fn role_number(role: crate::core::Role) -> u64 {
    match role {
        crate::core::Role::Follower => 0,
        crate::core::Role::PreCandidate => 1,
        crate::core::Role::Candidate => 2,
        crate::core::Role::Leader => 3,
    }
}

/// Each group's series.
fn group_series(r: &mut Registry, nodes: &[Arc<Node>]) {
    let status: Vec<(&Arc<Node>, crate::core::CoreStatus, usize, u64)> = nodes
        .iter()
        .map(|n| {
            let (s, voters, held) =
                n.inspect(|c| (c.status(), c.membership().voters.len(), c.log().held().1));
            (n, s, voters, held)
        })
        .collect();
    let st = || status.iter();
    per_group::<Gauge>(
        r,
        "floyd_term",
        "The group's current term here",
        st().map(|x| (x.0.group, x.1.term)),
    );
    per_group::<Gauge>(
        r,
        "floyd_role",
        "0 follower, 1 pre-candidate, 2 candidate, 3 leader",
        st().map(|x| (x.0.group, role_number(x.1.role))),
    );
    per_group::<Gauge>(
        r,
        "floyd_is_leader",
        "1 on the group's leader",
        st().map(|x| (x.0.group, u64::from(x.1.role == crate::core::Role::Leader))),
    );
    per_group::<Gauge>(
        r,
        "floyd_has_leader",
        "1 while this node knows a leader of the group",
        st().map(|x| (x.0.group, u64::from(x.1.leader.is_some()))),
    );
    per_group::<Gauge>(
        r,
        "floyd_commit_index",
        "The group's commit index here",
        st().map(|x| (x.0.group, x.1.commit)),
    );
    per_group::<Gauge>(
        r,
        "floyd_applied_index",
        "The index applied to the state machine here",
        st().map(|x| (x.0.group, x.1.applied)),
    );
    per_group::<Gauge>(
        r,
        "floyd_apply_lag_entries",
        "Committed entries not applied yet here",
        st().map(|x| (x.0.group, x.1.commit.saturating_sub(x.1.applied))),
    );
    per_group::<Gauge>(
        r,
        "floyd_last_log_index",
        "The last index in the group's log here",
        st().map(|x| (x.0.group, x.1.last_log_index)),
    );
    per_group::<Gauge>(
        r,
        "floyd_log_entries_held",
        "Entries in the log here (older ones are in a snapshot)",
        st().map(|x| {
            (
                x.0.group,
                (x.1.last_log_index + 1).saturating_sub(x.1.first_log_index),
            )
        }),
    );
    per_group::<Gauge>(
        r,
        "floyd_log_bytes_held",
        "Bytes of the entries in the log here",
        st().map(|x| (x.0.group, x.3)),
    );
    per_group::<Gauge>(
        r,
        "floyd_voters",
        "Voters in the configuration in force here",
        st().map(|x| (x.0.group, x.2 as u64)),
    );
    per_group::<Gauge>(
        r,
        "floyd_quiet",
        "1 while the group is quiet here",
        st().map(|x| (x.0.group, u64::from(x.0.is_quiet()))),
    );
    per_group::<Gauge>(
        r,
        "floyd_snapshot_index",
        "The index of the latest snapshot on disk here",
        st().map(|x| (x.0.group, x.0.snapshots.store.latest_index())),
    );
    type Field = fn(&crate::metrics::GroupMetrics) -> &AtomicU64;
    let counters: [(&str, &str, Field); 17] = [
        (
            "floyd_submitted",
            "Blocking calls made here (writes, reads, locks, membership)",
            |m| &m.submitted,
        ),
        (
            "floyd_forwarded",
            "Commands this node forwarded to the group's leader",
            |m| &m.forwarded,
        ),
        (
            "floyd_proposals",
            "Entries this node proposed as the group's leader",
            |m| &m.proposals,
        ),
        (
            "floyd_snapshot_bytes_sent",
            "Bytes of snapshot chunks this node streamed to followers",
            |m| &m.snapshot_bytes_sent,
        ),
        (
            "floyd_snapshot_bytes_received",
            "Bytes of snapshot chunks this node received from its leader",
            |m| &m.snapshot_bytes_received,
        ),
        (
            "floyd_applied_entries",
            "Entries applied to the state machine",
            |m| &m.applied_entries,
        ),
        (
            "floyd_applied_bytes",
            "Payload bytes of the entries applied",
            |m| &m.applied_bytes,
        ),
        (
            "floyd_leader_changes",
            "Changes of the leader this node knows (to another or to none)",
            |m| &m.leader_changes,
        ),
        ("floyd_pre_votes", "Times this node became a pre-candidate", |m| {
            &m.pre_votes
        }),
        (
            "floyd_elections_started",
            "Times this node became a candidate",
            |m| &m.elections_started,
        ),
        ("floyd_elections_won", "Times this node became the leader", |m| {
            &m.elections_won
        }),
        (
            "floyd_read_index_reads",
            "Linearizable reads queued for a ReadIndex round",
            |m| &m.read_index_reads,
        ),
        ("floyd_lease_reads", "Reads served on the leader's lease", |m| {
            &m.lease_reads
        }),
        ("floyd_snapshots_taken", "Snapshots this node took", |m| {
            &m.snapshots_taken
        }),
        (
            "floyd_snapshots_installed",
            "Snapshots this node installed from its leader",
            |m| &m.snapshots_installed,
        ),
        (
            "floyd_snapshots_sent",
            "Snapshots this node streamed whole to a follower",
            |m| &m.snapshots_sent,
        ),
        (
            "floyd_membership_changes",
            "Configurations committed since this node started",
            |m| &m.membership_changes,
        ),
    ];
    for (name, help, field) in counters {
        per_group::<Counter>(
            r,
            name,
            help,
            nodes.iter().map(|n| (n.group, field(&n.metrics).load(Relaxed))),
        );
    }
    per_group::<Counter>(
        r,
        "floyd_expired_keys",
        "Keys deleted here by their TTL",
        nodes.iter().map(|n| (n.group, n.state_machine.expired_keys())),
    );
    let timeouts = Family::<GroupKindLabel, Counter>::default();
    for n in nodes {
        for kind in crate::metrics::CallKind::ALL {
            let label = GroupKindLabel {
                group: n.group.to_string(),
                kind: kind.label().to_string(),
            };
            timeouts
                .get_or_create(&label)
                .inc_by(n.metrics.timeouts[kind as usize].load(Relaxed));
        }
    }
    r.register(
        "floyd_timeouts",
        "Calls answered Timeout (outcome unknown), by kind of call",
        timeouts,
    );
}

fn encode(r: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, r);
    out
}

/// The host's series and every open group's.
pub fn host_text(host: &HostShared) -> String {
    let nodes = host.nodes();
    let mut r = Registry::default();
    host_series(&mut r, host, nodes.len());
    group_series(&mut r, &nodes);
    encode(&r)
}

/// The host's series and one group's (a handle's view).
pub fn group_text(node: &Arc<Node>) -> String {
    let mut r = Registry::default();
    host_series(&mut r, &node.host, node.host.nodes().len());
    group_series(&mut r, std::slice::from_ref(node));
    encode(&r)
}
