//! Clients and the nemesis of a harness run: clients SET, GET and
//! compare-and-set (`FLOYD.CAS`) a handful of keys through random nodes and
//! record every operation (invocation, completion, outcome); the nemesis
//! injects faults meanwhile.

use crate::checker::{Input, Op, Output};
use crate::common::raftis::Cluster;
use crate::counters::{Increment, NxLock};
use crate::firewall::Firewall;
use crate::locks::Acquired;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How reads are made: `Get` is the linearizable read; `DirtyGet` (this
/// node's copy) is the planted bug the checker must catch.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    Get,
    DirtyGet,
}

pub struct Workload {
    pub clients: usize,
    pub keys: usize,
    pub reads: ReadKind,
    pub seed: u64,
    /// A client gives up on an answer after this long (the outcome is then unknown).
    pub op_timeout: Duration,
    /// Whether clients also compare-and-set (`FLOYD.CAS`).
    pub cas: bool,
}

/// Nanoseconds since `start`, the history's one clock.
fn at(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// What the clients saw: register operations, and the locks they got.
#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub acquired: Vec<Acquired>,
    /// `INCR ctr`s (`counters.rs`).
    pub increments: Vec<Increment>,
    /// Successful `SET nxlock holder NX PX NX_TTL_MS`s.
    pub nx_locks: Vec<NxLock>,
}

/// How long a SET NX lock lives.
pub const NX_TTL_MS: u64 = 300;

