//! Many groups on a few hosts (issue 21): what idle groups cost and what busy
//! ones deliver. Numbers, not a test: BENCHMARKS.md ("Many groups") has them.
//!
//! ```text
//! cargo run --example host_bench -- idle --groups 1000 [--hosts 3] [--idle-secs 10] [--processes]
//!     [--heartbeat-ms 100] [--election-ms 1000]
//! cargo run --example host_bench -- busy --groups 64 --writers 256 [--secs 10] [--value-size 128]
//! cargo run --example host_bench -- failover --groups 1000
//! ```
//!
//! `--no-quiesce` keeps idle groups ticking (issue 23 compares both); with
//! quiet groups, `idle` first waits for every group to go quiet.
//! `--ttl-keys` makes every group hold a key with a TTL of an hour while
//! idle (such a group goes quiet too, woken when a deadline falls due).
//! `--writes-per-sec N` makes `idle` write to random groups at that rate
//! meanwhile (how much waking a quiet group costs a write), and `failover`
//! kills a host process and times the elections of the groups it led
//! (`quiet.rs`).
//!
//! `idle` opens `--groups` groups of `--hosts` members (one per host), waits
//! until every group has a leader, then sits idle: it prints the time to open
//! and to elect, the leaders per host, and per process its threads, RSS and
//! CPU while idle. The hosts run in this process, or with `--processes` one
//! per process (this program again, in `host` mode), each reporting its own.
//!
//! `busy` opens `--groups` groups on 3 hosts in this process and runs
//! `--writers` closed-loop writers spread over the groups, each writing
//! through its group's leader: writes/s, latency percentiles, log syncs per
//! second per host (one sync covers every group's entries) and CPU per write
//! (the process's user+system time over the writes).

mod quiet;

#[path = "../common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_time;

use floyd::{Floyd, GroupOptions, Host, HostOptions};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn members(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn threads() -> u64 {
    status_kib("Threads:")
}

/// A number after `"name":` in a host's status JSON.
fn json_number(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\":");
    json.find(&key)
        .map(|i| &json[i + key.len()..])
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_host(port: u16, dir: &std::path::Path) -> Host {
    Host::open(HostOptions::new("127.0.0.1", port, dir)).expect("open host")
}

/// A group of `members`, with `--heartbeat-ms` and `--election-ms` if given.
fn group_options(args: &[String], members: &str) -> GroupOptions {
    let mut g = GroupOptions::new(members);
    g.heartbeat_us = num(args, "--heartbeat-ms", g.heartbeat_us / 1000) * 1000;
    g.check_leader_us = num(args, "--election-ms", g.check_leader_us / 1000) * 1000;
    if args.iter().any(|a| a == "--no-quiesce") {
        g.quiesce = Some(false);
    }
    g
}

/// Opens groups 1..=n on `host`.
fn open_groups(host: &Host, opts: &GroupOptions, n: u64) -> Vec<Floyd> {
    (1..=n)
        .map(|g| host.open_group(g, opts.clone()).expect("open group"))
        .collect()
}

fn wait_for(what: &str, deadline: Duration, done: impl Fn() -> bool) {
    let end = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Threads, RSS and CPU of this process over `secs` seconds of idling
/// (with `--writes-per-sec`, of trickling writes into `handles`), and the
/// heartbeats and wake-ups of `hosts` meanwhile.
fn report_idle(label: &str, groups: u64, args: &[String], hosts: &[&Host], handles: &[&Floyd]) {
    let secs = num(args, "--idle-secs", 10);
    let rss_before = status_kib("VmRSS:");
    let counts0 = quiet::counts(hosts);
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let writes = quiet::trickle(
        handles,
        num(args, "--writes-per-sec", 0),
        Duration::from_secs(secs),
    );
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64() / elapsed;
    let rss = status_kib("VmRSS:").max(rss_before);
    let counts = quiet::counts(hosts);
    println!(
        "{label}: threads {} | RSS {:.1} MiB ({:.1} KiB per group member) | CPU {:.1}% of a core | \
         heartbeats/s {:.0} in {:.0} coalesced frames/s | wake-ups/s {:.0}{writes}",
        threads(),
        rss as f64 / 1024.0,
        rss as f64 / groups.max(1) as f64,
        cpu * 100.0,
        (counts.0 - counts0.0) as f64 / elapsed,
        (counts.2 - counts0.2) as f64 / elapsed,
        (counts.1 - counts0.1) as f64 / elapsed,
    );
}

fn idle_in_process(args: &[String]) {
    let hosts_n = num(args, "--hosts", 3) as usize;
    let groups = num(args, "--groups", 1000);
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(hosts_n);
    let members = members(&ports);
    let base_threads = threads();
    let base_rss = status_kib("VmRSS:");
    let t0 = Instant::now();
    let hosts: Vec<Host> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| open_host(*p, &dir.path().join(format!("h{i}"))))
        .collect();
    let host_threads = threads() - base_threads;
    // Group by group, so that no host's members start long before the others'
    // (the leaders spread over the hosts).
    let mut handles: Vec<Vec<Floyd>> = hosts.iter().map(|_| Vec::new()).collect();
    for g in 1..=groups {
        for (h, host) in hosts.iter().enumerate() {
            handles[h].push(
                host.open_group(g, group_options(args, &members))
                    .expect("open group"),
            );
        }
    }
    let opened = t0.elapsed();
    wait_for("every group to elect", Duration::from_secs(600), || {
        handles.iter().all(|hs| hs.iter().all(Floyd::has_leader))
    });
    let elected = t0.elapsed();
    let leaders: Vec<usize> = handles
        .iter()
        .map(|hs| hs.iter().filter(|f| f.is_leader()).count())
        .collect();
    println!(
        "{hosts_n} hosts in one process, {groups} groups of {hosts_n}: opened in {:.2} s, all elected after {:.2} s; \
         leaders per host {leaders:?}; threads of the hosts {host_threads} (process {}), RSS before {:.1} MiB",
        opened.as_secs_f64(),
        elected.as_secs_f64(),
        threads(),
        base_rss as f64 / 1024.0
    );
    if args.iter().any(|a| a == "--ttl-keys") {
        set_ttl_keys(handles.iter().flatten().filter(|f| f.is_leader()));
    }
    let host_refs: Vec<&Host> = hosts.iter().collect();
    quiet::wait_until_quiet(args, &host_refs, groups * hosts_n as u64, t0);
    let leading: Vec<&Floyd> = handles.iter().flatten().filter(|f| f.is_leader()).collect();
    report_idle(
        "idle, whole process",
        groups * hosts_n as u64,
        args,
        &host_refs,
        &leading,
    );
    drop(handles);
    for h in &hosts {
        h.close();
    }
}

/// One key with a TTL of an hour in each group led by `leaders`.
fn set_ttl_keys<'a>(leaders: impl Iterator<Item = &'a Floyd>) {
    for f in leaders {
        wait_for("a key with a TTL set", Duration::from_secs(60), || {
            f.redis(&[b"SET", b"ttl-key", b"v", b"PX", b"3600000"]).is_ok()
        });
    }
}

