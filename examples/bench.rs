//! Write and read throughput of an in-process cluster, with latency percentiles:
//! the counterpart of the original Floyd's `t1` / `read_bench`.
//!
//! ```text
//! cargo run --example bench -- [--nodes 5] [--threads 20] [--items 2000] [--value-size 128]
//!     [--via-follower] [--reads [--read-rounds 5] [--lease]]
//!     [--async [--window 10000]] [--tls] [--no-fsync all|followers|leader]
//!     [--history N]
//! ```
//!
//! `--history N` keeps N revisions of changes for watches (0: none; the
//! default otherwise): what the history costs a write.
//!
//! `--no-fsync` is a diagnosis, not a setting: the named nodes stop syncing
//! their logs (acknowledged writes could be lost), which shows what a write
//! costs apart from its fsyncs.
//!
//! `--tls` turns on mutual TLS between the members, with a CA and
//! certificates made for the run.
//!
//! `--async` writes with `write_async` instead: each thread submits its
//! items keeping at most `--window` unanswered (a closed loop with a
//! window), and latency is from submission to completion.
//!
//! `--reads` then reads back what was written, `--read-rounds` times: by
//! ReadIndex (or by lease with `--lease`, which opens every node with
//! `lease_reads`) through the same node as the writes, then spread over
//! every node (each thread reads through node `thread % nodes`: follower
//! reads), then dirty reads.
//!
//! Each line gives the rate, latency percentiles and the CPU per operation:
//! the user and system time of the whole process (every node, the client
//! threads too) while the operations ran, divided by their number.

// The tests' CA (examples may use the dev-dependencies).
#[path = "../tests/common/certs.rs"]
mod certs;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_time;

use floyd::{Floyd, Options};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    nodes: usize,
    threads: usize,
    items: usize,
    value_size: usize,
    via_follower: bool,
    reads: bool,
    read_rounds: usize,
    lease: bool,
    async_api: bool,
    window: usize,
    tls: bool,
    no_fsync: Option<String>,
    /// `--history N`: the changes each node keeps for watches (its default if absent).
    history: Option<u64>,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Args {
        nodes: num("--nodes", 5),
        threads: num("--threads", 20),
        items: num("--items", 2000),
        value_size: num("--value-size", 128),
        via_follower: args.iter().any(|a| a == "--via-follower"),
        reads: args.iter().any(|a| a == "--reads"),
        read_rounds: num("--read-rounds", 5).max(1),
        lease: args.iter().any(|a| a == "--lease"),
        async_api: args.iter().any(|a| a == "--async"),
        window: num("--window", 10_000).max(1),
        tls: args.iter().any(|a| a == "--tls"),
        no_fsync: args
            .iter()
            .position(|a| a == "--no-fsync")
            .map(|i| args.get(i + 1).cloned().unwrap_or_default()),
        history: args
            .iter()
            .position(|a| a == "--history")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok()),
    }
}

fn start_cluster(n: usize, dir: &std::path::Path, a: &Args) -> Vec<Floyd> {
    let (lease, tls) = (a.lease, a.tls);
    // A CA, and a certificate for each node naming it (floyd://127.0.0.1:port):
    // the nodes share an IP, so one naming only the IP would be refused.
    let ca = tls.then(|| certs::Ca::new(dir, "tls"));
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
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut opts = Options::new(&members, "127.0.0.1", *p, dir.join(format!("n{i}")));
            opts.lease_reads = lease;
            if let Some(h) = a.history {
                opts.history_revisions = h;
            }
            opts.tls = ca
                .as_ref()
                .map(|ca| ca.member_of(&format!("n{i}"), [format!("127.0.0.1:{p}")]));
            Floyd::open(opts).expect("open")
        })
        .collect()
}

