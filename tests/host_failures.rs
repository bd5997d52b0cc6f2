//! Failure domains of a host of many groups (issue 21, item 5), and what a
//! group's trouble must not do to the other groups of the same hosts: a
//! panicking user state machine fails its group only; a slow apply or a
//! snapshot install of one group stalls no other group's commits; a full
//! disk refuses writes host-wide and recovers. (Membership changes, leader
//! transfers and hostile frames naming groups: `host_group_changes.rs`.)

mod common;

use common::hosts::Hosts;
use common::{wait_until, DEADLINE};
use floyd::{Error, Floyd, StateMachine};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Holds every `slow` command in `apply` until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    /// Applies waiting at the gate now.
    waiting: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped: a failed test does not leave applies (and
/// the close of their groups) waiting forever.
struct OpenOnDrop<'a>(&'a Gate);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A user state machine: `inc` answers the number of `inc`s so far, `boom`
/// panics where armed, `slow` waits at the gate; every command applied is
/// recorded, in order.
struct Counter {
    count: u64,
    applied: Arc<Mutex<Vec<String>>>,
    armed: Arc<AtomicBool>,
    gate: Arc<Gate>,
}

impl Counter {
    fn boxed(applied: &Arc<Mutex<Vec<String>>>, armed: &Arc<AtomicBool>, gate: &Arc<Gate>) -> Box<Counter> {
        Box::new(Counter {
            count: 0,
            applied: applied.clone(),
            armed: armed.clone(),
            gate: gate.clone(),
        })
    }
}

impl StateMachine for Counter {
    fn apply(&mut self, index: u64, data: &[u8]) -> Result<Vec<u8>, String> {
        let command = String::from_utf8_lossy(data).to_string();
        match command.as_str() {
            "boom" if self.armed.load(Ordering::SeqCst) => panic!("the counter exploded at {index}"),
            "slow" => self.gate.pass(),
            "inc" => self.count += 1,
            _ => {}
        }
        self.applied.lock().unwrap().push(command);
        Ok(self.count.to_string().into_bytes())
    }

    fn snapshot_save(&mut self, dir: &Path) -> Result<(), String> {
        std::fs::write(dir.join("count"), self.count.to_string()).map_err(|e| e.to_string())
    }

    fn snapshot_load(&mut self, dir: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(dir.join("count")).map_err(|e| e.to_string())?;
        self.count = text.parse().map_err(|_| "bad count".to_string())?;
        Ok(())
    }
}

/// A user-state-machine group on every host: what each host's machine applied.
struct CounterGroup {
    applied: Vec<Arc<Mutex<Vec<String>>>>,
    armed: Arc<AtomicBool>,
    gate: Arc<Gate>,
}

impl CounterGroup {
    /// Opens it on every host; a proposal not answered within `timeout` times out.
    fn open(h: &mut Hosts, group: u64, timeout: Duration) -> CounterGroup {
        let c = CounterGroup {
            applied: (0..h.hosts.len()).map(|_| Arc::default()).collect(),
            armed: Arc::default(),
            gate: Arc::default(),
        };
        for i in 0..h.hosts.len() {
            let mut o = h.group_options();
            o.request_timeout = timeout;
            let machine = Counter::boxed(&c.applied[i], &c.armed, &c.gate);
            h.open_group_machine(i, group, o, machine);
        }
        c
    }

    fn applied(&self, i: usize) -> Vec<String> {
        self.applied[i].lock().unwrap().clone()
    }
}

/// Proposes through `f`, retrying while no leader is known yet.
fn propose(f: &Floyd, command: &str) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match f.propose(command.as_bytes()) {
            Ok(answer) => return String::from_utf8(answer).unwrap(),
            Err(e) if e.is_retryable() && Instant::now() < deadline => {}
            Err(e) => panic!("propose {command}: {e}"),
        }
    }
}

/// Writes to every group of `groups` through every host, then reads each
/// write back on every host (linearizable), each within `bound`.
fn write_and_read_everywhere(h: &Hosts, groups: &[u64], key: &str, bound: Duration) {
    for &g in groups {
        for via in 0..h.hosts.len() {
            let value = format!("{key}-{g}-{via}");
            let started = Instant::now();
            h.write(via, g, key.as_bytes(), value.as_bytes());
            for i in 0..h.hosts.len() {
                assert_eq!(
                    h.read(i, g, key.as_bytes()).unwrap(),
                    value.as_bytes(),
                    "group {g} on host {i}"
                );
            }
            let took = started.elapsed();
            assert!(
                took < bound,
                "group {g}: a write through host {via} and its reads took {took:?}"
            );
        }
    }
}

fn status(h: &Hosts, i: usize) -> String {
    h.host(i).status_json()
}

