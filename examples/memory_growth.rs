//! Memory and disk of an in-process cluster under an endless overwrite
//! stream (issue 10's bound): 3 nodes, 10,000 keys overwritten with
//! 128-byte values; prints the process RSS and the data directories' size
//! every `--every` writes, and the growth between the first and last report.
//!
//! ```text
//! cargo run --example memory_growth -- [--writes 360000] [--every 60000] [--threads 20] [--no-snapshots]
//! ```
//! `--no-snapshots` turns compaction off, to compare with the unbounded log.

use floyd::{Floyd, Options};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (writes, every, threads) = (
        num("--writes", 360_000),
        num("--every", 60_000),
        num("--threads", 20),
    );
    let snapshots = !args.iter().any(|a| a == "--no-snapshots");
    let dir = tempfile::tempdir().expect("temp dir");
    let (nodes, options) = start_cluster(3, dir.path(), snapshots);
    let leader = wait_for_leader(&nodes);
    let nodes = Arc::new(nodes);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut reports: Vec<(usize, u64, u64)> = Vec::new();
    let mut done = 0;
    while done < writes {
        let target = (done + every).min(writes);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (nodes, next) = (nodes.clone(), next.clone());
                std::thread::spawn(move || {
                    let value = [b'v'; 128];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= target {
                            return;
                        }
                        let key = format!("key{:05}", i % 10_000);
                        if let Err(e) = nodes[leader].write(key.as_bytes(), &value) {
                            eprintln!("write {i}: {e}");
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        next.store(target, Ordering::Relaxed);
        done = target;
        let (rss, disk) = (rss_bytes(), floyd::storage::snapshots::dir_bytes(dir.path()));
        let rate = done as f64 / started.elapsed().as_secs_f64();
        println!(
            "{done:>8} writes  RSS {:>7.1} MiB  data {:>7.1} MiB  ({rate:.0} writes/s so far)",
            mib(rss),
            mib(disk)
        );
        reports.push((done, rss, disk));
    }
    if let (Some(first), Some(last)) = (reports.first(), reports.last()) {
        println!(
            "growth from {} to {} writes: RSS {:+.1} MiB, data {:+.1} MiB (snapshots {})",
            first.0,
            last.0,
            mib(last.1) - mib(first.1),
            mib(last.2) - mib(first.2),
            if snapshots { "on" } else { "off" }
        );
    }
    // Restart time: how long each node takes to open again on this history.
    let nodes = Arc::try_unwrap(nodes).unwrap_or_else(|_| panic!("writers still hold the nodes"));
    nodes.into_iter().for_each(|n| n.close());
    let started = Instant::now();
    let reopened: Vec<Floyd> = options
        .into_iter()
        .map(|o| Floyd::open(o).expect("reopen"))
        .collect();
    let opened = started.elapsed();
    wait_for_leader(&reopened);
    println!(
        "restart after {writes} writes: 3 nodes opened in {opened:?}, a leader after {:?}",
        started.elapsed()
    );
}

fn start_cluster(n: usize, dir: &std::path::Path, snapshots: bool) -> (Vec<Floyd>, Vec<Options>) {
    let holds: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = holds.iter().map(|l| l.local_addr().unwrap().port()).collect();
    drop(holds);
    let members = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let options: Vec<Options> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut opts = Options::new(&members, "127.0.0.1", *p, dir.join(format!("n{i}")));
            if !snapshots {
                opts.snapshot_log_entries = 0;
                opts.snapshot_log_bytes = 0;
            }
            opts
        })
        .collect();
    let nodes = options
        .iter()
        .map(|o| Floyd::open(o.clone()).expect("open"))
        .collect();
    (nodes, options)
}

fn wait_for_leader(nodes: &[Floyd]) -> usize {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(i) = nodes.iter().position(|n| n.server_status().role == "leader") {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
