//! Upgrade without downtime (issue 21, item 4): the previous release's
//! raftis (protocol version 5, one group), built from the git history,
//! runs beside this one.
//!
//! - A rolling upgrade, over plain TCP and over mutual TLS: a 3-node
//!   cluster of the old release is replaced one node at a time (same port,
//!   same data directory). The cluster serves writes while each node is
//!   down; after each replacement the mixed cluster elects, writes and
//!   reads on every node. The leadership is moved so that an old leader
//!   replicates to new followers and a new leader to old ones, and a node
//!   catches up by snapshot both ways (old leader to new node, new leader to
//!   old node).
//! - A store written only by the old release (a snapshot, the log after it)
//!   opens under the new one.
//!
//! The old raftis is built once per target directory (a stamp names the
//! commit it came from) in the same target directory and profile as this
//! build, so every dependency, RocksDB above all, is reused: a cold build
//! compiles only the old floyd crate and its raftis.

mod common;

use common::raftis::Cluster;
use common::wait_until;
use redis::Connection;
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

/// The previous release: the last commit before groups, whose wire is
/// protocol version 5 (one group, no Frame.group_id).
const OLD_RELEASE: &str = "d6ff6e4775cd826068d503a9b583cbf090710e24";
/// Its raftis, renamed so it never replaces this build's `raftis`.
const OLD_BIN: &str = "raftis-v5";

/// The old raftis, built at most once per process (and, through the stamp
/// and a file lock, once per target directory).
fn old_raftis() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_old_raftis).clone()
}

fn build_old_raftis() -> PathBuf {
    // This build's raftis is <target>/<profile>/raftis: the old one goes
    // beside it, built by the same cargo into the same target directory.
    let new_bin = Path::new(env!("CARGO_BIN_EXE_raftis"));
    let profile_dir = new_bin.parent().unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let bin = profile_dir.join(OLD_BIN);
    let stamp = profile_dir.join(format!("{OLD_BIN}.commit"));
    let work = target_dir.join("old-release").join(&OLD_RELEASE[..7]);
    fs::create_dir_all(&work).unwrap();

    // Test binaries of parallel `cargo test` runs share the target
    // directory: one builds, the others wait and then find the stamp.
    let _lock = lock_file(&target_dir.join("old-release").join("lock"));
    if bin.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(OLD_RELEASE) {
        return bin;
    }
    // Not trusted again until this build succeeds.
    let _ = fs::remove_file(&stamp);
    require_commit();

    // The old tree, extracted with `git archive` (a worktree would add
    // entries to the repository's .git that other sessions see).
    let src = work.join("src");
    if src.exists() {
        fs::remove_dir_all(&src).unwrap();
    }
    fs::create_dir_all(&src).unwrap();
    let tar = work.join("src.tar");
    run(Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["archive", "--format=tar", "-o"])
        .arg(&tar)
        .arg(OLD_RELEASE));
    run(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&src));
    rewrite_old_tree(&src);

    // The profile directory names the profile ("debug" is dev).
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        p => p,
    };
    let log_path = work.join("build.log");
    let log = fs::File::create(&log_path).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    // --locked: exactly the old release's dependency versions (its
    // Cargo.lock, renamed root aside), which are this build's too, so
    // cargo finds them compiled with identical flags and reuses them.
    let mut cmd = Command::new(cargo);
    // Cargo gives this test the variables it gives a crate's build
    // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, OUT_DIR...). Some build scripts
    // rerun when those change (ring's does): seen by the inner cargo, they
    // would rebuild ring and all above it here, and again in the next
    // plain build. Cargo's own settings (CARGO_HOME, CARGO_BUILD_*...) stay.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let per_crate = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
            "CARGO_CFG_",
            "CARGO_FEATURE_",
            "OUT_DIR",
        ];
        if per_crate.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(&*k);
        }
    }
    let status = cmd
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", target_dir)
        // Built once: no incremental cache (over 100 MB) kept for it.
        .env("CARGO_INCREMENTAL", "0")
        .args(["build", "--locked", "--profile", profile, "--bin", OLD_BIN])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run cargo");
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.success(),
        "building the previous release ({OLD_RELEASE}) failed; {}:\n{output}",
        log_path.display()
    );
    eprintln!(
        "built {OLD_BIN} from {OLD_RELEASE} in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if output.contains("Compiling librocksdb-sys") {
            " (RocksDB was rebuilt: its dependencies differ from this build's)"
        } else {
            ""
        }
    );
    assert!(bin.exists(), "cargo built no {}", bin.display());
    fs::write(&stamp, OLD_RELEASE).unwrap();
    bin
}