/// Runs the clients against the RESP addresses `addrs` until `stop`; returns the history.
pub fn run_clients(w: &Workload, addrs: Vec<String>, start: Instant, stop: Arc<AtomicBool>) -> History {
    let history = Arc::new(Mutex::new(History::default()));
    let threads: Vec<_> = (0..w.clients)
        .map(|c| {
            let (addrs, stop, history) = (addrs.clone(), stop.clone(), history.clone());
            let (keys, reads, timeout, seed, with_cas) = (w.keys, w.reads, w.op_timeout, w.seed, w.cas);
            std::thread::spawn(move || {
                let mut rng =
                    rand::rngs::SmallRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(c as u64));
                let mut client = Client {
                    id: c,
                    con: None,
                    addrs,
                    timeout,
                };
                let mut n = 0u64;
                let mut last_seen: Vec<Option<Vec<u8>>> = vec![None; keys];
                while !stop.load(Ordering::Relaxed) {
                    if rng.random_bool(0.1) {
                        if let Some(a) = client.lock_op(&mut rng, start) {
                            history.lock().unwrap().acquired.push(a);
                        }
                        continue;
                    }
                    if rng.random_bool(0.1) {
                        if let Some(i) = client.incr(&mut rng) {
                            history.lock().unwrap().increments.push(i);
                        }
                        continue;
                    }
                    if rng.random_bool(0.05) {
                        if let Some(l) = client.nx_lock(&mut rng, start) {
                            history.lock().unwrap().nx_locks.push(l);
                        }
                        continue;
                    }
                    let k = rng.random_range(0..keys);
                    let key = format!("k{k}").into_bytes();
                    let dice = rng.random_range(0..10);
                    n += 1;
                    let fresh = format!("c{c}-{n}").into_bytes();
                    let op = match (dice, &last_seen[k]) {
                        (0..=3, _) => client.write(&mut rng, key, fresh, start),
                        // From the value this client last saw there: often still
                        // current, so swaps both win and lose.
                        (4..=5, Some(old)) if with_cas => {
                            client.cas(&mut rng, key, old.clone(), fresh, start)
                        }
                        _ => client.read(&mut rng, key, reads, start),
                    };
                    if let Some(op) = op {
                        match (&op.input, &op.output) {
                            (_, Output::Read(v)) => last_seen[k] = v.clone(),
                            (Input::Write(v), Output::Written) => last_seen[k] = v.clone(),
                            (Input::Cas { new, .. }, Output::Swapped(true)) => {
                                last_seen[k] = Some(new.clone())
                            }
                            _ => {}
                        }
                        history.lock().unwrap().ops.push(op);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    Arc::try_unwrap(history).unwrap().into_inner().unwrap()
}

struct Client {
    id: usize,
    con: Option<(usize, Connection)>,
    addrs: Vec<String>,
    timeout: Duration,
}

impl Client {
    /// A connection to a random node that accepts one; `None` if none does now.
    fn connection(&mut self, rng: &mut impl Rng) -> Option<&mut (usize, Connection)> {
        if self.con.is_none() {
            let node = rng.random_range(0..self.addrs.len());
            let client = redis::Client::open(format!("redis://{}/", self.addrs[node])).ok()?;
            let con = client
                .get_connection_with_timeout(Duration::from_millis(300))
                .ok()?;
            con.set_read_timeout(Some(self.timeout)).ok()?;
            con.set_write_timeout(Some(self.timeout)).ok()?;
            self.con = Some((node, con));
        }
        self.con.as_mut()
    }

    fn write(&mut self, rng: &mut impl Rng, key: Vec<u8>, value: Vec<u8>, start: Instant) -> Option<Op> {
        let (_, con) = self.connection(rng)?;
        let call = at(start);
        let r: redis::RedisResult<String> = redis::cmd("SET").arg(&key).arg(&value).query(con);
        let ret = at(start);
        let output = match r {
            Ok(_) => Output::Written,
            Err(e) if not_applied(&e) => Output::Failed,
            Err(_) => {
                self.con = None;
                Output::Unknown
            }
        };
        Some(self.op(key, Input::Write(Some(value)), output, call, ret))
    }

    /// `FLOYD.CAS key old new`: 1 if it set the value, 0 if the key did not hold `old`.
    fn cas(
        &mut self,
        rng: &mut impl Rng,
        key: Vec<u8>,
        old: Vec<u8>,
        new: Vec<u8>,
        start: Instant,
    ) -> Option<Op> {
        let (_, con) = self.connection(rng)?;
        let call = at(start);
        let r: redis::RedisResult<i64> = redis::cmd("FLOYD.CAS").arg(&key).arg(&old).arg(&new).query(con);
        let ret = at(start);
        let output = match r {
            Ok(swapped) => Output::Swapped(swapped == 1),
            Err(e) if not_applied(&e) => Output::Failed,
            Err(_) => {
                self.con = None;
                Output::Unknown
            }
        };
        Some(self.op(key, Input::Cas { old, new }, output, call, ret))
    }

    fn read(&mut self, rng: &mut impl Rng, key: Vec<u8>, kind: ReadKind, start: Instant) -> Option<Op> {
        let (_, con) = self.connection(rng)?;
        let name = match kind {
            ReadKind::Get => "GET",
            ReadKind::DirtyGet => "FLOYD.DIRTYGET",
        };
        let call = at(start);
        let r: redis::RedisResult<Option<Vec<u8>>> = redis::cmd(name).arg(&key).query(con);
        let ret = at(start);
        let output = match r {
            Ok(v) => Output::Read(v),
            Err(e) if not_applied(&e) => Output::Failed,
            Err(_) => {
                self.con = None;
                Output::Unknown
            }
        };
        Some(self.op(key, Input::Read, output, call, ret))
    }

    /// `INCR ctr`; `None` if it certainly was not applied (or no node took
    /// the connection).
    fn incr(&mut self, rng: &mut impl Rng) -> Option<Increment> {
        let (_, con) = self.connection(rng)?;
        let r: redis::RedisResult<i64> = redis::cmd("INCR").arg("ctr").query(con);
        match r {
            Ok(v) => Some(Increment::Acked(v)),
            Err(e) if not_applied(&e) => None,
            Err(_) => {
                self.con = None;
                Some(Increment::Unknown)
            }
        }
    }

    /// `SET nxlock holder NX PX NX_TTL_MS`: the acquisition, if it got the lock.
    fn nx_lock(&mut self, rng: &mut impl Rng, start: Instant) -> Option<NxLock> {
        let holder = format!("c{}", self.id);
        let (_, con) = self.connection(rng)?;
        let call = at(start);
        let r: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg("nxlock")
            .arg(&holder)
            .arg("NX")
            .arg("PX")
            .arg(NX_TTL_MS)
            .query(con);
        let ret = at(start);
        match r {
            Ok(Some(_)) => Some(NxLock { holder, call, ret }),
            Ok(None) => None,
            Err(e) => {
                if !not_applied(&e) {
                    self.con = None;
                }
                None
            }
        }
    }

    /// A try_lock (300 ms) or an unlock of one of two locks; the lock got, if any.
    fn lock_op(&mut self, rng: &mut impl Rng, start: Instant) -> Option<Acquired> {
        let lock = format!("L{}", rng.random_range(0..2));
        let holder = format!("c{}", self.id);
        let acquire = rng.random_bool(0.7);
        let (_, con) = self.connection(rng)?;
        let call = at(start);
        let r: redis::RedisResult<i64> = if acquire {
            redis::cmd("FLOYD.TRYLOCK")
                .arg(&lock)
                .arg(&holder)
                .arg(300)
                .query(con)
        } else {
            redis::cmd("FLOYD.UNLOCK")
                .arg(&lock)
                .arg(&holder)
                .query(con)
                .map(|_: String| 0)
        };
        let ret = at(start);
        match r {
            Ok(token) if acquire => Some(Acquired {
                lock,
                holder,
                token: token as u64,
                call,
                ret,
            }),
            Ok(_) => None,
            Err(e) => {
                if e.code().is_none() || e.code() == Some("TIMEOUT") {
                    self.con = None;
                }
                None
            }
        }
    }

    fn op(&self, key: Vec<u8>, input: Input, output: Output, call: u64, ret: u64) -> Op {
        Op {
            client: self.id,
            key,
            input,
            output,
            call,
            ret,
        }
    }
}

/// Errors raftis gives only for commands that certainly were not applied.
fn not_applied(e: &redis::RedisError) -> bool {
    matches!(e.code(), Some("NOLEADER") | Some("BUSY"))
}

/// The faults a nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    KillRandom,
    KillLeader,
    /// kill -9 of a majority at once, restarted together.
    KillMajority,
    StopRandom,
    StopLeader,
    /// Both directions between the leader and every other node.
    IsolateLeader,
    /// Both directions between a random node and every other node.
    IsolateRandom,
    /// The leader can send nothing; it still hears the others.
    LeaderCannotSend,
    /// (5 nodes and more) A minority and a majority cut apart.
    Halves,
    /// (5 nodes and more) Two halves cut apart, one node still talking to both.
    Bridge,
    /// Every fsync of the leader's log takes 100 ms longer.
    SlowDiskLeader,
    /// (With the firewall) Packets between the leader and every other node dropped.
    FirewallIsolateLeader,
    /// (With the firewall) Packets between a random node and every other node dropped.
    FirewallIsolateRandom,
    /// (With the firewall, 5 nodes and more) A minority and a majority cut apart.
    FirewallHalves,
    /// (With the firewall, 5 nodes and more) Two halves cut apart, one node still talking to both.
    FirewallBridge,
}

/// The faults for an `n`-node cluster, in the order they are first injected.
pub fn faults_for(n: usize, firewall: bool) -> Vec<Fault> {
    let mut all = vec![
        Fault::KillRandom,
        Fault::KillLeader,
        Fault::KillMajority,
        Fault::StopRandom,
        Fault::StopLeader,
        Fault::IsolateLeader,
        Fault::IsolateRandom,
        Fault::LeaderCannotSend,
        Fault::SlowDiskLeader,
    ];
    if n >= 5 {
        all.extend([Fault::Halves, Fault::Bridge]);
    }
    if firewall {
        all.extend([Fault::FirewallIsolateLeader, Fault::FirewallIsolateRandom]);
        if n >= 5 {
            all.extend([Fault::FirewallHalves, Fault::FirewallBridge]);
        }
    }
    all
}

/// Injects each fault in turn (every kind at least once, however long that
/// takes on a slow machine), then at random until `until`, one every
/// `period`, each healed before the next; returns how many of each it injected.
pub fn run_nemesis(
    c: &mut Cluster,
    mut firewall: Option<&mut Firewall>,
    seed: u64,
    period: Duration,
    (start, until): (Instant, Instant),
) -> Vec<(Fault, usize)> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let kinds = faults_for(c.nodes.len(), firewall.is_some());
    let mut counts: Vec<(Fault, usize)> = kinds.iter().map(|f| (*f, 0)).collect();
    let mut round = 0;
    while round < kinds.len() || Instant::now() + 2 * period < until {
        std::thread::sleep(period);
        let fault = kinds
            .get(round)
            .copied()
            .unwrap_or_else(|| kinds[rng.random_range(0..kinds.len())]);
        round += 1;
        counts.iter_mut().find(|(f, _)| *f == fault).unwrap().1 += 1;
        // On the history's clock: a failure's report shows which fault was on when.
        let from = at(start);
        inject(c, firewall.as_deref_mut(), fault, &mut rng, period);
        println!("nemesis: {fault:?} from {from} ns to {} ns", at(start));
    }
    counts
}

/// Injects `fault` for `period`, then heals it.
fn inject(
    c: &mut Cluster,
    firewall: Option<&mut Firewall>,
    fault: Fault,
    rng: &mut impl Rng,
    period: Duration,
) {
    let n = c.nodes.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    let leader = (0..n).find_map(|i| c.leader_seen_by(i).filter(|l| *l == i));
    let target = match fault {
        Fault::KillLeader
        | Fault::StopLeader
        | Fault::IsolateLeader
        | Fault::LeaderCannotSend
        | Fault::SlowDiskLeader
        | Fault::FirewallIsolateLeader => leader.unwrap_or(order[0]),
        _ => order[0],
    };
    let others: Vec<usize> = (0..n).filter(|o| *o != target).collect();
    match fault {
        Fault::KillRandom | Fault::KillLeader | Fault::KillMajority => {
            let victims = match fault {
                Fault::KillMajority => order[..n / 2 + 1].to_vec(),
                _ => vec![target],
            };
            victims.iter().for_each(|&v| c.kill9(v));
            std::thread::sleep(period);
            victims.iter().for_each(|&v| c.restart(v));
        }
        Fault::SlowDiskLeader => {
            c.slow_disk(target, Duration::from_millis(100));
            std::thread::sleep(period);
            c.slow_disk(target, Duration::ZERO);
        }
        Fault::StopRandom | Fault::StopLeader => {
            c.signal(target, libc::SIGSTOP);
            std::thread::sleep(period);
            c.signal(target, libc::SIGCONT);
        }
        // Cuts heal by themselves after `period`.
        Fault::IsolateLeader | Fault::IsolateRandom => cut_between(c, &[target], &others, true, period),
        Fault::LeaderCannotSend => cut_between(c, &[target], &others, false, period),
        Fault::Halves => cut_between(c, &order[..n / 2], &order[n / 2..], true, period),
        Fault::Bridge => {
            let half = (n - 1) / 2;
            cut_between(c, &order[1..=half], &order[half + 1..], true, period)
        }
        Fault::FirewallIsolateLeader
        | Fault::FirewallIsolateRandom
        | Fault::FirewallHalves
        | Fault::FirewallBridge => {
            let fw = firewall.expect("firewall faults only with a firewall");
            let (a, b): (&[usize], &[usize]) = match fault {
                Fault::FirewallHalves => (&order[..n / 2], &order[n / 2..]),
                Fault::FirewallBridge => (&order[1..=(n - 1) / 2], &order[(n - 1) / 2 + 1..]),
                _ => (&[target], &others),
            };
            for &x in a {
                for &y in b {
                    fw.drop_from(c.ip(x), c.ip(y));
                    fw.drop_from(c.ip(y), c.ip(x));
                }
            }
            std::thread::sleep(period);
            if matches!(fault, Fault::FirewallIsolateLeader | Fault::FirewallIsolateRandom) {
                // Proof the rules bite: the others elect a leader among themselves.
                let deadline = Instant::now() + crate::common::DEADLINE;
                while !others
                    .iter()
                    .any(|&o| c.leader_seen_by(o).is_some_and(|l| l != target))
                {
                    assert!(
                        Instant::now() < deadline,
                        "{fault:?}: the majority never elected a leader"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            fw.heal();
        }
    }
}

/// Cuts every link from `a` to `b` (and back, with `both`) for `period`, and waits it out.
fn cut_between(c: &Cluster, a: &[usize], b: &[usize], both: bool, period: Duration) {
    for &x in a {
        for &y in b {
            c.cut(x, y, period);
            if both {
                c.cut(y, x, period);
            }
        }
    }
    std::thread::sleep(period);
}
