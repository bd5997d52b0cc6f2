//! A cluster of raftis processes on loopback, for the raftis tests and the
//! fault harness: start, connect, find the leader, kill -9 and restart a
//! node on its own data, stop and continue it with signals.

use super::certs::Ca;
use super::{free_ports, DEADLINE};
use redis::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub child: Child,
    /// Its IP: the Raft, RESP and HTTP ports all listen there.
    pub ip: String,
    pub raft: String,
    pub port: u16,
    pub http: u16,
    /// Its stderr, shown when it never comes up.
    pub log: PathBuf,
}

pub struct Cluster {
    pub nodes: Vec<Option<Node>>,
    members: String,
    ips: Vec<String>,
    raft: Vec<String>,
    ports: Vec<u16>,
    /// Node `i`'s TLS files, when the members talk over mutual TLS.
    tls: Option<Vec<floyd::TlsFiles>>,
    /// Whether leaders serve GET on their lease (`--lease-reads`).
    lease_reads: bool,
    /// The raftis executable node `i` runs (tests/upgrade.rs mixes releases).
    bins: Vec<PathBuf>,
    /// More flags for every node (`--groups 4`, say).
    extra: Vec<String>,
    tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` raftis processes on 127.0.0.1 and waits until each answers PING.
    pub fn start(n: usize) -> Cluster {
        Self::start_with_binary(n, Path::new(env!("CARGO_BIN_EXE_raftis")))
    }

    /// [`Cluster::start`] with another raftis executable (an older release).
    pub fn start_with_binary(n: usize, bin: &Path) -> Cluster {
        Self::start_on(vec!["127.0.0.1".to_string(); n], false, false, bin, &[])
    }

    /// [`Cluster::start`], every node given `extra` flags too.
    pub fn start_with_args(n: usize, extra: &[&str]) -> Cluster {
        let bin = Path::new(env!("CARGO_BIN_EXE_raftis"));
        Self::start_on(vec!["127.0.0.1".to_string(); n], false, false, bin, extra)
    }

    /// Starts `n` raftis processes, node `i` on its own address
    /// 127.0.`b`.`11+i` (so a firewall can cut pairs of nodes apart; `b`
    /// differs for every cluster of this process, so the rules of one never
    /// touch another), and waits until each answers PING.
    pub fn start_apart(n: usize) -> Cluster {
        Self::start_apart_with(n, false, false)
    }

    /// [`Cluster::start_apart`], the members talking over mutual TLS if
    /// `tls` (a CA made for the run, a certificate per node naming its IP),
    /// leaders serving reads on their lease if `lease_reads`.
    pub fn start_apart_with(n: usize, tls: bool, lease_reads: bool) -> Cluster {
        Self::start_apart_with_binary(n, tls, lease_reads, Path::new(env!("CARGO_BIN_EXE_raftis")))
    }

    /// [`Cluster::start_apart_with`] with another raftis executable (an older release).
    pub fn start_apart_with_binary(n: usize, tls: bool, lease_reads: bool, bin: &Path) -> Cluster {
        Self::start_apart_with_args(n, tls, lease_reads, bin, &[])
    }

    /// [`Cluster::start_apart_with_binary`], every node given `extra` flags too.
    pub fn start_apart_with_args(
        n: usize,
        tls: bool,
        lease_reads: bool,
        bin: &Path,
        extra: &[&str],
    ) -> Cluster {
        use std::sync::atomic::{AtomicU32, Ordering};
        static BLOCK: AtomicU32 = AtomicU32::new(1);
        let b = BLOCK.fetch_add(1, Ordering::Relaxed);
        assert!(b < 255, "out of loopback address blocks");
        Self::start_on(
            (0..n).map(|i| format!("127.0.{b}.{}", 11 + i)).collect(),
            tls,
            lease_reads,
            bin,
            extra,
        )
    }

    fn start_on(ips: Vec<String>, tls: bool, lease_reads: bool, bin: &Path, extra: &[&str]) -> Cluster {
        let n = ips.len();
        let tmp = tempfile::tempdir().unwrap();
        let tls = tls.then(|| {
            let ca = Ca::new(tmp.path(), "tls");
            ips.iter()
                .enumerate()
                .map(|(i, ip)| ca.member(&format!("n{i}"), ip, false))
                .collect()
        });
        let ports = free_ports(3 * n);
        let raft: Vec<String> = ips
            .iter()
            .zip(&ports)
            .map(|(ip, p)| format!("{ip}:{p}"))
            .collect();
        let mut c = Cluster {
            nodes: (0..n).map(|_| None).collect(),
            members: raft.join(","),
            ips,
            raft,
            ports,
            tls,
            lease_reads,
            bins: vec![bin.to_path_buf(); n],
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tmp,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            let mut con = c.connect(i);
            let pong: String = redis::cmd("PING").query(&mut con).unwrap();
            assert_eq!(pong, "PONG");
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let n = self.raft.len();
        let (port, http) = (self.ports[n + i], self.ports[2 * n + i]);
        let dir = self.tmp.path().join(format!("n{i}"));
        let log = dir.with_extension("stderr");
        // Appended: a restarted node's stderr follows its earlier life's.
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(&self.bins[i]);
        if let Some(files) = &self.tls {
            cmd.arg("--tls-ca")
                .arg(&files[i].ca)
                .arg("--tls-cert")
                .arg(&files[i].cert)
                .arg("--tls-key")
                .arg(&files[i].key);
        }
        if self.lease_reads {
            cmd.arg("--lease-reads");
        }
        let child = cmd
            .args(["--members", &self.members, "--local", &self.raft[i]])
            .arg("--path")
            .arg(&dir)
            .args(["--port", &port.to_string(), "--http-port", &http.to_string()])
            .args(["--heartbeat-us", "30000", "--check-leader-us", "300000"])
            .arg("--fault-injection")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn raftis");
        self.nodes[i] = Some(Node {
            child,
            ip: self.ips[i].clone(),
            raft: self.raft[i].clone(),
            port,
            http,
            log,
        });
    }

    /// Copies every node's LOG files and stderr into `dest` (for a failure's
    /// diagnosis: the cluster's own directory goes with it).
    pub fn keep_logs(&self, dest: &Path) {
        let _ = std::fs::create_dir_all(dest);
        for i in 0..self.raft.len() {
            let dir = self.tmp.path().join(format!("n{i}"));
            let _ = std::fs::copy(dir.with_extension("stderr"), dest.join(format!("n{i}.stderr")));
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("LOG") {
                    let _ = std::fs::copy(e.path(), dest.join(format!("n{i}-{name}")));
                }
            }
        }
    }

    /// Node `i`'s data directory.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("n{i}"))
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("running")
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .collect()
    }

    /// The RESP port of node `i`, running or not.
    pub fn port(&self, i: usize) -> u16 {
        self.ports[self.raft.len() + i]
    }

    /// The RESP address `ip:port` of node `i`, running or not.
    pub fn resp_addr(&self, i: usize) -> String {
        format!("{}:{}", self.ips[i], self.port(i))
    }

    /// The IP node `i` listens on and dials its peers from.
    pub fn ip(&self, i: usize) -> &str {
        &self.ips[i]
    }

    /// A connection to node `i`, waiting until it listens.
    pub fn connect(&self, i: usize) -> Connection {
        let url = format!("redis://{}:{}/", self.node(i).ip, self.node(i).port);
        let client = redis::Client::open(url).unwrap();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match client.get_connection_with_timeout(Duration::from_secs(5)) {
                Ok(con) => {
                    con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    return con;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "node {i} never listened: {e}; its stderr:\n{}",
                    std::fs::read_to_string(&self.node(i).log).unwrap_or_default()
                ),
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// Index of the leader every running node names.
    pub fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + DEADLINE;
        let mut cons: Vec<(usize, Connection)> =
            self.running().into_iter().map(|i| (i, self.connect(i))).collect();
        loop {
            assert!(Instant::now() < deadline, "no agreed leader");
            let views: Vec<Option<String>> = cons
                .iter_mut()
                .map(|(_, c)| redis::cmd("FLOYD.LEADER").query(c).unwrap())
                .collect();
            if let Some(Some(l)) = views.first() {
                if views.iter().all(|v| v.as_deref() == Some(l.as_str())) {
                    if let Some((i, _)) = cons.iter().find(|(i, _)| &self.node(*i).raft == l) {
                        return *i;
                    }
                }
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    /// The leader node `i` names now, by index, if any.
    pub fn leader_seen_by(&self, i: usize) -> Option<usize> {
        let mut con = self.connect(i);
        let l: Option<String> = redis::cmd("FLOYD.LEADER").query(&mut con).ok()?;
        self.raft.iter().position(|r| Some(r) == l.as_ref())
    }

    /// `kill -9` of node `i`.
    pub fn kill9(&mut self, i: usize) {
        let mut n = self.nodes[i].take().expect("running");
        n.child.kill().unwrap();
        n.child.wait().unwrap();
    }

    /// Stops node `i` cleanly (SIGTERM) and waits until it exited 0.
    pub fn stop(&mut self, i: usize) {
        self.signal(i, libc::SIGTERM);
        let mut n = self.nodes[i].take().expect("running");
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = n.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "node {i} did not exit on SIGTERM");
            std::thread::park_timeout(Duration::from_millis(20));
        };
        assert!(status.success(), "node {i} exited with {status}");
    }

    /// The raftis executable node `i` runs from its next (re)start on.
    pub fn set_binary(&mut self, i: usize, bin: &Path) {
        self.bins[i] = bin.to_path_buf();
    }

    /// Starts node `i` again on its own data and ports.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is running");
        self.spawn(i);
    }

    /// Node `i` cuts its own link to node `peer` for `d` (one direction).
    pub fn cut(&self, i: usize, peer: usize, d: Duration) {
        let mut con = self.connect(i);
        let ok: String = redis::cmd("FLOYD.DEBUG.CUT")
            .arg(&self.raft[peer])
            .arg(d.as_millis() as u64)
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, "OK");
    }

    /// Every synced log write of node `i` waits `d` first (zero: back to normal).
    pub fn slow_disk(&self, i: usize, d: Duration) {
        let mut con = self.connect(i);
        let ok: String = redis::cmd("FLOYD.DEBUG.SLOWDISK")
            .arg(d.as_millis() as u64)
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, "OK");
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to node `i`.
    pub fn signal(&self, i: usize, signal: libc::c_int) {
        let pid = self.node(i).child.id() as libc::pid_t;
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut().filter_map(Option::take) {
            let mut child = n.child;
            // (A stopped process dies of SIGKILL too.)
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