/// Fails (never skips) when the old release is not in the history, as in
/// a shallow clone, saying how to fetch it.
fn require_commit() {
    let found = Command::new("git")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["cat-file", "-e", &format!("{OLD_RELEASE}^{{commit}}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "tests/upgrade.rs builds the previous release's raftis from commit {OLD_RELEASE}, \
         which is not in this clone's history (a shallow clone?). Fetch it with \
         `git fetch --unshallow` (or `git fetch origin {OLD_RELEASE}`; in GitHub Actions, \
         actions/checkout with `fetch-depth: 0`) and run the test again."
    );
}

/// Edits the old tree so that its outputs cannot replace this build's in
/// the shared target directory, and its dependencies are built exactly as
/// this build's are.
fn rewrite_old_tree(src: &Path) {
    let manifest = fs::read_to_string(src.join("Cargo.toml")).unwrap();
    // Another package name: its own fingerprints and hashed outputs. Only
    // the one bin we name is built (the tree also has floyd-node, examples).
    let manifest = edit(
        &manifest,
        "[package]\nname = \"floyd\"\n",
        "[package]\nname = \"floyd-v5\"\nautobins = false\nautoexamples = false\n\
         autotests = false\nautobenches = false\n",
    );
    // Only an rlib, under another crate name: libfloyd.so/.a/.rlib in the
    // profile directory stay this build's.
    let manifest = edit(
        &manifest,
        "crate-type = [\"rlib\", \"cdylib\", \"staticlib\"]",
        "name = \"floyd_v5\"\ncrate-type = [\"rlib\"]",
    );
    let manifest = edit(
        &manifest,
        "[[bin]]\nname = \"raftis\"\n",
        &format!("[[bin]]\nname = \"{OLD_BIN}\"\n"),
    );
    // This build's profiles, whatever the old ones were: a dependency
    // built with other settings (RocksDB: 15 minutes) would be rebuilt.
    let current = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest = format!(
        "{}\n{}\n# Its own workspace, whatever directory holds it.\n[workspace]\n",
        toml_sections(&manifest, false),
        toml_sections(&current, true)
    );
    fs::write(src.join("Cargo.toml"), manifest).unwrap();

    // The lock file names the root package: renamed too, so --locked holds.
    let lock = fs::read_to_string(src.join("Cargo.lock")).unwrap();
    fs::write(
        src.join("Cargo.lock"),
        edit(&lock, "\nname = \"floyd\"\n", "\nname = \"floyd-v5\"\n"),
    )
    .unwrap();

    // The bin says `floyd::`: the renamed library under its old name.
    let main = src.join("src/bin/raftis.rs");
    let text = fs::read_to_string(&main).unwrap();
    let docs = text.lines().take_while(|l| l.starts_with("//!")).count();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(docs, "extern crate floyd_v5 as floyd;");
    fs::write(&main, lines.join("\n") + "\n").unwrap();

    // Its build script sets the shared library's SONAME, a cdylib-only
    // flag that cargo warns about (and may refuse one day) without one.
    let build = src.join("build.rs");
    let text = fs::read_to_string(&build).unwrap();
    let text = text.replace(
        "println!(\"cargo:rustc-cdylib-link-arg",
        "let _ = format!(\"cargo:rustc-cdylib-link-arg",
    );
    fs::write(&build, text).unwrap();
}

/// `text` with `from` (which must be there) replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the old tree has no {from:?}");
    text.replacen(from, to, 1)
}