/// A panic in one group's user state machine fails that group, on every
/// host (each of them applies the command and panics): it answers
/// `Failed`. The hosts and their other groups (key-value ones and another
/// user state machine, applied by the same workers) go on committing and
/// reading.
#[test]
fn a_panicking_state_machine_fails_its_group_only_and_the_other_groups_go_on() {
    const KV: [u64; 6] = [1, 2, 3, 4, 5, 6];
    const BOMB: u64 = 10;
    const CALM: u64 = 11;
    let mut h = Hosts::start(3);
    for i in 0..3 {
        for g in KV {
            h.open_group(i, g);
        }
    }
    let bomb = CounterGroup::open(&mut h, BOMB, Duration::from_secs(2));
    let calm = CounterGroup::open(&mut h, CALM, Duration::from_secs(2));
    for g in KV.into_iter().chain([BOMB, CALM]) {
        h.wait_for_leader(g);
    }
    write_and_read_everywhere(&h, &KV, "before", DEADLINE);
    assert_eq!(propose(h.node(0, BOMB), "inc"), "1");
    assert_eq!(propose(h.node(1, CALM), "inc"), "1");

    bomb.armed.store(true, Ordering::SeqCst);
    let leader = h.wait_for_leader(BOMB);
    let r = h.node(leader, BOMB).propose(b"boom");
    assert!(r.is_err(), "the panicking apply answered {r:?}");
    for i in 0..3 {
        wait_until(
            &format!("group {BOMB} on host {i} to fail"),
            || matches!(h.node(i, BOMB).propose(b"inc"), Err(Error::Failed(m)) if m.contains("panicked")),
        );
        assert!(!bomb.applied(i).contains(&"boom".to_string()));
    }

    // The hosts live, and every other group on them commits and reads.
    for i in 0..3 {
        let s = status(&h, i);
        assert!(s.contains("\"failed\":false"), "host {i}: {s}");
    }
    write_and_read_everywhere(&h, &KV, "after", Duration::from_secs(5));
    for (n, via) in (2..=4).zip(0..3) {
        assert_eq!(propose(h.node(via, CALM), "inc"), n.to_string());
    }
    for i in 0..3 {
        wait_until("every host to apply the calm group", || {
            calm.applied(i).len() == 4
        });
        assert!(matches!(h.node(i, BOMB).propose(b"inc"), Err(Error::Failed(_))));
    }
}

/// One group's apply blocks (its user state machine waits at a gate on
/// every host, holding an apply worker of each): the other groups of the
/// same hosts go on committing, applying and reading, and the slow group
/// itself goes on committing; once the gate opens it applies everything,
/// in order, and answers every proposer.
#[test]
fn a_slow_apply_in_one_group_stalls_no_other_group_and_the_slow_group_resumes() {
    const KV: [u64; 6] = [1, 2, 3, 4, 5, 6];
    const SLOW: u64 = 20;
    let mut h = Hosts::start(3);
    for i in 0..3 {
        for g in KV {
            h.open_group(i, g);
        }
    }
    let slow = CounterGroup::open(&mut h, SLOW, DEADLINE);
    for g in KV.into_iter().chain([SLOW]) {
        h.wait_for_leader(g);
    }
    assert_eq!(propose(h.node(0, SLOW), "inc"), "1");
    let leader = h.wait_for_leader(SLOW);
    let _open_on_failure = OpenOnDrop(&slow.gate);
    std::thread::scope(|s| {
        let h = &h;
        let stuck = s.spawn(move || h.node(leader, SLOW).propose(b"slow"));
        wait_until("every host's apply of the slow group to wait at the gate", || {
            slow.gate.waiting.load(Ordering::SeqCst) == 3
        });
        let blocked_at = h.node(leader, SLOW).server_status().last_applied;
        // The slow group still commits (its log is not held up by its apply).
        let behind: Vec<_> = (0..3)
            .map(|_| s.spawn(move || h.node(leader, SLOW).propose(b"inc")))
            .collect();
        wait_until("the slow group to commit past its blocked apply", || {
            h.node(leader, SLOW).server_status().commit_index >= blocked_at + 4
        });
        // Every other group writes through every host and reads back on
        // every host, promptly, several times over, while the gate is shut.
        for round in 0..5 {
            write_and_read_everywhere(h, &KV, &format!("during{round}"), Duration::from_secs(5));
        }
        assert_eq!(slow.gate.waiting.load(Ordering::SeqCst), 3, "the gate held");
        for i in 0..3 {
            assert_eq!(slow.applied(i), ["inc"], "host {i} applied past the gate");
        }

        slow.gate.release();
        assert_eq!(stuck.join().unwrap().unwrap(), b"1");
        let mut answers: Vec<String> = behind
            .into_iter()
            .map(|t| String::from_utf8(t.join().unwrap().unwrap()).unwrap())
            .collect();
        answers.sort();
        assert_eq!(answers, ["2", "3", "4"]);
    });
    assert_eq!(propose(h.node(1, SLOW), "inc"), "5");
    for i in 0..3 {
        wait_until("every host to apply the slow group", || {
            slow.applied(i).len() == 6
        });
        assert_eq!(
            slow.applied(i),
            ["inc", "slow", "inc", "inc", "inc", "inc"],
            "host {i}"
        );
    }
    write_and_read_everywhere(&h, &KV, "after", Duration::from_secs(5));
}

