//! Issue 23's measurements: waiting for idle groups to go quiet, the
//! heartbeats and wake-ups meanwhile, a trickle of writes into quiet groups
//! (each one wakes its group), and the failover of every group a killed
//! host process led.

use super::{free_ports, group_options, json_number, members, num, open_host, percentile, wait_for};
use floyd::{Floyd, Host};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Heartbeats sent, wake-ups, and frames of coalesced heartbeats so far,
/// summed over `hosts`.
pub fn counts(hosts: &[&Host]) -> (u64, u64, u64) {
    hosts.iter().fold((0, 0, 0), |(beats, wakes, frames), h| {
        let s = h.status_json();
        (
            beats + json_number(&s, "heartbeats_sent"),
            wakes + json_number(&s, "wakeups"),
            frames + json_number(&s, "coalesced_frames"),
        )
    })
}

fn quiet_members(hosts: &[&Host]) -> u64 {
    hosts
        .iter()
        .map(|h| json_number(&h.status_json(), "quiesced_groups"))
        .sum()
}

/// Unless `--no-quiesce`: waits until `expected` group members on `hosts`
/// are quiet, and says when they were (from `t0`).
pub fn wait_until_quiet(args: &[String], hosts: &[&Host], expected: u64, t0: Instant) {
    if args.iter().any(|a| a == "--no-quiesce") {
        return;
    }
    wait_for("every group to go quiet", Duration::from_secs(600), || {
        quiet_members(hosts) == expected
    });
    println!(
        "all {expected} group members quiet after {:.2} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Writes to handles picked at random, `rate` a second for `secs`, each
/// through a leader; a summary of their latencies ("" with a rate of 0).
pub fn trickle(handles: &[&Floyd], rate: u64, secs: Duration) -> String {
    if rate == 0 || handles.is_empty() {
        std::thread::sleep(secs);
        return String::new();
    }
    let t0 = Instant::now();
    let total = rate * secs.as_secs();
    let mut lat = Vec::with_capacity(total as usize);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let f = handles[(seed % handles.len() as u64) as usize];
        let s = Instant::now();
        if f.write(format!("k{i}").as_bytes(), &[b'v'; 128]).is_ok() {
            lat.push(s.elapsed().as_micros() as u32);
        }
    }
    std::thread::sleep(secs.saturating_sub(t0.elapsed()));
    lat.sort_unstable();
    format!(
        " | {} writes at {rate}/s: p50 {} µs p99 {} µs",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    )
}

/// `failover`: hosts 0 and 1 in this process, host 2 in a child process;
/// once every group is elected (and quiet, unless `--no-quiesce`), kills
/// the child with SIGKILL and times until every group it led has a leader
/// here.
pub fn failover(args: &[String]) {
    let groups = num(args, "--groups", 1000);
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(3);
    let members = members(&ports);
    let mut child = super::host_command(args, 2, &ports, &dir.path().join("h2"))
        .args(["--idle-secs", "3600"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the host process");
    let t0 = Instant::now();
    let hosts: Vec<Host> = (0..2)
        .map(|i| open_host(ports[i], &dir.path().join(format!("h{i}"))))
        .collect();
    let handles: Vec<Vec<Floyd>> = hosts
        .iter()
        .map(|h| {
            (1..=groups)
                .map(|g| h.open_group(g, group_options(args, &members)).unwrap())
                .collect()
        })
        .collect();
    wait_for("every group to elect", Duration::from_secs(600), || {
        handles.iter().all(|hs| hs.iter().all(Floyd::has_leader))
    });
    let host_refs: Vec<&Host> = hosts.iter().collect();
    wait_until_quiet(args, &host_refs, 2 * groups, t0);
    let dead = format!("127.0.0.1:{}", ports[2]);
    let led: Vec<usize> = (0..groups as usize)
        .filter(|g| handles[0][*g].get_leader().as_deref() == Some(dead.as_str()))
        .collect();
    child.kill().unwrap();
    let killed = Instant::now();
    let _ = child.wait();
    let mut elected_ms: Vec<u32> = Vec::with_capacity(led.len());
    let mut waiting = led.clone();
    while !waiting.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "groups left without a leader"
        );
        waiting.retain(|g| {
            let moved = (0..2).any(|h| handles[h][*g].is_leader());
            if moved {
                elected_ms.push(killed.elapsed().as_millis() as u32);
            }
            !moved
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    elected_ms.sort_unstable();
    println!(
        "failover: {groups} groups, {} led by the killed host: every one re-elected {} ms after the kill \
         (p50 {} ms); election timeout {} ms",
        led.len(),
        elected_ms.last().copied().unwrap_or(0),
        percentile(&elected_ms, 0.5),
        num(args, "--election-ms", 1000)
    );
    drop(handles);
    for h in &hosts {
        h.close();
    }
}
