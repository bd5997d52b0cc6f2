//! Transactions (protocol 6), etcd's `Txn().If().Then().Else()`: every
//! comparison is checked against the state at the entry, then one branch
//! runs in full, its puts and deletes at one new revision (only if one of
//! them changed something), its gets seeing the branch's earlier writes.
//! Compare-and-swap (`write_if`, `delete_if`) is a transaction of one
//! comparison and one operation.
//!
//! Deterministic: the same entry gives the same result and the same writes
//! on every replica. A transaction that cannot run (a lease that does not
//! exist) writes nothing and answers the same error everywhere.

use super::revision::{KvMeta, View};
use crate::error::{Error, Result};
use crate::limits::{MAX_KEY_BYTES, MAX_TXN_BYTES, MAX_TXN_OPS, MAX_VALUE_BYTES};
use crate::wire::{compare, txn_op, Compare, KeyValue, Txn, TxnOp, TxnResult};
use bytes::Bytes;
use prost::Message as _;
use std::collections::HashSet;

/// Checks a transaction's shape and sizes before it is proposed (and again
/// at apply, where a refusal is the same on every replica).
pub fn validate(txn: &Txn) -> Result<()> {
    let size = txn.encoded_len();
    if size > MAX_TXN_BYTES {
        return Err(Error::InvalidArgument(format!(
            "a transaction of {size} bytes exceeds {MAX_TXN_BYTES}"
        )));
    }
    for (what, n) in [
        ("comparisons", txn.compares.len()),
        ("operations in its then branch", txn.then.len()),
        ("operations in its else branch", txn.otherwise.len()),
    ] {
        if n > MAX_TXN_OPS {
            return Err(Error::InvalidArgument(format!(
                "a transaction has {n} {what}; at most {MAX_TXN_OPS}"
            )));
        }
    }
    for c in &txn.compares {
        check_key(&c.key)?;
        compare::Target::try_from(c.target)
            .map_err(|_| Error::InvalidArgument(format!("unknown comparison target {}", c.target)))?;
        compare::Op::try_from(c.op)
            .map_err(|_| Error::InvalidArgument(format!("unknown comparison {}", c.op)))?;
    }
    validate_branch(&txn.then)?;
    validate_branch(&txn.otherwise)
}

fn validate_branch(ops: &[TxnOp]) -> Result<()> {
    // etcd refuses a key written twice in one branch: its revisions would
    // say one write happened where two did.
    let mut written = HashSet::new();
    for op in ops {
        match &op.op {
            Some(txn_op::Op::Put(p)) => {
                check_key(&p.key)?;
                if p.value.len() > MAX_VALUE_BYTES {
                    return Err(Error::InvalidArgument(format!(
                        "value of {} bytes exceeds {MAX_VALUE_BYTES}",
                        p.value.len()
                    )));
                }
                if !written.insert(p.key.clone()) {
                    return Err(duplicate(&p.key));
                }
            }
            Some(txn_op::Op::Delete(d)) => {
                check_key(&d.key)?;
                if !written.insert(d.key.clone()) {
                    return Err(duplicate(&d.key));
                }
            }
            Some(txn_op::Op::Get(g)) => check_key(&g.key)?,
            None => {
                return Err(Error::InvalidArgument(
                    "a transaction operation without a kind".into(),
                ))
            }
        }
    }
    Ok(())
}

fn duplicate(key: &[u8]) -> Error {
    Error::InvalidArgument(format!(
        "a transaction branch writes key {:?} twice",
        String::from_utf8_lossy(key)
    ))
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidArgument(format!(
            "a key of {} bytes (1 to {MAX_KEY_BYTES})",
            key.len()
        )));
    }
    Ok(())
}

/// Applies `txn` to `view`; the result as encoded `TxnResult`, or the
/// error every replica answers (nothing written then).
pub(super) fn apply(view: &mut View<'_>, txn: &Txn) -> Result<Result<Option<Bytes>>> {
    if let Err(e) = validate(txn) {
        return Ok(Err(e));
    }
    let mut succeeded = true;
    for c in &txn.compares {
        if !holds(view, c)? {
            succeeded = false;
            break;
        }
    }
    let branch = if succeeded { &txn.then } else { &txn.otherwise };
    // Checked before any write (etcd's `checkTxn`): a put naming a lease
    // that does not exist fails the whole transaction.
    for op in branch {
        if let Some(txn_op::Op::Put(p)) = &op.op {
            if let Err(e) = super::lease::check_exists(view, p.lease) {
                return Ok(Err(e));
            }
        }
    }
    let next = view.revision + 1;
    let mut changed = false;
    let mut gets = Vec::new();
    for op in branch {
        match &op.op {
            Some(txn_op::Op::Put(p)) => {
                view.put(&p.key, &p.value, p.lease, Some(next))?;
                changed = true;
            }
            Some(txn_op::Op::Delete(d)) => changed |= view.delete(&d.key)?,
            Some(txn_op::Op::Get(g)) => {
                if let Some(kv) = key_value(view, &g.key)? {
                    gets.push(kv);
                }
            }
            None => {}
        }
    }
    if changed {
        view.revision = next;
    }
    let result = TxnResult {
        succeeded,
        revision: view.revision,
        gets,
    };
    Ok(Ok(Some(Bytes::from(result.encode_to_vec()))))
}

/// `key` with its value and revisions, if it exists.
pub(super) fn key_value(view: &View<'_>, key: &Bytes) -> Result<Option<KeyValue>> {
    let Some(meta) = view.meta(key)? else {
        return Ok(None);
    };
    let value = view.value(key)?.unwrap_or_default();
    Ok(Some(with_meta(key.clone(), value, meta)))
}

pub(super) fn with_meta(key: Bytes, value: Bytes, meta: KvMeta) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: meta.create_revision,
        mod_revision: meta.mod_revision,
        version: meta.version,
        lease: meta.lease,
    }
}

/// Whether comparison `c` holds. A missing key has version and revisions
/// 0; against a value, a missing key is unequal to every value and neither
/// less nor greater.
fn holds(view: &View<'_>, c: &Compare) -> Result<bool> {
    use compare::{Op, Target};
    let op = Op::try_from(c.op).unwrap_or(Op::Equal);
    let ordering = match Target::try_from(c.target).unwrap_or(Target::Value) {
        Target::Value => match view.value(&c.key)? {
            Some(v) => v.as_ref().cmp(c.value.as_ref()),
            None => return Ok(op == Op::NotEqual),
        },
        target => {
            let m = view.meta(&c.key)?.unwrap_or_default();
            let n = match target {
                Target::Version => m.version,
                Target::CreateRevision => m.create_revision,
                _ => m.mod_revision,
            };
            n.cmp(&c.number)
        }
    };
    Ok(match op {
        Op::Equal => ordering.is_eq(),
        Op::NotEqual => !ordering.is_eq(),
        Op::Less => ordering.is_lt(),
        Op::Greater => ordering.is_gt(),
    })
}