fn wait_for_leader(nodes: &[Floyd]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = nodes.iter().position(|n| n.is_leader()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `op(thread, item)` from `threads` threads and reports rate and latency.
fn measure(label: &str, threads: usize, items: usize, op: impl Fn(usize, usize) + Send + Sync + 'static) {
    let op = Arc::new(op);
    let (start, cpu) = (Instant::now(), cpu_time());
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let op = op.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(items);
                for i in 0..items {
                    let t0 = Instant::now();
                    op(t, i);
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let lat: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    report(label, lat, start.elapsed(), cpu_time() - cpu);
}

/// `write_async` from `threads` threads, each keeping at most `window`
/// writes unanswered; latency is submission to completion.
fn measure_async(node: Arc<Vec<Floyd>>, target: usize, a: &Args, value: Vec<u8>) {
    let (items, window) = (a.items, a.window);
    let value = Arc::new(value);
    let (start, cpu) = (Instant::now(), cpu_time());
    let handles: Vec<_> = (0..a.threads)
        .map(|t| {
            let (node, value) = (node.clone(), value.clone());
            std::thread::spawn(move || {
                let (tx, rx) = crossbeam_channel::unbounded::<Duration>();
                let mut lat = Vec::with_capacity(items);
                for i in 0..items {
                    if i >= window {
                        lat.push(rx.recv().unwrap());
                    }
                    let (tx, t0) = (tx.clone(), Instant::now());
                    node[target]
                        .write_async(format!("bench-{t}-{i}").as_bytes(), &value, move |r| {
                            r.expect("write");
                            let _ = tx.send(t0.elapsed());
                        })
                        .expect("write_async");
                }
                drop(tx);
                lat.extend(rx.iter());
                lat
            })
        })
        .collect();
    let lat: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let label = format!("write_async (window {window})");
    report(&label, lat, start.elapsed(), cpu_time() - cpu);
}

fn report(label: &str, mut lat: Vec<Duration>, elapsed: Duration, cpu: Duration) {
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{label}: {} ops in {:.2?} = {:.0} ops/s | latency p50 {:.2?} p90 {:.2?} p99 {:.2?} p99.9 {:.2?} max {:.2?} | CPU {:.1} µs per op",
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        lat[lat.len() - 1],
        cpu.as_secs_f64() * 1e6 / lat.len() as f64
    );
}

fn main() {
    let a = parse_args();
    let dir = std::env::temp_dir().join(format!("floyd-bench-{}", std::process::id()));
    let nodes = Arc::new(start_cluster(a.nodes, &dir, &a));
    let leader = wait_for_leader(&nodes);
    if let Some(which) = &a.no_fsync {
        for (i, n) in nodes.iter().enumerate() {
            let skip = match which.as_str() {
                "all" => true,
                "followers" => i != leader,
                "leader" => i == leader,
                other => panic!("--no-fsync all|followers|leader, not {other:?}"),
            };
            n.faults().set_skip_fsync(skip);
        }
        println!("diagnosis: fsync skipped on {which} (NOT durable)");
    }
    let target = if a.via_follower {
        (leader + 1) % a.nodes
    } else {
        leader
    };
    println!(
        "{} nodes, {} threads x {} items of {} bytes, writing to the {} (synced log, group commit){}",
        a.nodes,
        a.threads,
        a.items,
        a.value_size,
        if a.via_follower { "follower" } else { "leader" },
        if a.tls { ", mutual TLS between members" } else { "" }
    );
    let value = vec![b'x'; a.value_size];
    if a.async_api {
        measure_async(nodes.clone(), target, &a, value);
    } else {
        let n = nodes.clone();
        measure("write", a.threads, a.items, move |t, i| {
            n[target]
                .write(format!("bench-{t}-{i}").as_bytes(), &value)
                .expect("write");
        });
    }
    if a.reads {
        let (items, rounds) = (a.items, a.read_rounds);
        let key = move |t: usize, i: usize| format!("bench-{t}-{}", i % items);
        let how = if a.lease { "lease" } else { "ReadIndex" };
        let n = nodes.clone();
        measure(
            &format!("read ({how})"),
            a.threads,
            items * rounds,
            move |t, i| {
                n[target].read(key(t, i).as_bytes()).expect("read");
            },
        );
        let n = nodes.clone();
        let spread = format!("read ({how}) spread over every node");
        measure(&spread, a.threads, items * rounds, move |t, i| {
            n[t % n.len()].read(key(t, i).as_bytes()).expect("read");
        });
        let n = nodes.clone();
        measure("dirty_read (local)", a.threads, items * rounds, move |t, i| {
            n[target].dirty_read(key(t, i).as_bytes()).expect("dirty read");
        });
    }
    println!(
        "memory: peak RSS {:.1} MiB, data {:.1} MiB",
        status_kib("VmHWM:") as f64 / 1024.0,
        floyd::storage::snapshots::dir_bytes(&dir) as f64 / (1 << 20) as f64
    );
    for n in nodes.iter() {
        n.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `/proc/self/status` figure in KiB (0 where there is none).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
