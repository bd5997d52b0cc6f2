//! A full disk (a small tmpfs under every node): writes are refused with a
//! clear error, the nodes stay up and serve what they have, and writes go
//! through again once space comes back, with nothing acknowledged lost.
//! Needs to mount a tmpfs (root, as in CI); elsewhere it says so and skips.

mod common;

use common::{wait_until, Cluster, DEADLINE};
use floyd::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let size = format!("size={mib}m");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `path` until it has no room left.
fn fill(path: &Path) -> PathBuf {
    let filler = path.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 256 << 10];
    while f.write_all(&chunk).and_then(|_| f.sync_data()).is_ok() {}
    filler
}

#[test]
fn a_full_disk_refuses_writes_keeps_the_nodes_up_and_recovers_when_space_returns() {
    let Some(fs) = Tmpfs::mount(128) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let root = fs.path().to_path_buf();
    let c = Cluster::start_tweaked(3, |mut o| {
        o.path = root.join(format!("n{}", o.local_port));
        o.request_timeout = Duration::from_secs(2);
        o.leader_wait = Duration::from_secs(2);
        o
    });
    let leader = c.wait_for_leader();
    for i in 0..20 {
        c.write_retrying(leader, format!("k{i}").as_bytes(), b"before");
    }
    let filler = fill(fs.path());

    // Writes fail (the first may be in doubt), then are refused at once,
    // clearly. RocksDB preallocates its write-ahead logs, so small writes
    // could go on for a while in space taken before the disk filled: large
    // ones use it up at once.
    let large = vec![b'x'; 32 << 10];
    let deadline = Instant::now() + DEADLINE;
    let refusal = loop {
        assert!(
            Instant::now() < deadline,
            "writes were never refused on a full disk"
        );
        match c.node(leader).write(b"during", &large) {
            Err(Error::Io(m)) if m.contains("disk is full") => break m,
            Err(Error::Timeout(_) | Error::NoLeader(_)) | Ok(()) => {}
            Err(e) => panic!("unexpected error on a full disk: {e}"),
        }
    };
    assert!(refusal.contains("not applied"), "{refusal}");
    // The nodes stay up: none failed (a failed node answers every call
    // `Failed`), and each still serves its own copy.
    for (i, node) in c.running() {
        assert_eq!(node.dirty_read(b"k0").unwrap(), b"before", "node {i}");
    }

    std::fs::remove_file(filler).unwrap();
    let mut after = 0;
    wait_until("writes to go through again once there is space", || {
        match c.node(leader).write(format!("after{after}").as_bytes(), b"y") {
            Ok(()) => {
                after += 1;
                true
            }
            Err(_) => false,
        }
    });
    for i in 0..20 {
        c.write_retrying(leader, format!("k{i}").as_bytes(), b"after");
    }
    for (_, node) in c.running() {
        for i in 0..20 {
            assert_eq!(node.read(format!("k{i}").as_bytes()).unwrap(), b"after");
        }
        node.write(b"every node takes writes", b"again").unwrap();
    }
    drop(c);
}