/// Whether a snapshot streams into `dir` now.
fn streaming_into(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
    })
}

/// A member of one group catches up through a large snapshot streamed at
/// a low rate (seconds): meanwhile the other groups of the same hosts,
/// over the same links, commit and apply on that member at their usual pace.
#[test]
fn a_long_snapshot_install_in_one_group_stalls_no_other_group() {
    use rand::{Rng, SeedableRng};
    const KV: [u64; 4] = [1, 2, 3, 4];
    const BIG: u64 = 30;
    const RATE: u64 = 160 << 10;
    let mut h = Hosts::start(3);
    let options = |h: &Hosts| {
        let mut o = h.group_options();
        // Every group's: the links take the pace of the first group to open one.
        o.snapshot_bytes_per_sec = RATE;
        o.snapshot_chunk_bytes = 32 << 10;
        o
    };
    for i in 0..3 {
        for g in KV {
            h.open_group_with(i, g, options(&h));
        }
    }
    // The big group runs on hosts 0 and 1 only (a majority) for now.
    let mut big = options(&h);
    big.snapshot_log_entries = 20;
    big.snapshot_keep_entries = 2;
    for i in 0..2 {
        h.open_group_with(i, BIG, big.clone());
    }
    for g in KV.into_iter().chain([BIG]) {
        h.wait_for_leader(g);
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(30);
    let value = |rng: &mut rand::rngs::SmallRng| -> Vec<u8> { (0..24 << 10).map(|_| rng.random()).collect() };
    let mut last = Vec::new();
    for k in 0..48 {
        last = value(&mut rng);
        h.write(0, BIG, format!("k{k}").as_bytes(), &last);
    }
    let leader = h.wait_for_leader(BIG);
    wait_until("the big group to snapshot and compact its log", || {
        let s = h.node(leader, BIG).server_status();
        s.snapshot_index >= 40 && s.first_log_index > 1
    });

    // Host 2 opens the big group: it can catch up by a snapshot only, of
    // about 1 MB at 160 KiB/s.
    h.open_group_with(2, BIG, big);
    let incoming = h.path(2).join("groups").join(BIG.to_string()).join("snapshots");
    let caught_up = |h: &Hosts| h.node(2, BIG).dirty_read(b"k47").is_ok_and(|v| v == last);
    wait_until("the snapshot to stream to host 2", || streaming_into(&incoming));
    let started = Instant::now();
    for round in 0..10 {
        for g in KV {
            let via = (round + g as usize) % 3;
            let key = format!("during{round}");
            let t = Instant::now();
            h.write(via, g, key.as_bytes(), b"v");
            h.wait_applied(2, g, key.as_bytes(), b"v");
            let took = t.elapsed();
            assert!(
                took < Duration::from_secs(2),
                "group {g}: a write took {took:?} while group {BIG} installed a snapshot"
            );
        }
    }
    assert!(
        !caught_up(&h),
        "the install was over before the other groups' writes ({:?}): this test shows nothing",
        started.elapsed()
    );
    wait_until("host 2 to catch up on the big group", || caught_up(&h));
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the stream was not slow"
    );
    for k in [0, 20, 47] {
        let key = format!("k{k}");
        let want = h.read(0, BIG, key.as_bytes()).unwrap();
        assert_eq!(h.node(2, BIG).dirty_read(key.as_bytes()).unwrap(), want);
    }
    write_and_read_everywhere(
        &h,
        &KV.into_iter().chain([BIG]).collect::<Vec<_>>(),
        "after",
        DEADLINE,
    );
}

/// A tmpfs mounted for a test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let size = format!("size={mib}m");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` until it has no room left.
fn fill(path: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 256 << 10];
    while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
    filler
}

fn disk_full(e: &Error) -> bool {
    matches!(e, Error::Io(m) if m.contains("disk is full") && m.contains("not applied"))
}

/// Removes the file that fills the disk when dropped (on a failed test too,
/// before the hosts close).
struct Filler(Option<std::path::PathBuf>);

