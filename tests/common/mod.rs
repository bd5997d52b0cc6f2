//! A local cluster of in-process nodes on loopback, for integration tests.
//! Everything waits on conditions with deadlines; nothing sleeps a fixed time.
#![allow(dead_code)]

pub mod certs;
pub mod hosts;
pub mod metrics_text;
pub mod raftis;
pub mod raftis_client;
pub mod redis_cluster;
pub mod watch_stream;

use floyd::{Error, Floyd, Options, StateMachine};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Generous: CI machines have two cores and tests run in parallel.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds or `DEADLINE` passes; panics with `what` on timeout.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// Retries a call while it fails with a retryable error (`NoLeader`, `Busy`:
/// certainly not applied), until [`DEADLINE`]; then, or on any other
/// outcome, returns it.
pub fn retrying<T>(mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f() {
            Err(e) if e.is_retryable() && Instant::now() < deadline => std::thread::yield_now(),
            other => return other,
        }
    }
}

/// `n` ports that were free a moment ago on 127.0.0.1.
///
/// Taken below the kernel's ephemeral range (32768-60999 on Linux): a port
/// from `bind(0)` is released before the node binds it, and in that gap any
/// outgoing connection of a parallel test may take it as its local port.
/// Ports here are handed out once per process (a counter), and checked free.
pub fn free_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Processes of one run (test binaries, their children) start apart.
    let start = (std::process::id().wrapping_mul(2_654_435_761) >> 8) % SPAN;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(k < SPAN, "no free ports left below the ephemeral range");
        let port = (LOW + (start + k) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out.push(port);
        }
    }
    out
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ports: Vec<u16>,
    pub nodes: Vec<Option<Floyd>>,
    /// The first `initial` ports are the bootstrap members; the rest are
    /// for nodes added later.
    pub initial: usize,
    /// Options a node was first opened with, if not the default ones: a
    /// restart reuses them.
    pub custom: Vec<Option<Options>>,
}

impl Cluster {
    /// Starts `n` nodes with test-speed timers.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_partial(n, n)
    }

    /// Reserves ports for `total` nodes and starts the first `initial` as the cluster.
    pub fn start_partial(total: usize, initial: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(total);
        let mut c = Cluster {
            dir,
            ports,
            nodes: (0..total).map(|_| None).collect(),
            initial,
            custom: (0..total).map(|_| None).collect(),
        };
        for i in 0..initial {
            c.restart(i);
        }
        c
    }

    /// Starts `n` nodes that run user-defined state machines, `machine(i)` on node `i`.
    pub fn start_with_machines(n: usize, mut machine: impl FnMut(usize) -> Box<dyn StateMachine>) -> Cluster {
        let mut c = Cluster::start_partial(n, 0);
        c.initial = n;
        for i in 0..n {
            c.open_machine(i, machine(i));
        }
        c
    }

    /// (Re)opens node `i` from its data directory, running the user-defined `machine`.
    pub fn open_machine(&mut self, i: usize, machine: Box<dyn StateMachine>) {
        assert!(self.nodes[i].is_none());
        let opts = self.custom[i].clone().unwrap_or_else(|| self.options(i));
        self.nodes[i] = Some(Floyd::open_with_state_machine(opts, machine).expect("open node"));
    }

    /// Starts `n` nodes with options changed by `tweak` (kept for restarts).
    pub fn start_tweaked(n: usize, tweak: impl Fn(Options) -> Options) -> Cluster {
        let mut c = Cluster::start_partial(n, 0);
        c.initial = n;
        for i in 0..n {
            let o = tweak(c.options(i));
            c.open_with(i, o);
        }
        c
    }

    /// Opens node `i` with `opts` (kept for its restarts).
    pub fn open_with(&mut self, i: usize, opts: Options) {
        assert!(self.nodes[i].is_none());
        self.custom[i] = Some(opts.clone());
        self.nodes[i] = Some(Floyd::open(opts).expect("open node"));
    }

    /// The bootstrap member list.
    pub fn members(&self) -> String {
        self.ports[..self.initial]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn id(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    pub fn options(&self, i: usize) -> Options {
        let mut o = Options::new(&self.members(), "127.0.0.1", self.ports[i], self.path(i));
        o.heartbeat_us = 30_000;
        o.check_leader_us = 300_000;
        o.request_timeout = Duration::from_secs(10);
        o.leader_wait = Duration::from_secs(5);
        o
    }

    pub fn path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    /// (Re)starts node `i` from its data directory.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none());
        let opts = self.custom[i].clone().unwrap_or_else(|| self.options(i));
        self.nodes[i] = Some(Floyd::open(opts).expect("open node"));
    }

    /// Stops node `i` (its data stays).
    pub fn stop(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.close();
        }
    }

    pub fn node(&self, i: usize) -> &Floyd {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &Floyd)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Waits until exactly one running node leads and every running node agrees on it.
    pub fn wait_for_leader(&self) -> usize {
        let mut leader = 0;
        wait_until("one agreed leader", || {
            let leaders: Vec<usize> = self
                .running()
                .filter(|(_, n)| n.is_leader())
                .map(|(i, _)| i)
                .collect();
            if leaders.len() != 1 {
                return false;
            }
            leader = leaders[0];
            let id = self.id(leader);
            self.running()
                .all(|(_, n)| n.get_leader().as_deref() == Some(id.as_str()))
        });
        leader
    }

    /// Waits until one of `among` leads and all of them agree on it.
    pub fn wait_for_leader_among(&self, among: &[usize]) -> usize {
        let mut leader = 0;
        wait_until("one agreed leader", || {
            let leaders: Vec<usize> = among
                .iter()
                .copied()
                .filter(|i| self.node(*i).is_leader())
                .collect();
            if leaders.len() != 1 {
                return false;
            }
            leader = leaders[0];
            let id = self.id(leader);
            among
                .iter()
                .all(|i| self.node(*i).get_leader().as_deref() == Some(id.as_str()))
        });
        leader
    }

    /// Some running node that is not `leader`.
    pub fn follower_of(&self, leader: usize) -> usize {
        self.running()
            .map(|(i, _)| i)
            .find(|i| *i != leader)
            .expect("a follower")
    }

    /// Retries a write that failed with a retryable error, and after a
    /// timeout too: writing the same value twice is harmless here (in general
    /// a timed-out write may have been applied, so it is not retry-safe).
    pub fn write_retrying(&self, i: usize, key: &[u8], value: &[u8]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.node(i).write(key, value) {
                Ok(()) => return,
                Err(e)
                    if (e.is_retryable() || matches!(e, Error::Timeout(_))) && Instant::now() < deadline =>
                {
                    continue
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }

    /// Waits until node `i` has applied everything the leader has.
    pub fn wait_caught_up(&self, i: usize, leader: usize) {
        wait_until("follower catching up", || {
            let l = self.node(leader).server_status();
            let f = self.node(i).server_status();
            f.last_applied >= l.commit_index && f.last_log_index >= l.commit_index
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut().filter_map(Option::take) {
            n.close();
        }
    }
}

pub fn is_not_found(r: &Result<Vec<u8>, Error>) -> bool {
    matches!(r, Err(Error::NotFound))
}