/// `host` mode: one host of an `idle --processes` run.
fn one_host(args: &[String]) {
    let index: usize = num(args, "--index", 0) as usize;
    let ports: Vec<u16> = arg(args, "--ports")
        .unwrap()
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    let groups = num(args, "--groups", 1000);
    let dir = std::path::PathBuf::from(arg(args, "--dir").unwrap());
    let t0 = Instant::now();
    let host = open_host(ports[index], &dir);
    let handles = open_groups(&host, &group_options(args, &members(&ports)), groups);
    let opened = t0.elapsed();
    wait_for("every group to elect", Duration::from_secs(600), || {
        handles.iter().all(Floyd::has_leader)
    });
    let elected = t0.elapsed();
    let leads = handles.iter().filter(|f| f.is_leader()).count();
    println!(
        "host {index}: opened {groups} groups in {:.2} s, all with a leader after {:.2} s, leads {leads}",
        opened.as_secs_f64(),
        elected.as_secs_f64()
    );
    quiet::wait_until_quiet(args, &[&host], groups, t0);
    let leading: Vec<&Floyd> = handles.iter().filter(|f| f.is_leader()).collect();
    report_idle(&format!("host {index}, idle"), groups, args, &[&host], &leading);
    // Then stays up until the parent says every host has measured (closes stdin).
    println!("MEASURED");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(handles);
    host.close();
}

/// This program in `host` mode as host `index` of `ports`, with `dir` and
/// the timers and quiescence of `args`.
fn host_command(args: &[String], index: usize, ports: &[u16], dir: &std::path::Path) -> Command {
    let ports_arg = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["host", "--index", &index.to_string(), "--ports", &ports_arg])
        .args(["--groups", &num(args, "--groups", 1000).to_string()])
        .args(["--dir", dir.to_str().unwrap()])
        .args(["--heartbeat-ms", &num(args, "--heartbeat-ms", 100).to_string()])
        .args(["--election-ms", &num(args, "--election-ms", 1000).to_string()])
        .args(args.iter().filter(|a| *a == "--no-quiesce"));
    c
}

