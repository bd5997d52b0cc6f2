//! Set commands: each member an item of the key (with no value), the
//! header the member count, so SADD and SREM write what they add or remove.

use super::keyspace::Keyspace;
use super::reply::*;
use super::typed_header::{count_header, count_of};
use crate::error::Result;
use crate::state_machine::typed::Kind;
use bytes::Bytes;
use std::collections::BTreeSet;

type Args<'a> = &'a [Bytes];

const PAGE: usize = 4096;

/// The member count (0 if the key is missing); WRONGTYPE for another kind.
fn card(ks: &mut dyn Keyspace, key: &[u8]) -> Result<u64> {
    ks.header(key, Kind::Set).map(|h| h.map_or(0, |h| count_of(&h)))
}

/// Every member, in byte order (a missing key: none).
fn members(ks: &mut dyn Keyspace, key: &[u8]) -> Result<BTreeSet<Bytes>> {
    let mut out = BTreeSet::new();
    if card(ks, key)? == 0 {
        return Ok(out);
    }
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.items(key, after.as_deref(), PAGE)?;
        after = page.last().map(|(m, _)| m.clone());
        out.extend(page.into_iter().map(|(m, _)| m));
        if !more {
            return Ok(out);
        }
    }
}

/// Stores the count, or deletes the key once it is empty.
fn set_card(ks: &mut dyn Keyspace, key: &[u8], n: u64) -> Result<()> {
    if n == 0 {
        ks.delete(key)?;
        return Ok(());
    }
    ks.put_header(key, Kind::Set, count_header(n))
}

fn list(members: impl IntoIterator<Item = Bytes>) -> Reply {
    array(members.into_iter().map(|m| bulk(m.to_vec())).collect())
}

pub fn sadd(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let n = card(ks, &a[0])?;
    let mut added = 0;
    for m in &a[1..] {
        if ks.item(&a[0], m)?.is_none() {
            ks.put_item(&a[0], m, Bytes::new())?;
            added += 1;
        }
    }
    if added > 0 {
        set_card(ks, &a[0], n + added)?;
    }
    Ok(int(added as i64))
}

pub fn srem(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let n = card(ks, &a[0])?;
    let mut removed = 0;
    for m in &a[1..] {
        if n > 0 && ks.item(&a[0], m)?.is_some() {
            ks.delete_item(&a[0], m)?;
            removed += 1;
        }
    }
    if removed > 0 {
        set_card(ks, &a[0], n - removed)?;
    }
    Ok(int(removed as i64))
}

pub fn scard(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(int(card(ks, &a[0])? as i64))
}

pub fn smembers(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(list(members(ks, &a[0])?))
}

pub fn sismember(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    if card(ks, &a[0])? == 0 {
        return Ok(int(0));
    }
    Ok(int(i64::from(ks.item(&a[0], &a[1])?.is_some())))
}

pub fn smismember(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let present = card(ks, &a[0])? > 0;
    let mut out = Vec::with_capacity(a.len() - 1);
    for m in &a[1..] {
        out.push(int(i64::from(present && ks.item(&a[0], m)?.is_some())));
    }
    Ok(array(out))
}

