//! Metrics (issue 25): `Host::metrics` and `Floyd::metrics` are valid
//! OpenMetrics text, and their counters move as they should after writes,
//! a leader change, a snapshot and a forged frame.

mod common;

use common::hosts::{connect_as, send, Hosts};
use common::metrics_text::{parse, sample};
use common::wait_until;

/// Snapshots every 50 entries, keeping 10 of the log behind them.
fn snapshotting(h: &Hosts) -> floyd::GroupOptions {
    let mut o = h.group_options();
    o.snapshot_log_entries = 50;
    o.snapshot_keep_entries = 10;
    o
}

#[test]
fn counters_move_with_writes_leader_changes_snapshots_and_forged_frames() {
    let mut h = Hosts::start(3);
    for i in 0..3 {
        h.open_group_with(i, 7, snapshotting(&h));
    }
    let leader = h.wait_for_leader(7);
    let before = h.host(leader).metrics();
    parse(&before);
    for k in 0..120u32 {
        h.write(leader, 7, format!("k{k}").as_bytes(), b"v");
    }
    let text = h.host(leader).metrics();
    let g = r#"{group="7"}"#;
    assert!(sample(&text, &format!("floyd_applied_entries_total{g}")) >= 120.0);
    assert!(sample(&text, &format!("floyd_submitted_total{g}")) >= 120.0);
    assert_eq!(sample(&text, &format!("floyd_is_leader{g}")), 1.0);
    assert_eq!(sample(&text, &format!("floyd_role{g}")), 3.0);
    assert!(sample(&text, &format!("floyd_elections_won_total{g}")) >= 1.0);
    assert!(sample(&text, "floyd_log_syncs_total") >= 120.0);
    assert!(sample(&text, "floyd_fsync_duration_seconds_count") >= 120.0);
    assert!(sample(&text, "floyd_write_call_duration_seconds_count") >= 120.0);
    assert!(sample(&text, "floyd_commit_duration_seconds_count") >= 120.0);
    assert!(sample(&text, "floyd_log_entries_written_total") >= 120.0);
    assert_eq!(sample(&text, "floyd_groups_open"), 1.0);
    assert!(sample(&text, &format!("floyd_proposals_total{g}")) >= 120.0);
    assert_eq!(
        sample(&text, r#"floyd_timeouts_total{group="7",kind="write"}"#),
        0.0
    );
    // Every log write's size: entries and bytes, as many as the writes.
    let writes = sample(&text, "floyd_log_writes_total");
    assert!(sample(&text, "floyd_log_write_entries_count") >= writes);
    assert!(sample(&text, "floyd_log_write_entries_sum") >= 120.0);
    assert!(sample(&text, "floyd_log_write_bytes_sum") >= 120.0 * 10.0);
    // The host's threads' CPU, by what they do.
    for thread in ["primary", "log", "apply", "peer", "conn"] {
        let series = format!(r#"floyd_thread_cpu_seconds_total{{thread="{thread}"}}"#);
        assert!(sample(&text, &series) > 0.0, "{series}");
    }
    for i in (0..3).filter(|&i| i != leader) {
        let peer = format!(r#"floyd_peer_bytes_sent_total{{peer="{}"}}"#, h.id(i));
        assert!(sample(&text, &peer) > 1_000.0, "{peer}: the entries went to it");
        let peer = format!(r#"floyd_peer_bytes_received_total{{peer="{}"}}"#, h.id(i));
        assert!(sample(&text, &peer) > 100.0, "{peer}: its answers came back");
    }
    wait_until("a snapshot taken (every 50 entries)", || {
        sample(
            &h.host(leader).metrics(),
            &format!("floyd_snapshots_taken_total{g}"),
        ) >= 1.0
    });
    // A group's handle tells its host's series and its own.
    let own = h.node(leader, 7).metrics();
    assert!(sample(&own, &format!("floyd_commit_index{g}")) >= 120.0);
    assert!(sample(&own, &format!("floyd_log_bytes_held{g}")) > 0.0);
    assert!(sample(&own, "floyd_log_syncs_total") >= 120.0);

    // A leader change is counted on every member.
    let follower = (leader + 1) % 3;
    let changes = |i: usize| sample(&h.host(i).metrics(), &format!("floyd_leader_changes_total{g}"));
    let seen: Vec<f64> = (0..3).map(changes).collect();
    h.node(leader, 7).transfer_leader(&h.id(follower)).unwrap();
    wait_until("the change counted everywhere", || {
        (0..3).all(|i| changes(i) > seen[i])
    });
    assert!(
        sample(
            &h.host(follower).metrics(),
            &format!("floyd_elections_won_total{g}")
        ) >= 1.0
    );

    // A frame for a group nobody has is dropped and counted.
    let unknown = sample(&h.host(follower).metrics(), "floyd_unknown_group_frames_total");
    let refused_as = |reason: &str| {
        sample(
            &h.host(follower).metrics(),
            &format!(r#"floyd_refused_frames_total{{reason="{reason}"}}"#),
        )
    };
    let unknown_by_reason = refused_as("unknown_group");
    let mut conn = connect_as(&h, follower, &h.id(leader));
    let beat = floyd::wire::AppendEntries {
        term: 1,
        leader: h.id(leader),
        ..Default::default()
    };
    send(&mut conn, 99, floyd::wire::frame::Body::AppendEntries(beat));
    wait_until("the forged frame counted", || {
        sample(&h.host(follower).metrics(), "floyd_unknown_group_frames_total") > unknown
    });
    assert!(refused_as("unknown_group") > unknown_by_reason);

    // So is one in another member's name, refused by the group.
    let mismatch = refused_as("sender_mismatch");
    let forged = floyd::wire::AppendEntries {
        term: 1,
        leader: h.id((follower + 1) % 3),
        ..Default::default()
    };
    send(&mut conn, 7, floyd::wire::frame::Body::AppendEntries(forged));
    wait_until("the impersonation counted", || {
        refused_as("sender_mismatch") > mismatch
    });

    // A port probe (connected, closed without a byte) is no refusal: a
    // load balancer's health check must not look like an attack. Its
    // connection is handled once the host closes it.
    let garbage = refused_as("bad_handshake");
    {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(h.id(follower)).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        assert_eq!(s.read(&mut [0u8; 16]).unwrap(), 0, "the host closed it");
        assert_eq!(refused_as("bad_handshake"), garbage);
    }
    // Garbage on the members' port (another protocol's client) is.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(h.id(follower)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        wait_until("the garbage counted", || refused_as("bad_handshake") > garbage);
    }

    // A handshake from another cluster is refused and counted.
    let refused = sample(&h.host(follower).metrics(), "floyd_connections_refused_total");
    {
        use floyd::transport::{write_frame, MAX_PROTOCOL_VERSION, PROTOCOL_VERSION};
        let mut s = std::net::TcpStream::connect(h.id(follower)).unwrap();
        let hello = floyd::wire::Handshake {
            cluster_id: "another-cluster".into(),
            from: h.id(leader),
            protocol_version: PROTOCOL_VERSION,
            max_protocol_version: MAX_PROTOCOL_VERSION,
            ..Default::default()
        };
        write_frame(&mut s, floyd::wire::frame::Body::Handshake(hello)).unwrap();
        wait_until("the refusal counted", || {
            sample(&h.host(follower).metrics(), "floyd_connections_refused_total") > refused
        });
        assert!(refused_as("not_admitted") >= 1.0);
    }

    // A member that missed the compacted log gets a snapshot: sent by the
    // leader, its bytes received and installed there.
    let new_leader = h.wait_for_leader(7);
    let behind = (new_leader + 1) % 3;
    h.close_group(behind, 7);
    for k in 0..150u32 {
        h.write(new_leader, 7, format!("after{k}").as_bytes(), b"v");
    }
    h.open_group_with(behind, 7, snapshotting(&h));
    h.wait_applied(behind, 7, b"after149", b"v");
    let theirs = h.host(behind).metrics();
    assert!(sample(&theirs, &format!("floyd_snapshots_installed_total{g}")) >= 1.0);
    assert!(sample(&theirs, &format!("floyd_snapshot_bytes_received_total{g}")) > 0.0);
    assert!(sample(&theirs, "floyd_snapshot_install_duration_seconds_count") >= 1.0);
    wait_until("the stream counted as sent", || {
        sample(
            &h.host(new_leader).metrics(),
            &format!("floyd_snapshots_sent_total{g}"),
        ) >= 1.0
    });
    let sender = h.host(new_leader).metrics();
    assert!(sample(&sender, &format!("floyd_snapshot_bytes_sent_total{g}")) > 0.0);
    assert!(sample(&sender, "floyd_snapshot_send_duration_seconds_count") >= 1.0);
    assert!(sample(&sender, "floyd_snapshot_take_duration_seconds_count") >= 1.0);
}

/// Keys deleted by their TTL are counted on every replica, and a call that
/// times out is counted under its kind.
#[test]
fn expired_keys_and_timeouts_by_kind_are_counted() {
    let mut h = Hosts::start(3);
    for i in 0..3 {
        h.open_group(i, 3);
    }
    let leader = h.wait_for_leader(3);
    for k in 0..5u32 {
        let key = format!("ttl{k}");
        h.node(leader, 3)
            .redis(&[b"SET", key.as_bytes(), b"v", b"PX", b"50"])
            .unwrap();
    }
    for i in 0..3 {
        wait_until("five keys expired on every replica", || {
            sample(&h.host(i).metrics(), r#"floyd_expired_keys_total{group="3"}"#) >= 5.0
        });
    }
    // A leader whose followers are gone: its write is proposed and never
    // committed, so its outcome is unknown when the caller's time is up
    // (timers long enough that it does not step down first).
    let mut opts = h.group_options();
    opts.heartbeat_us = 200_000;
    opts.check_leader_us = 1_500_000;
    opts.request_timeout = std::time::Duration::from_millis(300);
    for i in 0..3 {
        h.open_group_with(i, 4, opts.clone());
    }
    let leader = h.wait_for_leader(4);
    h.write(leader, 4, b"first", b"v");
    for i in (0..3).filter(|&i| i != leader) {
        h.close_group(i, 4);
    }
    let timeouts = |kind: &str| {
        let series = format!(r#"floyd_timeouts_total{{group="4",kind="{kind}"}}"#);
        sample(&h.host(leader).metrics(), &series)
    };
    let (writes, reads) = (timeouts("write"), timeouts("read"));
    let r = h.node(leader, 4).write(b"k", b"v");
    assert!(matches!(r, Err(floyd::Error::Timeout(_))), "{r:?}");
    assert_eq!(timeouts("write"), writes + 1.0);
    assert_eq!(timeouts("read"), reads);
}

#[test]
fn a_node_opened_on_its_own_tells_its_metrics() {
    let c = common::Cluster::start(3);
    let leader = c.wait_for_leader();
    c.write_retrying(leader, b"k", b"v");
    let text = c.node(leader).metrics();
    assert!(sample(&text, r#"floyd_applied_entries_total{group="0"}"#) >= 1.0);
    assert!(sample(&text, "floyd_read_call_duration_seconds_count") >= 0.0);
    let follower = c.follower_of(leader);
    assert_eq!(c.node(follower).read(b"k").unwrap(), b"v");
    let text = c.node(follower).metrics();
    assert!(sample(&text, r#"floyd_read_index_reads_total{group="0"}"#) >= 1.0);
    assert_eq!(sample(&text, r#"floyd_is_leader{group="0"}"#), 0.0);
    assert_eq!(sample(&text, r#"floyd_has_leader{group="0"}"#), 1.0);
}
