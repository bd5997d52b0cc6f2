//! Hash commands: a field write writes that field and the header (the
//! field count), never the whole hash.

use super::keyspace::Keyspace;
use super::reply::*;
use super::typed_header::{count_header, count_of};
use crate::error::Result;
use crate::state_machine::typed::Kind;
use bytes::Bytes;

type Args<'a> = &'a [Bytes];

/// Fields listed per page while a command walks a hash.
const PAGE: usize = 4096;

/// The hash's field count, 0 if the key is missing; `Err` (WRONGTYPE) if
/// it holds something else.
fn hash_len(ks: &mut dyn Keyspace, key: &[u8]) -> Result<u64> {
    ks.header(key, Kind::Hash).map(|h| h.map_or(0, |h| count_of(&h)))
}

/// HSET and HMSET: sets every pair; the number of fields added.
pub fn hset(ks: &mut dyn Keyspace, a: Args, name: &str) -> Result<Reply> {
    if a.len() < 3 || a.len() % 2 != 1 {
        return Ok(wrong_args(name));
    }
    let mut len = hash_len(ks, &a[0])?;
    let mut added = 0;
    for fv in a[1..].chunks(2) {
        if ks.item(&a[0], &fv[0])?.is_none() {
            added += 1;
        }
        ks.put_item(&a[0], &fv[0], fv[1].clone())?;
    }
    len += added;
    ks.put_header(&a[0], Kind::Hash, count_header(len))?;
    Ok(if name == "HMSET" { ok() } else { int(added as i64) })
}

pub fn hsetnx(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let len = hash_len(ks, &a[0])?;
    if ks.item(&a[0], &a[1])?.is_some() {
        return Ok(int(0));
    }
    ks.put_item(&a[0], &a[1], a[2].clone())?;
    ks.put_header(&a[0], Kind::Hash, count_header(len + 1))?;
    Ok(int(1))
}

pub fn hget(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    hash_len(ks, &a[0])?;
    Ok(bulk_or_nil(ks.item(&a[0], &a[1])?))
}

pub fn hmget(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    hash_len(ks, &a[0])?;
    let mut out = Vec::with_capacity(a.len() - 1);
    for f in &a[1..] {
        out.push(bulk_or_nil(ks.item(&a[0], f)?));
    }
    Ok(array(out))
}

pub fn hdel(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let len = hash_len(ks, &a[0])?;
    if len == 0 {
        return Ok(int(0));
    }
    let mut removed = 0;
    for f in &a[1..] {
        if ks.item(&a[0], f)?.is_some() {
            ks.delete_item(&a[0], f)?;
            removed += 1;
        }
    }
    if removed == len {
        // The last field gone, the key goes (as in Redis).
        ks.delete(&a[0])?;
    } else if removed > 0 {
        ks.put_header(&a[0], Kind::Hash, count_header(len - removed))?;
    }
    Ok(int(removed as i64))
}

pub fn hexists(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    hash_len(ks, &a[0])?;
    Ok(int(i64::from(ks.item(&a[0], &a[1])?.is_some())))
}

pub fn hlen(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(int(hash_len(ks, &a[0])? as i64))
}

pub fn hstrlen(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    hash_len(ks, &a[0])?;
    Ok(int(ks.item(&a[0], &a[1])?.map_or(0, |v| v.len()) as i64))
}

/// Every field and value, in field order.
pub fn all_fields(ks: &mut dyn Keyspace, key: &[u8]) -> Result<Vec<(Bytes, Bytes)>> {
    let mut out = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.items(key, after.as_deref(), PAGE)?;
        after = page.last().map(|(f, _)| f.clone());
        out.extend(page);
        if !more {
            return Ok(out);
        }
    }
}

/// HGETALL, HKEYS, HVALS.
pub fn hgetall(ks: &mut dyn Keyspace, a: Args, name: &str) -> Result<Reply> {
    if hash_len(ks, &a[0])? == 0 {
        return Ok(array(Vec::new()));
    }
    let fields = all_fields(ks, &a[0])?;
    let out = match name {
        "HKEYS" => fields.into_iter().map(|(f, _)| bulk(f.to_vec())).collect(),
        "HVALS" => fields.into_iter().map(|(_, v)| bulk(v.to_vec())).collect(),
        _ => fields
            .into_iter()
            .flat_map(|(f, v)| [bulk(f.to_vec()), bulk(v.to_vec())])
            .collect(),
    };
    Ok(array(out))
}

/// HINCRBY and HINCRBYFLOAT.
pub fn hincr(ks: &mut dyn Keyspace, a: Args, float: bool) -> Result<Reply> {
    let len = hash_len(ks, &a[0])?;
    let current = ks.item(&a[0], &a[1])?;
    let (text, reply) = if float {
        let Some(by) = parse_float(&a[2]) else {
            return Ok(not_float());
        };
        let now = match &current {
            None => 0.0,
            Some(v) => match parse_float(v) {
                Some(n) => n,
                None => return Ok(error("ERR hash value is not a float")),
            },
        };
        let next = now + by;
        if !next.is_finite() {
            return Ok(error("ERR increment would produce NaN or Infinity"));
        }
        let t = format_float(next);
        (t.clone(), bulk(t))
    } else {
        let Some(by) = parse_int(&a[2]) else {
            return Ok(not_integer());
        };
        let now = match &current {
            None => 0,
            Some(v) => match parse_int(v) {
                Some(n) => n,
                None => return Ok(error("ERR hash value is not an integer")),
            },
        };
        let Some(next) = now.checked_add(by) else {
            return Ok(overflow());
        };
        (next.to_string(), int(next))
    };
    ks.put_item(&a[0], &a[1], Bytes::from(text))?;
    let len = len + u64::from(current.is_none());
    ks.put_header(&a[0], Kind::Hash, count_header(len))?;
    Ok(reply)
}

/// `HSCAN key cursor [MATCH pattern] [COUNT n]`: cursors as SCAN's (the
/// hex of the last field looked at).
pub fn hscan(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    hash_len(ks, &a[0])?;
    super::keys::scan_items(ks, a, true)
}