impl Filler {
    fn remove(&mut self) {
        if let Some(f) = self.0.take() {
            std::fs::remove_file(f).unwrap();
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The disk of a host leading six groups fills up (its own: the other two
/// hosts have room). One group's write finds it full, and from then on every
/// group of that host refuses writes at once (even those that wrote nothing
/// since), through every member, with the disk-full error; no group and no
/// host fails, every member serves what it has, and a group closes promptly
/// (its unwritten writes, never acknowledged, are dropped). Once there is
/// space again the group reopens, every group takes writes through every
/// host, and nothing acknowledged is lost. Needs to mount a tmpfs (root, as
/// in CI); elsewhere it says so and skips.
#[test]
fn a_full_disk_refuses_writes_host_wide_and_every_group_recovers_when_space_returns() {
    const GROUPS: [u64; 6] = [1, 2, 3, 4, 5, 6];
    let Some(fs) = Tmpfs::mount(64) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let mut h = Hosts::start_with_hosts(3, 0);
    h.paths[0] = fs.dir.path().join("h0");
    for i in 0..3 {
        h.open_host(i);
    }
    let mut o = h.group_options();
    o.request_timeout = Duration::from_secs(2);
    o.leader_wait = Duration::from_secs(2);
    for i in 0..3 {
        for g in GROUPS {
            h.open_group_with(i, g, o.clone());
        }
    }
    // Host 0 leads every group.
    for g in GROUPS {
        let leader = h.wait_for_leader(g);
        if leader != 0 {
            common::retrying(|| h.node(leader, g).transfer_leader(&h.id(0)))
                .unwrap_or_else(|e| panic!("transfer: {e}"));
        }
        assert_eq!(h.wait_for_leader(g), 0);
        for k in 0..5 {
            h.write(k % 3, g, format!("k{k}").as_bytes(), b"before");
        }
    }
    let mut filler = Filler(Some(fill(fs.dir.path())));

    // Group 1 finds the disk full: large writes use up at once what RocksDB
    // preallocated.
    let large = vec![b'x'; 1 << 20];
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "writes were never refused on a full disk"
        );
        let key = format!("during{n}");
        match h.node(0, 1).write(key.as_bytes(), &large) {
            Err(e) if disk_full(&e) => break,
            Ok(()) => acknowledged.push((1, key)),
            Err(Error::Timeout(_)) => {}
            Err(e) => panic!("unexpected error on a full disk: {e}"),
        }
    }
    let s = h.host(0).status_json();
    assert!(s.contains("\"disk_full\":true"), "{s}");
    // Host-wide: every group refuses even a small write, through every member.
    for g in GROUPS {
        for i in 0..3 {
            match h.node(i, g).write(b"small", b"v") {
                Err(e) if disk_full(&e) => {}
                other => panic!("group {g} through host {i} on a full disk: {other:?}"),
            }
        }
    }
    // Nobody failed: every member serves its copy.
    for i in 0..3 {
        let s = h.host(i).status_json();
        assert!(s.contains("\"failed\":false"), "host {i}: {s}");
        for g in GROUPS {
            assert_eq!(
                h.node(i, g).dirty_read(b"k0").unwrap(),
                b"before",
                "group {g} host {i}"
            );
        }
    }
    // A group closes promptly on a full disk, though the log writer still
    // holds writes of it that it cannot write (never acknowledged: dropped).
    let t = Instant::now();
    h.close_group(0, 1);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closing a group on a full disk took {:?}",
        t.elapsed()
    );

    filler.remove();
    h.open_group_with(0, 1, o.clone());
    for g in GROUPS {
        for i in 0..3 {
            let deadline = Instant::now() + DEADLINE;
            while let Err(e) = h.node(i, g).write(b"after", b"space") {
                if Instant::now() > deadline {
                    let all: Vec<String> = (0..3).map(|j| h.host(j).status_json()).collect();
                    panic!(
                        "group {g} never took writes through host {i} again: {e}\n{}",
                        all.join("\n")
                    );
                }
            }
        }
    }
    for g in GROUPS {
        for k in 0..5 {
            h.write(k % 3, g, format!("k{k}").as_bytes(), b"after");
        }
    }
    for i in 0..3 {
        for g in GROUPS {
            for k in 0..5 {
                assert_eq!(h.read(i, g, format!("k{k}").as_bytes()).unwrap(), b"after");
            }
        }
        for (g, key) in &acknowledged {
            assert_eq!(h.read(i, *g, key.as_bytes()).unwrap(), large, "group {g} {key}");
        }
    }
    let s = h.host(0).status_json();
    assert!(s.contains("\"disk_full\":false"), "{s}");
    drop(filler);
    drop(h);
    drop(fs);
}