/// The `[profile...]` sections of a manifest (`profiles`), or all the
/// others (`!profiles`).
fn toml_sections(manifest: &str, profiles: bool) -> String {
    let mut in_profile = false;
    let mut out = String::new();
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_profile = line.starts_with("[profile");
        }
        if in_profile == profiles {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// An exclusive flock(2) on `path`, held until the file is dropped.
fn lock_file(path: &Path) -> fs::File {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on a descriptor we own, for as long as `f` lives.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::Interrupted,
            "flock {}: {e}",
            path.display()
        );
    }
    f
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn new_raftis() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_raftis"))
}

/// What the cluster must hold: every key written at every stage (with
/// the stage in its name), minus those deleted since.
#[derive(Default)]
struct Data {
    kv: BTreeMap<String, String>,
    deleted: Vec<String>,
}

impl Data {
    /// Writes through every running node (a follower forwards to the
    /// leader, across versions too): a few new keys, an overwrite of the
    /// first key (by name) and a delete of the last key of an earlier
    /// stage. Every write must succeed.
    fn write_through_each(&mut self, c: &Cluster, stage: &str) {
        for i in c.running() {
            let mut con = c.connect(i);
            for n in 0..4 {
                let (k, v) = (format!("{stage}:n{i}:{n}"), format!("{stage}/{i}/{n}"));
                set(&mut con, &k, &v, stage, i);
                self.put(k, v);
            }
            if let Some(first) = self.kv.keys().next().cloned() {
                let v = format!("overwritten at {stage} through node {i}");
                set(&mut con, &first, &v, stage, i);
                self.put(first, v);
            }
            if let Some(k) = self.kv.keys().rev().find(|k| !k.starts_with(stage)).cloned() {
                let n: i64 = redis::cmd("DEL")
                    .arg(&k)
                    .query(&mut con)
                    .unwrap_or_else(|e| panic!("{stage}: DEL {k} through node {i}: {e}"));
                assert_eq!(n, 1, "{stage}: DEL {k} through node {i}");
                self.kv.remove(&k);
                self.deleted.push(k);
            }
        }
    }

    /// Every running node answers every key (GET: linearizable, from the
    /// leader's state), and its own replica holds them all (FLOYD.DIRTYGET,
    /// once it applied: the leader replicated to it, whatever its version).
    fn check(&self, c: &Cluster, stage: &str) {
        for i in c.running() {
            let mut con = c.connect(i);
            for (k, v) in self.expected() {
                let got: Option<String> = redis::cmd("GET")
                    .arg(k)
                    .query(&mut con)
                    .unwrap_or_else(|e| panic!("{stage}: GET {k} through node {i}: {e}"));
                assert_eq!(got.as_deref(), v, "{stage}: GET {k} through node {i}");
            }
            wait_until(&format!("{stage}: node {i}'s replica holds every write"), || {
                self.expected().all(|(k, v)| {
                    let got: Option<String> = redis::cmd("FLOYD.DIRTYGET").arg(k).query(&mut con).unwrap();
                    got.as_deref() == v
                })
            });
        }
    }

    /// Records a write of `k` (deleted before, perhaps).
    fn put(&mut self, k: String, v: String) {
        self.deleted.retain(|d| *d != k);
        self.kv.insert(k, v);
    }

    fn expected(&self) -> impl Iterator<Item = (&String, Option<&str>)> {
        let kept = self.kv.iter().map(|(k, v)| (k, Some(v.as_str())));
        kept.chain(self.deleted.iter().map(|k| (k, None)))
    }
}

fn set(con: &mut Connection, k: &str, v: &str, stage: &str, i: usize) {
    let ok: String = redis::cmd("SET")
        .arg(k)
        .arg(v)
        .query(con)
        .unwrap_or_else(|e| panic!("{stage}: SET {k} through node {i}: {e}"));
    assert_eq!(ok, "OK", "{stage}: SET {k} through node {i}");
}

