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
    fn spawn(members: &str, port: u16, path: &Path) -> NodeProcess {
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
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn floyd-node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut p = NodeProcess { child, stdin, stdout };
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

struct ProcessCluster {
    members: String,
    ports: Vec<u16>,
    dirs: Vec<PathBuf>,
    procs: Vec<Option<NodeProcess>>,
    _tmp: tempfile::TempDir,
}

impl ProcessCluster {
    fn start(n: usize) -> Self {
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
            procs: (0..n).map(|_| None).collect(),
            _tmp: tmp,
        };
        (0..n).for_each(|i| c.restart(i));
        c
    }

    fn restart(&mut self, i: usize) {
        self.procs[i] = Some(NodeProcess::spawn(&self.members, self.ports[i], &self.dirs[i]));
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
