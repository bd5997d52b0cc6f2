//! The coordination calls under load (issue 22): numbers, not a test;
//! BENCHMARKS.md ("Coordination") has them. A 3-node cluster in this
//! process, writing through the leader.
//!
//! ```text
//! cargo run --example coord_bench -- cas  [--threads 20] [--counters 1] [--secs 5]
//! cargo run --example coord_bench -- txn  [--threads 20] [--ops 10] [--secs 5]
//! cargo run --example coord_bench -- scan [--keys 10000] [--rounds 20] [--writers 4]
//! cargo run --example coord_bench -- leases [--leases 100000] [--ttl-ms 30000] [--threads 256] [--secs 20]
//! cargo run --example coord_bench -- watch [--watchers 10000] [--rate 1000] [--secs 10]
//! ```
//!
//! `cas`: every thread increments counter `thread % counters` by
//! `read_meta` then `write_if`, again on a conflict: increments/s, conflicts
//! per increment, latency of an increment (its retries included). One
//! counter is the worst case (every thread races for it), 20 the best.
//!
//! `txn`: each thread writes `--ops` keys per round, as one transaction
//! and as that many writes, alternating: keys/s and latency of a round.
//!
//! `scan`: loads `--keys` keys, then scans them all (linearizable, pages of
//! 1,000) `--rounds` times while `--writers` threads write other keys: scan
//! time p50/p99, and the writes' p50/p99 with and without scans going on.
//!
//! `leases`: grants `--leases` leases of `--ttl-ms`, each with one key,
//! then keeps them all alive from `--threads` threads (each lease renewed
//! every third of its TTL, from a follower, as a service's clients would)
//! for `--secs`: keep-alives/s, log entries/s, the process's CPU (all 3
//! nodes and the client threads), keep-alive latency, and that no key expired.
//!
//! `watch`: `--watchers` watches of one prefix on a follower, then `--rate`
//! writes a second under it for `--secs`: each change's delivery latency
//! (from the write's submission to the callback), the writes' latency, the
//! CPU of the process against the same writes with no watcher, and that
//! every watcher saw every change once.

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_time;

use floyd::{prefix_end, Branch, Error, Floyd, Options, Txn};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn num(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn start_cluster(dir: &std::path::Path) -> Vec<Floyd> {
    let holds: Vec<_> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = holds.iter().map(|l| l.local_addr().unwrap().port()).collect();
    drop(holds);
    let members: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Floyd::open(Options::new(
                &members.join(","),
                "127.0.0.1",
                *p,
                dir.join(format!("n{i}")),
            ))
            .unwrap()
        })
        .collect()
}