/// SPOP (a write: the member must be the same on every replica, so it is
/// picked from the log's time, not at random) and SRANDMEMBER (a read:
/// at random). `count` as Redis: none for one member (nil if empty), a
/// count for up to that many distinct ones (SRANDMEMBER: negative allows
/// repeats).
pub fn spop_or_random(ks: &mut dyn Keyspace, a: Args, pop: bool) -> Result<Reply> {
    let count = match a.get(1) {
        None => None,
        Some(c) => match parse_int(c) {
            Some(n) if pop && n < 0 => return Ok(error("ERR value is out of range, must be positive")),
            Some(n) => Some(n),
            None => return Ok(not_integer()),
        },
    };
    let all: Vec<Bytes> = members(ks, &a[0])?.into_iter().collect();
    if all.is_empty() {
        return Ok(if count.is_some() { array(Vec::new()) } else { nil() });
    }
    let seed = if pop { ks.now() } else { rand::random() };
    let pick = |i: u64| -> usize {
        let mixed = (seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (mixed % all.len() as u64) as usize
    };
    let chosen: Vec<Bytes> = match count {
        None => vec![all[pick(0)].clone()],
        Some(n) if n < 0 => (0..n.unsigned_abs()).map(|i| all[pick(i)].clone()).collect(),
        Some(n) => {
            // Distinct members: a rotation of the list from a picked start.
            let n = (n as usize).min(all.len());
            let start = pick(0);
            (0..n).map(|i| all[(start + i) % all.len()].clone()).collect()
        }
    };
    if pop {
        for m in &chosen {
            ks.delete_item(&a[0], m)?;
        }
        set_card(ks, &a[0], (all.len() - chosen.len()) as u64)?;
    }
    Ok(match count {
        None => bulk(chosen[0].to_vec()),
        Some(_) => list(chosen),
    })
}

pub fn smove(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let from = card(ks, &a[0])?;
    let to = card(ks, &a[1])?;
    if from == 0 || ks.item(&a[0], &a[2])?.is_none() {
        return Ok(int(0));
    }
    if a[0] == a[1] {
        return Ok(int(1));
    }
    ks.delete_item(&a[0], &a[2])?;
    set_card(ks, &a[0], from - 1)?;
    if ks.item(&a[1], &a[2])?.is_none() {
        ks.put_item(&a[1], &a[2], Bytes::new())?;
        set_card(ks, &a[1], to + 1)?;
    }
    Ok(int(1))
}

/// How SUNION, SINTER and SDIFF combine.
#[derive(Clone, Copy)]
pub enum Combine {
    Union,
    Inter,
    Diff,
}

fn combine(ks: &mut dyn Keyspace, keys: &[Bytes], how: Combine) -> Result<BTreeSet<Bytes>> {
    let mut acc = members(ks, &keys[0])?;
    for k in &keys[1..] {
        let other = members(ks, k)?;
        acc = match how {
            Combine::Union => acc.union(&other).cloned().collect(),
            Combine::Inter => acc.intersection(&other).cloned().collect(),
            Combine::Diff => acc.difference(&other).cloned().collect(),
        };
    }
    Ok(acc)
}

pub fn sop(ks: &mut dyn Keyspace, a: Args, how: Combine) -> Result<Reply> {
    Ok(list(combine(ks, a, how)?))
}

/// SUNIONSTORE, SINTERSTORE, SDIFFSTORE: `a[0]` takes the result (and
/// loses its TTL); its size.
pub fn sop_store(ks: &mut dyn Keyspace, a: Args, how: Combine) -> Result<Reply> {
    let result = combine(ks, &a[1..], how)?;
    ks.delete(&a[0])?;
    for m in &result {
        ks.put_item(&a[0], m, Bytes::new())?;
    }
    set_card(ks, &a[0], result.len() as u64)?;
    Ok(int(result.len() as i64))
}

/// `SINTERCARD numkeys key… [LIMIT n]`.
pub fn sintercard(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let Some(n) = parse_int(&a[0]).filter(|n| *n > 0) else {
        return Ok(error("ERR numkeys should be greater than 0"));
    };
    let n = n as usize;
    if a.len() < 1 + n {
        return Ok(error("ERR Number of keys can't be greater than number of args"));
    }
    let limit = match &a[1 + n..] {
        [] => 0,
        [opt, l] if upper(opt) == "LIMIT" => match parse_int(l) {
            Some(l) if l >= 0 => l as usize,
            _ => return Ok(error("ERR LIMIT can't be negative")),
        },
        _ => return Ok(syntax()),
    };
    let size = combine(ks, &a[1..1 + n], Combine::Inter)?.len();
    Ok(int(if limit > 0 { size.min(limit) } else { size } as i64))
}

/// `SSCAN key cursor [MATCH pattern] [COUNT n]`.
pub fn sscan(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    card(ks, &a[0])?;
    super::keys::scan_items(ks, a, false)
}
