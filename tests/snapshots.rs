//! Snapshots, log compaction and InstallSnapshot on real nodes (issue 10):
//! a follower far behind catches up through a snapshot, a new node joins a
//! compacted cluster, restarts load the snapshot plus the log tail, and
//! memory and disk stay bounded under a long write stream.

mod common;

use common::{wait_until, Cluster};
use floyd::{Floyd, Options};
use std::time::Instant;

/// Small thresholds so a test's few thousand writes go through several snapshots.
fn compacting(mut o: Options) -> Options {
    o.snapshot_log_entries = 300;
    o.snapshot_log_bytes = 0;
    o.snapshot_keep_entries = 50;
    o.snapshot_chunk_bytes = 16 << 10;
    o
}

fn compacting_cluster(n: usize) -> Cluster {
    Cluster::start_tweaked(n, compacting)
}

fn write_range(c: &Cluster, leader: usize, range: std::ops::Range<usize>) {
    for i in range {
        c.write_retrying(
            leader,
            format!("k{}", i % 500).as_bytes(),
            format!("v{i}").as_bytes(),
        );
    }
}

/// Every key's value as node `i` has applied it.
fn contents(c: &Cluster, i: usize) -> Vec<Option<Vec<u8>>> {
    (0..500)
        .map(|k| c.node(i).dirty_read(format!("k{k}").as_bytes()).ok())
        .collect()
}

fn wait_identical(c: &Cluster, a: usize, b: usize) {
    c.wait_caught_up(b, a);
    wait_until("identical state machines", || contents(c, a) == contents(c, b));
}

#[test]
fn section7_a_follower_stopped_while_the_log_was_compacted_catches_up_by_snapshot() {
    let mut c = compacting_cluster(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    write_range(&c, leader, 0..100);
    c.wait_caught_up(f, leader);
    let behind = c.node(f).server_status().last_log_index;
    c.stop(f);
    // The scale: 100,000 writes while the follower is down.
    write_parallel(&c, leader, 100..100_000);
    wait_until("the leader compacted past the stopped follower", || {
        c.node(leader).server_status().first_log_index > behind + 1
    });
    c.restart(f);
    wait_identical(&c, leader, f);
    let s = c.node(f).server_status();
    assert!(s.snapshot_index > behind, "the follower got a snapshot: {s:?}");
    assert!(
        s.first_log_index > behind + 1,
        "its log starts after the snapshot: {s:?}"
    );
    // It keeps replicating normally afterwards.
    write_range(&c, leader, 100_000..100_050);
    wait_identical(&c, leader, f);
}

/// Writes the range from 16 threads through `leader` (a stable leader:
/// nothing is killed meanwhile, so a failure is a bug).
fn write_parallel(c: &Cluster, leader: usize, range: std::ops::Range<usize>) {
    let next = std::sync::atomic::AtomicUsize::new(range.start);
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= range.end {
                    return;
                }
                let key = format!("k{}", i % 500);
                c.node(leader)
                    .write(key.as_bytes(), format!("v{i}").as_bytes())
                    .expect("write");
            });
        }
    });
}

#[test]
fn section7_a_wiped_follower_is_rebuilt_from_a_snapshot_twice_in_a_row() {
    let mut c = compacting_cluster(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    for round in 0..2 {
        c.stop(f);
        std::fs::remove_dir_all(c.path(f)).unwrap();
        write_range(&c, leader, round * 1_000..(round + 1) * 1_000);
        c.restart(f);
        wait_identical(&c, leader, f);
        assert!(c.node(f).server_status().snapshot_index > 0);
    }
}

#[test]
fn section7_a_snapshot_install_survives_a_leader_change_midway() {
    let mut c = compacting_cluster(3);
    let leader = c.wait_for_leader();
    let f = c.follower_of(leader);
    c.stop(f);
    // Enough data that the stream takes a while at a low rate.
    let big = vec![b'x'; 4 << 10];
    for i in 0..600 {
        c.write_retrying(leader, format!("big{}", i % 300).as_bytes(), &big);
    }
    let mut o = compacting(c.options(f));
    o.snapshot_bytes_per_sec = 256 << 10;
    c.open_with(f, o);
    // The leader goes away while the snapshot streams; the next one finishes the job.
    let snapshots = c.path(f).join("snapshots");
    wait_until("the snapshot stream started", || {
        std::fs::read_dir(&snapshots)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tmp-incoming"))
            })
            .unwrap_or(false)
    });
    c.stop(leader);
    let new_leader =
        c.wait_for_leader_among(&[0, 1, 2].into_iter().filter(|&i| i != leader).collect::<Vec<_>>());
    c.write_retrying(new_leader, b"after", b"change");
    c.wait_caught_up(f, new_leader);
    assert_eq!(c.node(f).dirty_read(b"after").unwrap(), b"change");
    for i in 0..300 {
        assert_eq!(c.node(f).dirty_read(format!("big{i}").as_bytes()).unwrap(), big);
    }
}

