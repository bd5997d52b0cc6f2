//! Hosts of many groups as separate processes (`floyd-node --groups N`),
//! one killed with SIGKILL (issue 21): every group it led elects a new
//! leader among the others and serves, and after its restart every
//! acknowledged write of every group is on every member. With quiet groups
//! (issue 23): every group goes quiet, and the groups a killed host led
//! still elect elsewhere, the survivors noticing by its link alone.

mod common;

use common::{free_ports, DEADLINE};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct HostProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl HostProcess {
    fn spawn(members: &str, port: u16, path: &Path, groups: u64) -> HostProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floyd-node"))
            .args(["--members", members, "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .arg("--path")
            .arg(path)
            .args(["--heartbeat-us", "30000", "--check-leader-us", "300000"])
            .args(["--groups", &groups.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn floyd-node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut p = HostProcess { child, stdin, stdout };
        assert_eq!(p.read_line(), "READY");
        p
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from floyd-node");
        line.trim_end().to_string()
    }

    fn call(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.read_line()
    }

    fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL: no close, no flush
        self.child.wait().unwrap();
    }
}

struct ProcessHosts {
    groups: u64,
    members: String,
    ports: Vec<u16>,
    dirs: Vec<PathBuf>,
    procs: Vec<Option<HostProcess>>,
    _tmp: tempfile::TempDir,
}

impl ProcessHosts {
    fn start(n: usize, groups: u64) -> ProcessHosts {
        let tmp = tempfile::tempdir().unwrap();
        let ports = free_ports(n);
        let members = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut h = ProcessHosts {
            groups,
            members,
            dirs: (0..n).map(|i| tmp.path().join(format!("h{i}"))).collect(),
            ports,
            procs: (0..n).map(|_| None).collect(),
            _tmp: tmp,
        };
        (0..n).for_each(|i| h.restart(i));
        h
    }

    fn restart(&mut self, i: usize) {
        self.procs[i] = Some(HostProcess::spawn(
            &self.members,
            self.ports[i],
            &self.dirs[i],
            self.groups,
        ));
    }

    fn kill9(&mut self, i: usize) {
        self.procs[i].take().expect("running").kill9();
    }

    fn proc(&mut self, i: usize) -> &mut HostProcess {
        self.procs[i].as_mut().expect("running")
    }

    fn running(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].is_some())
            .collect()
    }

    fn id(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// The groups host `i` leads.
    fn leaders(&mut self, i: usize) -> Vec<u64> {
        let reply = self.proc(i).call("leaders");
        let list = reply
            .strip_prefix("OK")
            .unwrap_or_else(|| panic!("leaders: {reply}"));
        list.trim()
            .split(',')
            .filter(|g| !g.is_empty())
            .map(|g| g.parse().unwrap())
            .collect()
    }

    /// Waits until every group has one leader among the running hosts that
    /// every running host agrees on; returns each group's leader.
    fn wait_every_group_led(&mut self) -> BTreeMap<u64, usize> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let running = self.running();
            let mut led: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for &i in &running {
                for g in self.leaders(i) {
                    led.entry(g).or_default().push(i);
                }
            }
            let agreed = (1..=self.groups).all(|g| match led.get(&g).map(Vec::as_slice) {
                Some(&[l]) => {
                    let want = format!("OK {}", self.id(l));
                    running
                        .iter()
                        .all(|&i| self.proc(i).call(&format!("g {g} leader")) == want)
                }
                _ => false,
            });
            if agreed {
                return led.into_iter().map(|(g, l)| (g, l[0])).collect();
            }
            assert!(
                Instant::now() < deadline,
                "not every group has an agreed leader: {led:?}"
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Kills (SIGKILL) the host leading the most groups of `led` (each
    /// group's leader); returns it and the groups it led.
    fn kill9_busiest_leader(&mut self, led: &BTreeMap<u64, usize>) -> (usize, Vec<u64>) {
        let victim = (0..self.procs.len())
            .max_by_key(|&i| led.values().filter(|&&l| l == i).count())
            .unwrap();
        let orphaned: Vec<u64> = led
            .iter()
            .filter(|(_, &l)| l == victim)
            .map(|(&g, _)| g)
            .collect();
        assert!(!orphaned.is_empty());
        self.kill9(victim);
        (victim, orphaned)
    }

    /// Waits until host `i` holds `value` under `key` in `group` (a local read).
    fn wait_caught_up(&mut self, i: usize, group: u64, key: &str, value: &str) {
        let (want, deadline) = (format!("OK {value}"), Instant::now() + DEADLINE);
        while self.proc(i).call(&format!("g {group} dirty {key}")) != want {
            assert!(
                Instant::now() < deadline,
                "group {group} never caught up on host {i}"
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    /// Waits until every group is quiet on every running host.
    fn wait_every_group_quiet(&mut self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let quiet: Vec<u64> = self
                .running()
                .into_iter()
                .map(|i| {
                    let status = self.proc(i).call("hoststatus");
                    let n = status.split("\"quiesced_groups\":").nth(1).unwrap_or("");
                    n.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap_or(0)
                })
                .collect();
            if quiet.iter().all(|&q| q == self.groups) {
                return;
            }
            assert!(Instant::now() < deadline, "quiet groups per host: {quiet:?}");
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Writes through host `i` until acknowledged (an unknown outcome is
    /// simply written again).
    fn put_acknowledged(&mut self, i: usize, group: u64, key: &str, value: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let reply = self.proc(i).call(&format!("g {group} put {key} {value}"));
            if reply == "OK" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "write of {key} to group {group} never acknowledged: {reply}"
            );
        }
    }
}

impl Drop for ProcessHosts {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().filter_map(Option::take) {
            p.kill9();
        }
    }
}

#[test]
fn every_group_led_by_a_host_killed_with_sigkill_elects_anew_and_no_acknowledged_write_is_lost() {
    let mut h = ProcessHosts::start(3, 20);
    let groups = h.groups;
    let led = h.wait_every_group_led();
    let mut acknowledged: Vec<(u64, String, String)> = Vec::new();
    for g in 1..=groups {
        for k in 0..4 {
            let (key, value) = (format!("k{k}"), format!("v{g}-{k}"));
            h.put_acknowledged((g as usize + k) % 3, g, &key, &value);
            acknowledged.push((g, key, value));
        }
    }

    let (victim, orphaned) = h.kill9_busiest_leader(&led);
    let after = h.wait_every_group_led();
    for g in &orphaned {
        assert_ne!(after[g], victim, "group {g}");
    }
    // Every group serves through the survivors.
    let survivors = h.running();
    for g in 1..=groups {
        for k in 4..7 {
            let (key, value) = (format!("k{k}"), format!("v{g}-{k}"));
            h.put_acknowledged(survivors[k % 2], g, &key, &value);
            acknowledged.push((g, key, value));
        }
    }

    // Back from its data: every group catches up on it, and every
    // acknowledged write is on every member.
    h.restart(victim);
    h.wait_every_group_led();
    for g in 1..=groups {
        h.wait_caught_up(victim, g, "k6", &format!("v{g}-6"));
    }
    for i in 0..3 {
        for (g, key, value) in &acknowledged {
            let reply = h.proc(i).call(&format!("g {g} dirty {key}"));
            assert_eq!(reply, format!("OK {value}"), "group {g} on host {i}: {key} lost");
        }
    }
    for (g, key, value) in acknowledged.iter().filter(|(g, ..)| orphaned.contains(g)) {
        let reply = h.proc(victim).call(&format!("g {g} get {key}"));
        assert_eq!(reply, format!("OK {value}"), "group {g}: {key}");
    }
}

/// Issue 23: 3 host processes, 200 groups. Every group goes quiet; a host
/// killed with SIGKILL is noticed by its link alone (quiet followers hear no
/// heartbeats to miss), every group it led elects elsewhere and serves; once
/// it is back, every group catches up on it and goes quiet again.
#[test]
fn quiet_groups_led_by_a_killed_host_elect_elsewhere_and_go_quiet_again_after_its_restart() {
    let mut h = ProcessHosts::start(3, 200);
    let led = h.wait_every_group_led();
    h.wait_every_group_quiet();
    let (victim, orphaned) = h.kill9_busiest_leader(&led);
    let after = h.wait_every_group_led();
    let survivors = h.running();
    for g in &orphaned {
        assert_ne!(after[g], victim, "group {g}");
        h.put_acknowledged(survivors[*g as usize % 2], *g, "after", "kill");
    }
    h.restart(victim);
    h.wait_every_group_led();
    for g in &orphaned {
        h.wait_caught_up(victim, *g, "after", "kill");
    }
    h.wait_every_group_quiet();
}