/// The leader, once every node knows it and it takes transactions.
fn leader(nodes: &[Floyd]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no leader");
        if let Some(i) = nodes.iter().position(|n| n.is_leader()) {
            let mut t = Txn::new();
            t.put(Branch::Then, b"warm-up", b"", 0);
            if nodes[i].txn(&t).is_ok() {
                return i;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort_unstable();
    format!(
        "p50 {:?} p99 {:?} max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default()
    )
}

/// Runs `round(thread)` on `threads` threads for `secs`; the latencies.
fn run(threads: u64, secs: u64, round: impl Fn(u64) + Send + Sync + 'static) -> (Vec<Duration>, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let round = Arc::new(round);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, round) = (stop.clone(), round.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let s = Instant::now();
                    round(t);
                    lat.push(s.elapsed());
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let lat = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    (lat, t0.elapsed())
}

fn cas(args: &[String]) {
    let (threads, counters, secs) = (
        num(args, "--threads", 20),
        num(args, "--counters", 1).max(1),
        num(args, "--secs", 5),
    );
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(start_cluster(dir.path()));
    let l = leader(&nodes);
    for c in 0..counters {
        nodes[l]
            .write_if(format!("counter/{c}").as_bytes(), b"0", 0)
            .unwrap();
    }
    let conflicts = Arc::new(AtomicU64::new(0));
    let (n, k) = (nodes.clone(), conflicts.clone());
    let (lat, elapsed) = run(threads, secs, move |t| {
        let key = format!("counter/{}", t % counters);
        loop {
            let (v, meta) = n[l].read_meta(key.as_bytes()).unwrap();
            let next = String::from_utf8(v).unwrap().parse::<u64>().unwrap() + 1;
            match n[l].write_if(key.as_bytes(), next.to_string().as_bytes(), meta.mod_revision) {
                Ok(_) => return,
                Err(Error::Conflict(_)) => k.fetch_add(1, Ordering::Relaxed),
                Err(e) => panic!("{e}"),
            };
        }
    });
    let total: u64 = (0..counters)
        .map(|c| {
            let (v, _) = nodes[l].read_meta(format!("counter/{c}").as_bytes()).unwrap();
            String::from_utf8(v).unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(total, lat.len() as u64, "an increment was lost or doubled");
    println!(
        "cas: {threads} threads, {counters} counters: {:.0} increments/s, {:.2} conflicts per increment | {}",
        lat.len() as f64 / elapsed.as_secs_f64(),
        conflicts.load(Ordering::Relaxed) as f64 / lat.len().max(1) as f64,
        summary(lat)
    );
}

fn txn(args: &[String]) {
    let (threads, ops, secs) = (
        num(args, "--threads", 20),
        num(args, "--ops", 10),
        num(args, "--secs", 5),
    );
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(start_cluster(dir.path()));
    let l = leader(&nodes);
    let value = vec![b'v'; 128];
    for as_txn in [true, false, true, false] {
        let (n, v) = (nodes.clone(), value.clone());
        let round_no = Arc::new(AtomicU64::new(0));
        let (lat, elapsed) = run(threads, secs, move |t| {
            let r = round_no.fetch_add(1, Ordering::Relaxed);
            let key = |i: u64| format!("t{t}/r{r}/{i}");
            if as_txn {
                let mut x = Txn::new();
                for i in 0..ops {
                    x.put(Branch::Then, key(i).as_bytes(), &v, 0);
                }
                n[l].txn(&x).unwrap();
            } else {
                for i in 0..ops {
                    n[l].write(key(i).as_bytes(), &v).unwrap();
                }
            }
        });
        println!(
            "{}: {threads} threads × {ops} keys: {:.0} keys/s | a round {}",
            if as_txn {
                "one transaction"
            } else {
                "separate writes"
            },
            (lat.len() as u64 * ops) as f64 / elapsed.as_secs_f64(),
            summary(lat)
        );
    }
}

fn scan(args: &[String]) {
    let (keys, rounds, writers) = (
        num(args, "--keys", 10_000),
        num(args, "--rounds", 20),
        num(args, "--writers", 4),
    );
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(start_cluster(dir.path()));
    let l = leader(&nodes);
    let value = vec![b'v'; 128];
    for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
        let mut t = Txn::new();
        for k in chunk {
            t.put(Branch::Then, format!("scan/{k:08}").as_bytes(), &value, 0);
        }
        nodes[l].txn(&t).unwrap();
    }
    let writes = |scanning: bool| {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..writers)
            .map(|w| {
                let (n, stop, v) = (nodes.clone(), stop.clone(), value.clone());
                std::thread::spawn(move || {
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let s = Instant::now();
                        n[l].write(format!("other/{w}/{i}").as_bytes(), &v).unwrap();
                        lat.push(s.elapsed());
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        let mut scans = Vec::new();
        let t0 = Instant::now();
        while (scanning && (scans.len() as u64) < rounds)
            || (!scanning && t0.elapsed() < Duration::from_secs(3))
        {
            if !scanning {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let s = Instant::now();
            let (mut start, mut seen) = (b"scan/".to_vec(), 0u64);
            loop {
                let page = nodes[l].scan(&start, &prefix_end(b"scan/"), 1_000).unwrap();
                seen += page.kvs.len() as u64;
                if !page.more {
                    break;
                }
                start = page.kvs.last().unwrap().key.clone();
                start.push(0);
            }
            assert_eq!(seen, keys);
            scans.push(s.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
        let lat: Vec<Duration> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        (scans, lat)
    };
    let (_, quiet) = writes(false);
    let (scans, busy) = writes(true);
    println!(
        "scan of {keys} keys (pages of 1,000, linearizable): {}",
        summary(scans)
    );
    println!("writes, {writers} threads, no scans: {}", summary(quiet));
    println!("writes, {writers} threads, scans going on: {}", summary(busy));
}

fn leases(args: &[String]) {
    let (count, ttl_ms, threads, secs) = (
        num(args, "--leases", 100_000),
        num(args, "--ttl-ms", 30_000),
        num(args, "--threads", 256).max(1),
        num(args, "--secs", 20),
    );
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(start_cluster(dir.path()));
    let l = leader(&nodes);
    let f = (l + 1) % nodes.len();
    let period = Duration::from_millis(ttl_ms / 3);
    // Each thread grants its share (with a key each), keeping alive what it
    // granted already, then only keeps alive; counted once all are granted.
    let (granting, measuring, stop) = (
        Arc::new(AtomicU64::new(threads)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (n, granting, measuring, stop) =
                (nodes.clone(), granting.clone(), measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                // Oldest renewal first: only the front is ever due.
                let mut mine: std::collections::VecDeque<(u64, Instant)> = Default::default();
                let (mut next, mut lat) = (t, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    while mine.front().is_some_and(|(_, r)| r.elapsed() >= period) {
                        let (id, _) = mine.pop_front().unwrap();
                        let s = Instant::now();
                        // (Expired: the client fell behind; counted below by the keys left.)
                        if n[f].lease_keepalive(id).is_ok() {
                            mine.push_back((id, s));
                        }
                        if measuring.load(Ordering::Relaxed) {
                            lat.push(s.elapsed());
                        }
                    }
                    if next < count {
                        let id = n[l].lease_grant(ttl_ms).unwrap();
                        n[l].write_with_lease(format!("svc/{next:08}").as_bytes(), b"up", id)
                            .unwrap();
                        mine.push_back((id, Instant::now()));
                        next += threads;
                        if next >= count {
                            granting.fetch_sub(1, Ordering::Relaxed);
                        }
                    } else {
                        // Until the front is due (a client with nothing to do sleeps).
                        let due = mine
                            .front()
                            .map_or(period, |(_, r)| period.saturating_sub(r.elapsed()));
                        std::thread::sleep(due.min(Duration::from_millis(100)));
                    }
                }
                lat
            })
        })
        .collect();
    while granting.load(Ordering::Relaxed) > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("granted {count} leases with a key each in {:?}", t0.elapsed());
    // Let the grant's backlog of keep-alives settle into their period first.
    std::thread::sleep(period);
    let (entries0, cpu0, start) = (
        nodes[l].server_status().last_log_index,
        cpu_time(),
        Instant::now(),
    );
    measuring.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(secs));
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let entries = nodes[l].server_status().last_log_index - entries0;
    let cpu = (cpu_time() - cpu0).as_secs_f64() / elapsed;
    stop.store(true, Ordering::Relaxed);
    let lat: Vec<Duration> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let kept = nodes[l].count(b"svc/", &prefix_end(b"svc/")).unwrap();
    println!(
        "{count} leases of {ttl_ms} ms kept alive from {threads} threads on a follower: {:.0} keep-alives/s, \
         {:.0} log entries/s, CPU {:.2} cores | a keep-alive {}",
        lat.len() as f64 / elapsed,
        entries as f64 / elapsed,
        cpu,
        summary(lat)
    );
    assert_eq!(kept, count, "a lease kept alive expired");
    println!("every key is still there ({kept})");
}

fn watch(args: &[String]) {
    use std::sync::Mutex;
    let (watchers, rate, secs) = (
        num(args, "--watchers", 10_000),
        num(args, "--rate", 1_000),
        num(args, "--secs", 10),
    );
    let dir = tempfile::tempdir().unwrap();
    let nodes = Arc::new(start_cluster(dir.path()));
    let l = leader(&nodes);
    let f = (l + 1) % nodes.len();
    let base = Instant::now();
    // Runs `rate` writes a second for `secs` (the value: when it was submitted); their latencies.
    let write = |prefix: &str| {
        let mut lat = Vec::new();
        let start = Instant::now();
        for i in 0..rate * secs {
            let due = start + Duration::from_micros(i * 1_000_000 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let sent = Instant::now();
            let stamp = (sent - base).as_nanos() as u64;
            nodes[l]
                .write(format!("{prefix}{i}").as_bytes(), &stamp.to_be_bytes())
                .unwrap();
            lat.push(sent.elapsed());
        }
        lat
    };
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let quiet = write("quiet/");
    let quiet_cpu = (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let delivery: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let counts: Vec<Arc<AtomicU64>> = (0..watchers).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (i, c) in counts.iter().enumerate() {
        let (c, d) = (c.clone(), delivery.clone());
        // Latencies from 100 watchers spread over the list (all of them would
        // be rate × secs × watchers samples).
        let sampled = i as u64 % (watchers / 100).max(1) == 0;
        nodes[f]
            .watch(b"w/", &prefix_end(b"w/"), 0, move |u| {
                if let floyd::WatchUpdate::Events(events) = u {
                    c.fetch_add(events.len() as u64, Ordering::Relaxed);
                    if !sampled {
                        return;
                    }
                    let now = (Instant::now() - base).as_nanos() as u64;
                    let mut d = d.lock().unwrap();
                    for e in events {
                        let sent = u64::from_be_bytes(e.value.as_ref().try_into().unwrap());
                        d.push(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                }
            })
            .unwrap();
    }
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let busy = write("w/");
    let want = rate * secs;
    let deadline = Instant::now() + Duration::from_secs(60);
    while counts.iter().any(|c| c.load(Ordering::Relaxed) < want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let busy_cpu = (cpu_time() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let complete = counts
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) == want)
        .count();
    let lat = std::mem::take(&mut *delivery.lock().unwrap());
    println!(
        "{watchers} watchers of one prefix on a follower, {rate} writes/s for {secs} s: delivery {} ({} sampled)",
        summary(lat.clone()),
        lat.len()
    );
    println!(
        "writes without watchers: {} | CPU {quiet_cpu:.2} cores",
        summary(quiet)
    );
    println!(
        "writes with the watchers: {} | CPU {busy_cpu:.2} cores",
        summary(busy)
    );
    println!("{complete} of {watchers} watchers saw all {want} changes");
    assert_eq!(complete as u64, watchers, "a watcher missed a change");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cas") => cas(&args),
        Some("txn") => txn(&args),
        Some("scan") => scan(&args),
        Some("leases") => leases(&args),
        Some("watch") => watch(&args),
        _ => eprintln!("usage: coord_bench cas|txn|scan|leases|watch [options] (see the source's header)"),
    }
}