fn idle_in_processes(args: &[String]) {
    let hosts_n = num(args, "--hosts", 3) as usize;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(hosts_n);
    let children: Vec<_> = (0..hosts_n)
        .map(|i| {
            host_command(args, i, &ports, &dir.path().join(format!("h{i}")))
                .args(["--idle-secs", &num(args, "--idle-secs", 10).to_string()])
                .args([
                    "--writes-per-sec",
                    &(num(args, "--writes-per-sec", 0) / hosts_n as u64).to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a host process")
        })
        .collect();
    // Every host stays up until all have measured: a host that closes
    // early would wake the others' groups it is a member of.
    let mut children: Vec<_> = children
        .into_iter()
        .map(|mut c| {
            let out = std::io::BufReader::new(c.stdout.take().unwrap());
            for line in std::io::BufRead::lines(out).map_while(Result::ok) {
                if line == "MEASURED" {
                    break;
                }
                println!("{line}");
            }
            c
        })
        .collect();
    for child in &mut children {
        drop(child.stdin.take());
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a host process failed");
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU seconds of the hosts' threads by role, summed over the hosts, from
/// their metrics.
fn thread_cpu(hosts: &[Host]) -> Vec<(String, f64)> {
    let mut sums: std::collections::BTreeMap<String, f64> = Default::default();
    for h in hosts {
        for line in h.metrics().lines() {
            let Some(rest) = line.strip_prefix("floyd_thread_cpu_seconds_total{thread=\"") else {
                continue;
            };
            let Some((role, value)) = rest.split_once("\"} ") else {
                continue;
            };
            *sums.entry(role.to_string()).or_default() += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sums.into_iter().collect()
}

fn busy(args: &[String]) {
    let groups = num(args, "--groups", 8);
    let writers = num(args, "--writers", 64);
    let secs = num(args, "--secs", 10);
    let value = vec![b'v'; num(args, "--value-size", 128) as usize];
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let members = members(&ports);
    let hosts: Vec<Host> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| open_host(*p, &dir.path().join(format!("h{i}"))))
        .collect();
    let handles: Arc<Vec<Vec<Floyd>>> = Arc::new(
        hosts
            .iter()
            .map(|h| open_groups(h, &group_options(args, &members), groups))
            .collect(),
    );
    wait_for("every group to elect", Duration::from_secs(120), || {
        (0..groups as usize).all(|g| handles.iter().any(|hs| hs[g].is_leader()))
    });
    // Per group, the host whose member leads it.
    let leaders: Vec<usize> = (0..groups as usize)
        .map(|g| handles.iter().position(|hs| hs[g].is_leader()).unwrap())
        .collect();
    let syncs = |h: &Host| json_number(&h.status_json(), "log_syncs");
    let syncs0: Vec<u64> = hosts.iter().map(syncs).collect();
    let threads0 = thread_cpu(&hosts);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..writers)
        .map(|w| {
            let g = (w % groups) as usize;
            let (host, handles) = (leaders[g], handles.clone());
            let (stop, value) = (stop.clone(), value.clone());
            std::thread::spawn(move || {
                let f = &handles[host][g];
                let mut lat = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{i}");
                    let s = Instant::now();
                    if f.write(key.as_bytes(), &value).is_ok() {
                        lat.push(s.elapsed().as_micros() as u32);
                    }
                    i += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u32> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    lat.sort_unstable();
    let per_host: Vec<String> = hosts
        .iter()
        .zip(&syncs0)
        .map(|(h, s0)| format!("{:.0}", (syncs(h) - s0) as f64 / elapsed))
        .collect();
    println!(
        "busy: {groups} groups, {writers} writers: {:.0} writes/s | p50 {} µs p99 {} µs p99.9 {} µs | \
         log syncs/s per host [{}] | CPU {:.0} µs per write",
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        per_host.join(", "),
        cpu * 1e6 / lat.len().max(1) as f64
    );
    // Where it went: the hosts' threads by what they do (their
    // `floyd_thread_cpu_seconds_total`), the rest is RocksDB's and the writers'.
    let by_role: Vec<String> = thread_cpu(&hosts)
        .into_iter()
        .map(|(role, s)| {
            let before = threads0.iter().find(|(r, _)| *r == role).map_or(0.0, |x| x.1);
            (role, (s - before) * 1e6 / lat.len().max(1) as f64)
        })
        .filter(|(_, us)| *us >= 0.5)
        .map(|(role, us)| format!("{role} {us:.0}"))
        .collect();
    println!("  CPU µs per write by thread, all hosts: {}", by_role.join(", "));
    drop(handles);
    for h in &hosts {
        h.close();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("idle") if args.iter().any(|a| a == "--processes") => idle_in_processes(&args),
        Some("idle") => idle_in_process(&args),
        Some("host") => one_host(&args),
        Some("busy") => busy(&args),
        Some("failover") => quiet::failover(&args),
        _ => {
            eprintln!("usage: host_bench idle --groups N [--hosts 3] [--idle-secs 10] [--processes]");
            eprintln!("       host_bench busy --groups N --writers W [--secs 10] [--value-size 128]");
            std::process::exit(2);
        }
    }
}
