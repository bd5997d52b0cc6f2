//! Nodes as separate processes, killed with SIGKILL: an acknowledged write
//! survives `kill -9` of a minority (the leader included) and of the whole cluster.

mod common;

use common::{free_ports, DEADLINE};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

struct NodeProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl NodeProcess {
    /// Starts a node and waits for its `READY`; with `may_crash`, a node
    /// that aborts at a failpoint before it could say so (a snapshot sent
    /// to it as soon as it listens) is accepted too.
    fn spawn(members: &str, port: u16, path: &Path, extra: &[String], may_crash: bool) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floyd-node"))
            .args([
                "--members",
                members,
                "--ip",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--path")
            .arg(path)
            .args(["--heartbeat-us", "30000", "--check-leader-us", "300000"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn floyd-node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut p = NodeProcess { child, stdin, stdout };
        let first = p.read_line();
        if !(may_crash && first.is_empty()) {
            assert_eq!(first, "READY");
        }
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

struct ProcessCluster {
    members: String,
    ports: Vec<u16>,
    dirs: Vec<PathBuf>,
    /// Extra floyd-node arguments per node, for its next start.
    extra: Vec<Vec<String>>,
    procs: Vec<Option<NodeProcess>>,
    _tmp: tempfile::TempDir,
}

impl ProcessCluster {
    fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// Every node started with `args` too.
    fn start_with(n: usize, args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let ports = free_ports(n);
        let members = ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let dirs = (0..n).map(|i| tmp.path().join(format!("n{i}"))).collect();
        let mut c = ProcessCluster {
            members,
            ports,
            dirs,
            extra: (0..n)
                .map(|_| args.iter().map(|a| a.to_string()).collect())
                .collect(),
            procs: (0..n).map(|_| None).collect(),
            _tmp: tmp,
        };
        (0..n).for_each(|i| c.restart(i));
        c
    }

    fn restart(&mut self, i: usize) {
        self.launch(i, false);
    }

    fn launch(&mut self, i: usize, may_crash: bool) {
        self.procs[i] = Some(NodeProcess::spawn(
            &self.members,
            self.ports[i],
            &self.dirs[i],
            &self.extra[i],
            may_crash,
        ));
    }

    fn kill9(&mut self, i: usize) {
        self.procs[i].take().expect("running").kill9();
    }

    fn proc(&mut self, i: usize) -> &mut NodeProcess {
        self.procs[i].as_mut().expect("running")
    }

    /// Index of the leader all running nodes agree on.
    fn wait_for_leader(&mut self) -> usize {
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < deadline, "no agreed leader");
            let running: Vec<usize> = (0..self.procs.len())
                .filter(|i| self.procs[*i].is_some())
                .collect();
            let views: Vec<String> = running.iter().map(|i| self.proc(*i).call("leader")).collect();
            if views.iter().all(|v| v == &views[0] && v.len() > 3) {
                let addr = &views[0][3..];
                if let Some(i) = self.ports.iter().position(|p| addr.ends_with(&format!(":{p}"))) {
                    if self.procs[i].is_some() {
                        return i;
                    }
                }
            }
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        }
    }

    /// Writes through node `i` until acknowledged (retrying only errors that
    /// say "not applied" or "unknown"; an unknown write is simply written again).
    fn put_acknowledged(&mut self, i: usize, key: &str, value: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let reply = self.proc(i).call(&format!("put {key} {value}"));
            if reply == "OK" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "write of {key} never acknowledged: {reply}"
            );
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().filter_map(Option::take) {
            p.kill9();
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_of_the_leader_and_of_the_whole_cluster() {
    let mut c = ProcessCluster::start(3);
    let leader = c.wait_for_leader();
    let mut acknowledged = Vec::new();
    for i in 0..60 {
        let via = i % 3;
        c.put_acknowledged(via, &format!("k{i}"), &format!("v{i}"));
        acknowledged.push(i);
    }
    c.kill9(leader);
    let new_leader = c.wait_for_leader();
    assert_ne!(new_leader, leader);
    for i in 60..120 {
        c.put_acknowledged(new_leader, &format!("k{i}"), &format!("v{i}"));
        acknowledged.push(i);
    }
    c.restart(leader);
    // The whole cluster dies at once, then comes back.
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.wait_for_leader();
    for i in acknowledged {
        let reply = c.proc(i % 3).call(&format!("get k{i}"));
        assert_eq!(reply, format!("OK v{i}"), "acknowledged write k{i} lost");
    }
}

#[test]
fn a_frozen_leader_is_replaced_and_rejoins_as_a_follower_without_losing_writes() {
    let mut c = ProcessCluster::start(3);
    let old = c.wait_for_leader();
    c.put_acknowledged(old, "before", "freeze");
    let pid = c.proc(old).child.id() as libc::pid_t;
    // SIGSTOP: the process keeps its sockets but says nothing, like a long GC pause.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let others: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let deadline = Instant::now() + DEADLINE;
    let new = loop {
        assert!(
            Instant::now() < deadline,
            "no new leader while the old one is frozen"
        );
        let view = c.proc(others[0]).call("leader");
        let leader = c.ports.iter().position(|p| view.ends_with(&format!(":{p}")));
        if let Some(l) = leader.filter(|l| *l != old) {
            break l;
        }
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    };
    c.put_acknowledged(new, "during", "freeze");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    // The old leader learns the newer term, steps down and catches up.
    assert_eq!(c.wait_for_leader(), new);
    let deadline = Instant::now() + DEADLINE;
    while c.proc(old).call("dirty during") != "OK freeze" {
        assert!(Instant::now() < deadline, "the old leader never caught up");
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    }
    assert_eq!(c.proc(old).call("get before"), "OK freeze");
}

/// floyd-node's `transfer` command (dissertation §3.10), asked of a follower.
#[test]
fn section_3_10_the_transfer_command_hands_leadership_to_the_named_node() {
    let mut c = ProcessCluster::start(3);
    let old = c.wait_for_leader();
    c.put_acknowledged(old, "before", "transfer");
    let target = (old + 1) % 3;
    let via = (old + 2) % 3;
    let name = format!("127.0.0.1:{}", c.ports[target]);
    assert_eq!(c.proc(via).call(&format!("transfer {name}")), "OK");
    assert_eq!(c.wait_for_leader(), target);
    let refused = c.proc(target).call("transfer 127.0.0.1:1");
    assert!(refused.starts_with("ERR InvalidArgument"), "{refused}");
    c.put_acknowledged(old, "after", "transfer");
    assert_eq!(c.proc(target).call("get before"), "OK transfer");
}

#[test]
fn a_leader_cut_off_from_its_majority_steps_down_and_serves_nothing() {
    let mut c = ProcessCluster::start(3);
    let leader = c.wait_for_leader();
    c.put_acknowledged(leader, "k", "v");
    let followers: Vec<libc::pid_t> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| c.proc(i).child.id() as libc::pid_t)
        .collect();
    for pid in &followers {
        assert_eq!(unsafe { libc::kill(*pid, libc::SIGSTOP) }, 0);
    }
    // Check-quorum: without a majority the leader steps down within an election timeout.
    let deadline = Instant::now() + DEADLINE;
    while c.proc(leader).call("leader") != "OK" {
        assert!(
            Instant::now() < deadline,
            "the isolated leader never stepped down"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(20));
    }
    let reply = c.proc(leader).call("get k");
    assert!(
        reply.starts_with("ERR NoLeader") || reply.starts_with("ERR Timeout"),
        "{reply}"
    );
    for pid in &followers {
        assert_eq!(unsafe { libc::kill(*pid, libc::SIGCONT) }, 0);
    }
    let leader = c.wait_for_leader();
    assert_eq!(c.proc(leader).call("get k"), "OK v");
}

/// Small snapshot thresholds: a few hundred writes go through several snapshots.
const COMPACTING: [&str; 4] = ["--snapshot-entries", "100", "--snapshot-keep", "10"];

impl ProcessCluster {
    /// Restarts node `i` with `--crash-at failpoint` and waits until it aborts there.
    fn restart_crashing_at(&mut self, i: usize, failpoint: &str, mut load: impl FnMut(&mut Self)) {
        let normal = self.extra[i].clone();
        self.extra[i].extend(["--crash-at".to_string(), failpoint.to_string()]);
        self.launch(i, true);
        self.extra[i] = normal;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let exited = self.procs[i].as_mut().unwrap().child.try_wait().unwrap();
            if let Some(status) = exited {
                // Aborted at the failpoint (not exited for another reason,
                // before or after it said READY).
                assert_eq!(
                    std::os::unix::process::ExitStatusExt::signal(&status),
                    Some(libc::SIGABRT),
                    "node {i} exited ({status}) instead of crashing at {failpoint}"
                );
                self.procs[i] = None;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {i} never reached failpoint {failpoint}"
            );
            load(self);
        }
    }

    /// Waits until node `i` has applied `key` = `value`.
    fn wait_applied(&mut self, i: usize, key: &str, value: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self.proc(i).call(&format!("dirty {key}")) != format!("OK {value}") {
            assert!(Instant::now() < deadline, "node {i} never applied {key}={value}");
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        }
    }
}

/// Kill -9 in the middle of taking a snapshot (files staged, or committed
/// before the log was compacted): the node restarts and converges, and
/// every acknowledged write is there.
#[test]
fn section7_kill_9_while_a_snapshot_is_taken_loses_nothing() {
    for failpoint in ["snapshot-staged", "snapshot-committed"] {
        let mut c = ProcessCluster::start_with(3, &COMPACTING);
        let leader = c.wait_for_leader();
        let victim = (leader + 1) % 3;
        c.kill9(victim);
        let mut n = 0;
        c.restart_crashing_at(victim, failpoint, |c| {
            c.put_acknowledged(leader, &format!("k{}", n % 50), &format!("v{n}"));
            n += 1;
        });
        c.put_acknowledged(leader, "last", "write");
        c.restart(victim);
        c.wait_applied(victim, "last", "write");
        for k in 0..50.min(n) {
            let last = (0..n).rev().find(|i| i % 50 == k).unwrap();
            assert_eq!(
                c.proc(victim).call(&format!("dirty k{k}")),
                format!("OK v{last}"),
                "{failpoint}"
            );
        }
    }
}

/// Kill -9 while a snapshot streams in, once it is whole on disk, and once
/// the log was reset to it but before the state machine loaded it: each
/// time the follower restarts and converges.
#[test]
fn section7_kill_9_during_a_snapshot_install_then_the_follower_converges() {
    let mut c = ProcessCluster::start_with(3, &COMPACTING);
    let leader = c.wait_for_leader();
    let f = (leader + 1) % 3;
    let mut n = 0;
    for failpoint in ["install-received", "install-reset"] {
        if c.procs[f].is_some() {
            c.kill9(f);
        }
        for _ in 0..400 {
            c.put_acknowledged(leader, &format!("k{}", n % 50), &format!("v{n}"));
            n += 1;
        }
        c.restart_crashing_at(f, failpoint, |_| {
            std::thread::park_timeout(std::time::Duration::from_millis(10))
        });
    }
    // In the middle of the stream: a slow transfer, killed while it runs.
    for _ in 0..400 {
        c.put_acknowledged(leader, &format!("k{}", n % 50), &format!("v{n}"));
        n += 1;
    }
    c.extra[leader].extend(["--snapshot-rate".to_string(), "20000".to_string()]);
    c.kill9(leader);
    c.restart(leader);
    let leader = c.wait_for_leader();
    c.put_acknowledged(leader, "last", "write");
    c.restart(f);
    let snapshots = c.dirs[f].join("snapshots");
    let deadline = Instant::now() + DEADLINE;
    let streaming = || {
        std::fs::read_dir(&snapshots)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tmp-incoming"))
            })
            .unwrap_or(false)
    };
    while !streaming() && c.proc(f).call("dirty last") != "OK write" {
        assert!(Instant::now() < deadline, "no snapshot stream to the follower");
        std::thread::park_timeout(std::time::Duration::from_millis(5));
    }
    c.kill9(f);
    c.restart(f);
    c.wait_applied(f, "last", "write");
    for k in 0..50 {
        let last = (0..n).rev().find(|i| i % 50 == k).unwrap();
        assert_eq!(c.proc(f).call(&format!("dirty k{k}")), format!("OK v{last}"));
    }
}