/// Makes node `to` the leader (FLOYD.TRANSFER, sent to the leader, which
/// returns once `to` leads), then waits until every node agrees.
fn lead(c: &Cluster, to: usize) {
    let leader = c.wait_for_leader();
    if leader != to {
        let mut con = c.connect(leader);
        let ok: String = redis::cmd("FLOYD.TRANSFER")
            .arg(&c.node(to).raft)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("transfer from node {leader} to node {to}: {e}"));
        assert_eq!(ok, "OK");
    }
    assert_eq!(c.wait_for_leader(), to, "node {to} leads after the transfer");
}

/// How node `i` leaves and comes back in [`bounce`].
struct Bounce<'a> {
    /// kill -9 instead of SIGTERM.
    crash: bool,
    /// The raftis it comes back as.
    bin: &'a Path,
    /// Whether the others write until their logs no longer hold what it
    /// misses, so it catches up by the leader's snapshot.
    by_snapshot: bool,
}

/// Takes node `i` down and back on its port and data: the others write
/// meanwhile (2 of 3 are a majority), electing first if `i` led, and what
/// was written stays readable; after its return the cluster elects,
/// writes and reads again, on every node.
fn bounce(c: &mut Cluster, d: &mut Data, i: usize, how: Bounce, stage: &str) {
    let log = c.node(i).log.clone();
    let behind = status(c, c.wait_for_leader(), "last_log_index");
    if how.crash {
        c.kill9(i);
    } else {
        c.stop(i);
    }
    c.wait_for_leader();
    d.write_through_each(c, &format!("{stage}, node {i} down"));
    d.check(c, &format!("{stage}, node {i} down"));
    if how.by_snapshot {
        compact_past(c, d, behind, stage);
    }
    let installed = installs(&log);
    c.set_binary(i, how.bin);
    c.restart(i);
    c.wait_for_leader();
    if how.by_snapshot {
        wait_until(
            &format!("{stage}: node {i} installs the leader's snapshot"),
            || installs(&log) > installed,
        );
    }
    d.write_through_each(c, &format!("{stage}, node {i} back"));
    d.check(c, &format!("{stage}, node {i} back"));
}

/// Writes 1 MiB values (to one key, so the state stays small) until every
/// running node snapshotted and dropped its log up to past `index`: with
/// raftis' defaults (a snapshot per 32 MiB of log) about 40 writes.
fn compact_past(c: &Cluster, d: &mut Data, index: u64, stage: &str) {
    let big = vec![b'x'; 1 << 20];
    let mut con = c.connect(c.wait_for_leader());
    wait_until(&format!("{stage}: logs compacted past {index}"), || {
        let ok: String = redis::cmd("SET").arg("bulk").arg(&big).query(&mut con).unwrap();
        assert_eq!(ok, "OK");
        c.running()
            .into_iter()
            .all(|n| status(c, n, "first_log_index") > index)
    });
    let mut con = c.connect(c.wait_for_leader());
    set(&mut con, "bulk", stage, stage, 0);
    d.put("bulk".into(), stage.into());
}

/// A number field of node `i`'s FLOYD.STATUS JSON (the same in both releases).
fn status(c: &Cluster, i: usize, field: &str) -> u64 {
    let json: String = redis::cmd("FLOYD.STATUS")
        .arg("JSON")
        .query(&mut c.connect(i))
        .unwrap();
    let at = json
        .find(&format!("\"{field}\":"))
        .unwrap_or_else(|| panic!("no {field} in {json}"));
    let digits = json[at + field.len() + 3..]
        .split(|ch: char| !ch.is_ascii_digit())
        .next();
    digits.unwrap().parse().unwrap()
}

/// How many snapshots from a leader a node has installed in all its lives
/// (its stderr, appended across restarts; both releases log this line).
fn installs(log: &Path) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .matches("snapshot installed")
        .count()
}

