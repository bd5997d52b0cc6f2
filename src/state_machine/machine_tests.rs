use super::*;
use crate::state_machine::{encode_command, CommandKind};
use crate::wire::EntryType;
use bytes::Bytes;

fn command(index: u64, cmd: CommandKind) -> Entry {
    Entry {
        term: 1,
        index,
        r#type: EntryType::EntryCommand as i32,
        payload: encode_command(cmd),
        leader_time_ms: 0,
        log_time_rule: 0,
    }
}

fn put(index: u64, k: &str, v: &str) -> Entry {
    command(
        index,
        CommandKind::Put {
            key: Bytes::from(k.to_string()),
            value: Bytes::from(v.to_string()),
        },
    )
}

/// Keeps the last command; the snapshot is the file `last`.
struct Last(Vec<u8>);

impl StateMachine for Last {
    fn apply(&mut self, _index: u64, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
        Ok(std::mem::replace(&mut self.0, data.to_vec()))
    }
    fn snapshot_save(&mut self, dir: &Path) -> std::result::Result<(), String> {
        std::fs::write(dir.join("last"), &self.0).map_err(|e| e.to_string())
    }
    fn snapshot_load(&mut self, dir: &Path) -> std::result::Result<(), String> {
        self.0 = std::fs::read(dir.join("last")).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn custom(index: u64, data: &str) -> Entry {
    command(
        index,
        CommandKind::Custom {
            data: Bytes::from(data.to_string()),
        },
    )
}

#[test]
fn a_key_value_snapshot_loads_into_another_store_and_stays_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let a = Machine::open(&dir.path().join("a/db"), None).unwrap();
    a.apply(&[put(1, "x", "1"), put(2, "y", "2"), put(3, "x", "3")])
        .unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(a.snapshot_save(&snap).unwrap(), 3);
    // Taken while writes go on: later ones are not in it.
    a.apply(&[put(4, "z", "late")]).unwrap();

    let b = Machine::open(&dir.path().join("b/db"), None).unwrap();
    b.apply(&[put(1, "old", "gone")]).unwrap();
    b.snapshot_load(&snap, 3).unwrap();
    assert_eq!(b.applied_index().unwrap(), 3);
    assert_eq!(b.get(b"x").unwrap().unwrap(), b"3");
    assert_eq!(b.get(b"y").unwrap().unwrap(), b"2");
    assert_eq!(b.get(b"z").unwrap(), None);
    assert_eq!(b.get(b"old").unwrap(), None, "the whole state was replaced");
    assert!(!dir.path().join("b/db.incoming").exists());

    // The snapshot is still whole: it loads again, into a third store.
    let c = Machine::open(&dir.path().join("c/db"), None).unwrap();
    c.snapshot_load(&snap, 3).unwrap();
    assert_eq!(c.get(b"x").unwrap().unwrap(), b"3");
    // And the loaded store goes on applying, and survives a reopen.
    b.apply(&[put(4, "w", "4")]).unwrap();
    b.close();
    let b = Machine::open(&dir.path().join("b/db"), None).unwrap();
    assert_eq!(b.applied_index().unwrap(), 4);
    assert_eq!(b.get(b"w").unwrap().unwrap(), b"4");
}

#[test]
fn a_key_value_snapshot_at_another_index_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let a = Machine::open(&dir.path().join("a/db"), None).unwrap();
    a.apply(&[put(1, "x", "1")]).unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    a.snapshot_save(&snap).unwrap();
    let b = Machine::open(&dir.path().join("b/db"), None).unwrap();
    assert!(matches!(b.snapshot_load(&snap, 7), Err(Error::Corruption(_))));
}

#[test]
fn a_leftover_incoming_directory_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let a = Machine::open(&dir.path().join("a/db"), None).unwrap();
    a.apply(&[put(1, "x", "1")]).unwrap();
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    a.snapshot_save(&snap).unwrap();
    let b = Machine::open(&dir.path().join("b/db"), None).unwrap();
    std::fs::create_dir_all(dir.path().join("b/db.incoming/junk")).unwrap();
    b.snapshot_load(&snap, 1).unwrap();
    assert_eq!(b.get(b"x").unwrap().unwrap(), b"1");
}

#[test]
fn the_key_value_store_refuses_a_custom_command_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Machine::open(&dir.path().join("db"), None).unwrap();
    assert!(!kv.is_user());
    let out = kv.apply(&[custom(1, "hello"), put(2, "k", "v")]).unwrap();
    assert!(matches!(&out[0].result, Err(Error::InvalidArgument(m)) if m.contains("key-value store")));
    assert_eq!(out[1].result, Ok(None));
    assert_eq!(kv.applied_index().unwrap(), 2);
}

#[test]
fn a_user_machine_round_trips_its_snapshot_through_machine() {
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("db");
    let a = Machine::open(&unused, Some(Box::new(Last(Vec::new())))).unwrap();
    assert!(
        a.is_user() && !unused.exists(),
        "a user machine leaves the db directory alone"
    );
    let out = a.apply(&[custom(1, "one"), custom(2, "two")]).unwrap();
    assert_eq!(out[1].result, Ok(Some(Bytes::from_static(b"one"))));
    assert_eq!(a.locks_held().unwrap(), 0);
    assert!(matches!(a.get(b"k"), Err(Error::InvalidArgument(m)) if m.contains("has no keys")));
    let snap = dir.path().join("snap");
    std::fs::create_dir(&snap).unwrap();
    assert_eq!(a.snapshot_save(&snap).unwrap(), 2);

    let b = Machine::open(&unused, Some(Box::new(Last(Vec::new())))).unwrap();
    b.snapshot_load(&snap, 2).unwrap();
    assert_eq!(b.applied_index().unwrap(), 2);
    let out = b.apply(&[custom(3, "three")]).unwrap();
    assert_eq!(out[0].result, Ok(Some(Bytes::from_static(b"two"))));
    assert!(snap.join("last").exists(), "the snapshot stays");
}
