//! The coordination calls of the built-in store (protocol 6): revisions,
//! compare-and-swap, transactions and range scans, etcd's model
//! (`state_machine/revision.rs`, `txn.rs`, `range.rs`).

use super::Floyd;
use crate::error::{Error, Result};
use crate::state_machine::CommandKind;
use crate::wire::{compare, txn_op, Compare, Delete, Get, KvList as WireList, Put, Range, TxnOp, TxnResult};
use bytes::Bytes;
use prost::Message as _;

pub use crate::state_machine::revision::KvMeta;

/// A key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub meta: KvMeta,
}

/// One page of a range scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvList {
    /// In key order.
    pub kvs: Vec<KeyValue>,
    /// More keys in the range lie past the last one here: scan again from
    /// its key followed by a zero byte.
    pub more: bool,
    /// The group's revision at the state read.
    pub revision: u64,
}

/// How a transaction's comparison compares (etcd's `Compare.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// A transaction's branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// Runs if every comparison holds.
    Then,
    /// Runs otherwise.
    Else,
}

/// A transaction: comparisons, then one branch of puts, deletes and gets,
/// applied atomically at one revision on every replica. At most
/// [`MAX_TXN_OPS`](crate::limits::MAX_TXN_OPS) comparisons and operations
/// per branch, [`MAX_TXN_BYTES`](crate::limits::MAX_TXN_BYTES) in all, and
/// a key written at most once per branch.
#[derive(Debug, Clone, Default)]
pub struct Txn(crate::wire::Txn);

/// What a transaction answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the `Then` branch ran (every comparison held).
    pub succeeded: bool,
    /// The group's revision after the transaction.
    pub revision: u64,
    /// The gets of the branch that ran, in order; a missing key is left out.
    pub gets: Vec<KeyValue>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Compares `key`'s value with `value` (a missing key is unequal to
    /// every value, and neither less nor greater).
    pub fn if_value(&mut self, key: &[u8], cmp: Cmp, value: &[u8]) -> &mut Txn {
        self.compare(key, compare::Target::Value, cmp, value, 0)
    }

    /// Compares `key`'s version (0: the key is absent).
    pub fn if_version(&mut self, key: &[u8], cmp: Cmp, version: u64) -> &mut Txn {
        self.compare(key, compare::Target::Version, cmp, b"", version)
    }

    /// Compares `key`'s last modification's revision (0: absent).
    pub fn if_mod_revision(&mut self, key: &[u8], cmp: Cmp, revision: u64) -> &mut Txn {
        self.compare(key, compare::Target::ModRevision, cmp, b"", revision)
    }

    /// Compares `key`'s creation's revision (0: absent).
    pub fn if_create_revision(&mut self, key: &[u8], cmp: Cmp, revision: u64) -> &mut Txn {
        self.compare(key, compare::Target::CreateRevision, cmp, b"", revision)
    }

    /// Puts `key` in `branch`, attached to lease `lease` (0: none). A lease
    /// that does not exist when the branch runs makes the transaction
    /// answer `NotFound`, writing nothing.
    pub fn put(&mut self, branch: Branch, key: &[u8], value: &[u8], lease: u64) -> &mut Txn {
        let op = txn_op::Op::Put(Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
            lease,
        });
        self.op(branch, op)
    }

    pub fn delete(&mut self, branch: Branch, key: &[u8]) -> &mut Txn {
        let op = txn_op::Op::Delete(Delete {
            key: Bytes::copy_from_slice(key),
        });
        self.op(branch, op)
    }

    /// Reads `key` (with its revisions) in `branch`, after the branch's
    /// earlier writes.
    pub fn get(&mut self, branch: Branch, key: &[u8]) -> &mut Txn {
        let op = txn_op::Op::Get(Get {
            key: Bytes::copy_from_slice(key),
        });
        self.op(branch, op)
    }

    fn compare(
        &mut self,
        key: &[u8],
        target: compare::Target,
        cmp: Cmp,
        value: &[u8],
        number: u64,
    ) -> &mut Txn {
        let op = match cmp {
            Cmp::Equal => compare::Op::Equal,
            Cmp::NotEqual => compare::Op::NotEqual,
            Cmp::Less => compare::Op::Less,
            Cmp::Greater => compare::Op::Greater,
        };
        self.0.compares.push(Compare {
            key: Bytes::copy_from_slice(key),
            target: target as i32,
            op: op as i32,
            value: Bytes::copy_from_slice(value),
            number,
        });
        self
    }

    fn op(&mut self, branch: Branch, op: txn_op::Op) -> &mut Txn {
        let ops = match branch {
            Branch::Then => &mut self.0.then,
            Branch::Else => &mut self.0.otherwise,
        };
        ops.push(TxnOp { op: Some(op) });
        self
    }
}

/// The first key past every key that starts with `prefix`: a prefix scan
/// or watch is the range `[prefix, prefix_end(prefix))`. Empty (to the last
/// key) when no such key exists (an empty prefix, or one of 0xff bytes only).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    Vec::new()
}