/// A 3-node cluster of the old release, upgraded one node at a time while
/// it serves. The leadership crosses between versions both ways, and
/// snapshots go from an old leader to a new node and from a new leader to
/// an old node (a node down long enough during an upgrade catches up so).
#[test]
fn rolling_upgrade_from_the_previous_release_serves_throughout() {
    rolling_upgrade(false);
}

/// The same over mutual TLS (certificates naming the node's IP, as the
/// previous release knew them), each node on its own loopback address.
#[test]
fn rolling_upgrade_over_tls() {
    rolling_upgrade(true);
}

fn rolling_upgrade(tls: bool) {
    let (old, new) = (old_raftis(), new_raftis());
    let mut c = match tls {
        false => Cluster::start_with_binary(3, &old),
        true => Cluster::start_apart_with_binary(3, true, false, &old),
    };
    let mut d = Data::default();
    let l = c.wait_for_leader();
    let (a, b) = ((l + 1) % 3, (l + 2) % 3);
    d.write_through_each(&c, "old");
    d.check(&c, "old");

    // 1. A follower becomes new, catching up by the old leader's snapshot;
    //    then the old leader `l` replicates to it, and it forwards its
    //    clients' writes to `l` (old leads new).
    let to_new = |by_snapshot| Bounce {
        crash: false,
        bin: &new,
        by_snapshot,
    };
    bounce(&mut c, &mut d, a, to_new(true), "step 1");
    // The new node found that its leader speaks only version 5.
    let log = c.node(a).log.clone();
    wait_until("node a noting a peer of version 5", || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("speaks protocol version 5")
    });
    lead(&c, l);
    d.write_through_each(&c, "old l leads new a");
    d.check(&c, "old l leads new a");

    // The old leader hands over to the new node (a version-5 TimeoutNow
    // understood by the new release): new leads old. An old node restarted
    // meanwhile (still old) catches up by the new leader's snapshot.
    lead(&c, a);
    d.write_through_each(&c, "new a leads old l, b");
    d.check(&c, "new a leads old l, b");
    let restart_old = Bounce {
        crash: false,
        bin: &old,
        by_snapshot: true,
    };
    bounce(&mut c, &mut d, b, restart_old, "old b restarted");

    // 2. The other old follower is replaced under the new leader.
    bounce(&mut c, &mut d, b, to_new(false), "step 2");
    lead(&c, a);
    d.write_through_each(&c, "new a leads old l");
    d.check(&c, "new a leads old l");

    // 3. Back to the old node (new to old transfer), which then leads two
    //    new followers, and is upgraded by killing it as leader: the new
    //    nodes elect one of themselves and serve while it is down.
    lead(&c, l);
    d.write_through_each(&c, "old l leads new a, b");
    d.check(&c, "old l leads new a, b");
    let crash = Bounce {
        crash: true,
        ..to_new(false)
    };
    bounce(&mut c, &mut d, l, crash, "step 3");

    // All new: everything written at every stage is there, and the
    // cluster still elects (a transfer to the last upgraded node) and writes.
    lead(&c, l);
    d.write_through_each(&c, "all new");
    d.check(&c, "all new");
}

/// A store written only by the old release (its cluster stopped, one node
/// killed without a clean close) opens under the new one, data intact:
/// its snapshot (the log compacted behind it) and the entries after it.
#[test]
fn stores_of_the_previous_release_open_under_the_new_one() {
    let old = old_raftis();
    let mut c = Cluster::start_with_binary(3, &old);
    let mut d = Data::default();
    let l = c.wait_for_leader();
    d.write_through_each(&c, "old");
    let index = status(&c, l, "last_log_index");
    compact_past(&c, &mut d, index, "old, snapshotted");
    d.write_through_each(&c, "old, after the snapshot");
    d.check(&c, "old");
    c.stop(0);
    c.stop(1);
    c.kill9(2);

    for i in 0..3 {
        c.set_binary(i, &new_raftis());
        c.restart(i);
    }
    c.wait_for_leader();
    d.check(&c, "reopened by the new release");
    d.write_through_each(&c, "new");
    d.check(&c, "new");
}