#[test]
fn section7_a_new_member_added_to_a_compacted_cluster_receives_a_snapshot() {
    let mut c = Cluster::start_partial(4, 3);
    for i in 0..3 {
        c.stop(i);
        let o = compacting(c.options(i));
        c.open_with(i, o);
    }
    let leader = c.wait_for_leader();
    write_range(&c, leader, 0..1_500);
    wait_until("compacted", || c.node(leader).server_status().first_log_index > 1);
    let mut o = compacting(c.options(3));
    o.join = true;
    c.open_with(3, o);
    c.node(leader).add_server(&c.id(3)).expect("add the new member");
    wait_identical(&c, leader, 3);
    assert!(c.node(3).server_status().snapshot_index > 0);
}

#[test]
fn section7_restart_loads_the_snapshot_and_the_tail_and_replays_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1)[0];
    let id = format!("127.0.0.1:{port}");
    let open = || {
        let mut o = compacting(Options::new(&id, "127.0.0.1", port, dir.path()));
        o.heartbeat_us = 30_000;
        o.check_leader_us = 300_000;
        Floyd::open(o).unwrap()
    };
    let f = open();
    wait_until("leader", || f.server_status().role == "leader");
    for i in 0..3_000u32 {
        f.write(format!("k{}", i % 100).as_bytes(), &i.to_be_bytes())
            .unwrap();
    }
    wait_until("a snapshot and a compacted log", || {
        let s = f.server_status();
        s.snapshot_index > 0 && s.first_log_index > 1
    });
    let before = f.server_status();
    f.close();
    let started = Instant::now();
    let f = open();
    let took = started.elapsed();
    wait_until("leader again", || f.server_status().role == "leader");
    let after = f.server_status();
    assert!(after.first_log_index > 1, "{after:?}");
    assert!(after.last_log_index >= before.last_log_index);
    for k in 0..100u32 {
        let last = (0..3_000u32).rev().find(|i| i % 100 == k).unwrap();
        assert_eq!(f.read(format!("k{k}").as_bytes()).unwrap(), last.to_be_bytes());
    }
    eprintln!("restart with a compacted log of 3,000 writes: {took:?}");
}

#[test]
fn section7_log_and_disk_stay_bounded_under_a_long_write_stream() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1)[0];
    let id = format!("127.0.0.1:{port}");
    let mut o = Options::new(&id, "127.0.0.1", port, dir.path());
    o.snapshot_log_entries = 2_000;
    o.snapshot_keep_entries = 200;
    let f = Floyd::open(o).unwrap();
    wait_until("leader", || f.server_status().role == "leader");
    let value = vec![b'v'; 128];
    let mut rss = Vec::new();
    for round in 0..4 {
        for i in 0..5_000u32 {
            f.write(format!("k{}", i % 1_000).as_bytes(), &value).unwrap();
        }
        let s = f.server_status();
        let held = s.last_log_index - s.first_log_index + 1;
        assert!(
            held <= 2_000 + 200 + 1_024 + 5_000,
            "round {round}: {held} entries held: {s:?}"
        );
        rss.push(rss_bytes());
    }
    // Generous: the point is that it does not grow with history.
    let growth = rss[3].saturating_sub(rss[0]);
    assert!(
        growth < 100 << 20,
        "RSS grew {growth} bytes over 15,000 writes: {rss:?}"
    );
    // 20,000 writes went in; the log holds a bounded tail.
    wait_until("compaction caught up", || {
        let s = f.server_status();
        s.last_log_index - s.first_log_index < 2_000 + 200 + 1_024
    });
    let disk = floyd::storage::snapshots::dir_bytes(dir.path());
    assert!(disk < 200 << 20, "data directory {disk} bytes");
    f.close();
}

/// This process's resident set size (Linux).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