impl Floyd {
    /// Runs `txn` (linearizable, one log entry). `Busy` while a member of
    /// the group still runs the previous release (a rolling upgrade).
    pub fn txn(&self, txn: &Txn) -> Result<TxnResponse> {
        self.key_value_only("txn")?;
        let bytes = self.execute(CommandKind::Txn(txn.0.clone()))?;
        let r = TxnResult::decode(bytes.as_ref())
            .map_err(|e| Error::Internal(format!("a transaction's result does not decode: {e}")))?;
        Ok(TxnResponse {
            succeeded: r.succeeded,
            revision: r.revision,
            gets: r.gets.into_iter().map(key_value).collect(),
        })
    }

    /// Stores `value` under `key` only if the key's last modification is
    /// at `expected_mod_revision` (0: only if the key is absent); the new
    /// revision. `Conflict` (nothing written) if not.
    pub fn write_if(&self, key: &[u8], value: &[u8], expected_mod_revision: u64) -> Result<u64> {
        let mut t = Txn::new();
        expect_mod_revision(&mut t, key, expected_mod_revision);
        t.put(Branch::Then, key, value, 0);
        self.swap(&t, key)
    }

    /// Deletes `key` only if its last modification is at
    /// `expected_mod_revision` (0: only if absent, which deletes nothing).
    /// `Conflict` (nothing deleted) if not.
    pub fn delete_if(&self, key: &[u8], expected_mod_revision: u64) -> Result<()> {
        let mut t = Txn::new();
        expect_mod_revision(&mut t, key, expected_mod_revision);
        t.delete(Branch::Then, key);
        self.swap(&t, key).map(|_| ())
    }

    fn swap(&self, t: &Txn, key: &[u8]) -> Result<u64> {
        let r = self.txn(t)?;
        if !r.succeeded {
            return Err(Error::Conflict(format!(
                "key {:?} is not at the revision expected",
                String::from_utf8_lossy(key)
            )));
        }
        Ok(r.revision)
    }

    /// `key`'s value and revisions, linearizable (ReadIndex, as `read`).
    /// `NotFound` if absent.
    pub fn read_meta(&self, key: &[u8]) -> Result<(Vec<u8>, KvMeta)> {
        let list = self.range(exact(key), true)?;
        one_key(list, key)
    }

    /// `key`'s value and revisions in this node's state machine: fast,
    /// possibly stale (as `dirty_read`).
    pub fn dirty_read_meta(&self, key: &[u8]) -> Result<(Vec<u8>, KvMeta)> {
        let list = self.range(exact(key), false)?;
        one_key(list, key)
    }

    /// The keys in `[start, end)` in byte order (`end` empty: to the last
    /// key), with values and revisions: at most `limit` (0: as many as a page
    /// of 32 MiB holds), `more` if the range goes on. Linearizable
    /// (ReadIndex, as `read`); read from one snapshot of the store, so a
    /// long scan neither sees half a transaction nor holds writes up.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KvList> {
        self.range(range(start, end, limit, false), true).map(list)
    }

    /// [`Floyd::scan`] of this node's state machine: fast, possibly stale.
    pub fn dirty_scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KvList> {
        self.range(range(start, end, limit, false), false).map(list)
    }

    /// The number of keys in `[start, end)`, linearizable.
    pub fn count(&self, start: &[u8], end: &[u8]) -> Result<u64> {
        self.range(range(start, end, 0, true), true).map(|l| l.count)
    }

    fn range(&self, r: Range, linearizable: bool) -> Result<WireList> {
        self.key_value_only("scan")?;
        let cmd = CommandKind::Range(r);
        if !linearizable {
            cmd.validate()?;
            self.node.check_usable()?;
            let CommandKind::Range(r) = cmd else {
                unreachable!()
            };
            return self.node.state_machine.range(&r);
        }
        let bytes = self.execute(cmd)?;
        WireList::decode(bytes.as_ref())
            .map_err(|e| Error::Internal(format!("a range's result does not decode: {e}")))
    }
}

fn expect_mod_revision(t: &mut Txn, key: &[u8], expected: u64) {
    match expected {
        // Absent: version 0 (a key written before revisions has version 1).
        0 => t.if_version(key, Cmp::Equal, 0),
        rev => t.if_mod_revision(key, Cmp::Equal, rev),
    };
}

fn exact(key: &[u8]) -> Range {
    let mut end = key.to_vec();
    end.push(0);
    Range {
        start: Bytes::copy_from_slice(key),
        end: Bytes::from(end),
        limit: 1,
        count_only: false,
    }
}

fn range(start: &[u8], end: &[u8], limit: usize, count_only: bool) -> Range {
    Range {
        start: Bytes::copy_from_slice(start),
        end: Bytes::copy_from_slice(end),
        limit: limit as u64,
        count_only,
    }
}

fn one_key(list: WireList, key: &[u8]) -> Result<(Vec<u8>, KvMeta)> {
    match list.kvs.into_iter().next() {
        Some(kv) if kv.key.as_ref() == key => {
            let kv = key_value(kv);
            Ok((kv.value, kv.meta))
        }
        _ => Err(Error::NotFound),
    }
}

fn key_value(kv: crate::wire::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key.to_vec(),
        value: kv.value.to_vec(),
        meta: KvMeta {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        },
    }
}

fn list(l: WireList) -> KvList {
    KvList {
        kvs: l.kvs.into_iter().map(key_value).collect(),
        more: l.more,
        revision: l.revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_successor_and_an_all_ff_prefix_runs_to_the_last_key() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"");
        assert_eq!(prefix_end(b""), b"");
    }
}
