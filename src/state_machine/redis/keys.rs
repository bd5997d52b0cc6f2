//! Commands on keys whatever they hold, and their TTLs.

use super::keyspace::{Keyspace, Ttl};
use super::reply::*;
use super::strings::deadline_of;
use crate::error::Result;
use crate::state_machine::typed::Kind;
use bytes::Bytes;

type Args<'a> = &'a [Bytes];

/// Keys a SCAN step looks at by default (Redis's COUNT).
const SCAN_COUNT: usize = 10;
/// Keys listed per page while KEYS or DBSIZE walks the store.
const PAGE: usize = 4096;

/// DEL and UNLINK: how many of the keys existed.
pub fn del(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let mut n = 0;
    for k in a {
        n += i64::from(ks.delete(k)?);
    }
    Ok(int(n))
}

/// EXISTS and TOUCH: a key named twice counts twice, as in Redis.
pub fn exists(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let mut n = 0;
    for k in a {
        n += i64::from(ks.kind(k)?.is_some());
    }
    Ok(int(n))
}

pub fn type_of(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(status(ks.kind(&a[0])?.map_or("none", Kind::name)))
}

/// Writes `src`'s value (a string, or a hash's or list's items and
/// header) and TTL to `dst`, replacing whatever `dst` held.
fn copy_value(ks: &mut dyn Keyspace, src: &[u8], dst: &[u8], kind: Kind) -> Result<()> {
    let ttl = ks.deadline(src);
    if kind == Kind::String {
        let value = ks.get(src)?.unwrap_or_default();
        return ks.put(dst, value, ttl.map_or(Ttl::Clear, Ttl::At));
    }
    let header = ks.raw_value(src)?.unwrap_or_default();
    let mut items = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.items(src, after.as_deref(), PAGE)?;
        after = page.last().map(|(s, _)| s.clone());
        items.extend(page);
        if !more {
            break;
        }
    }
    ks.delete(dst)?;
    for (sub, v) in items {
        ks.put_item(dst, &sub, v)?;
    }
    ks.put_header(dst, kind, header)?;
    if ttl.is_some() {
        ks.set_deadline(dst, ttl)?;
    }
    Ok(())
}

/// RENAME (`nx`: RENAMENX): the value and its TTL move.
pub fn rename(ks: &mut dyn Keyspace, a: Args, nx: bool) -> Result<Reply> {
    let Some(kind) = ks.kind(&a[0])? else {
        return Ok(error("ERR no such key"));
    };
    if nx && ks.kind(&a[1])?.is_some() {
        return Ok(int(0));
    }
    if a[0] != a[1] {
        copy_value(ks, &a[0], &a[1], kind)?;
        ks.delete(&a[0])?;
    }
    Ok(if nx { int(1) } else { ok() })
}

/// `COPY source destination [DB 0] [REPLACE]`.
pub fn copy(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let mut replace = false;
    let mut i = 2;
    while i < a.len() {
        match upper(&a[i]).as_str() {
            "REPLACE" => replace = true,
            "DB" if i + 1 < a.len() => {
                match parse_int(&a[i + 1]) {
                    Some(0) => {}
                    Some(_) => return Ok(error("ERR DB index is out of range")),
                    None => return Ok(not_integer()),
                }
                i += 1;
            }
            _ => return Ok(syntax()),
        }
        i += 1;
    }
    if a[0] == a[1] {
        return Ok(error("ERR source and destination objects are the same"));
    }
    let Some(kind) = ks.kind(&a[0])? else {
        return Ok(int(0));
    };
    if !replace && ks.kind(&a[1])?.is_some() {
        return Ok(int(0));
    }
    copy_value(ks, &a[0], &a[1], kind)?;
    Ok(int(1))
}

/// `KEYS pattern`: every live key matching, in byte order.
pub fn keys(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let mut out = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.keys_after(after.as_deref(), PAGE)?;
        out.extend(
            page.iter()
                .filter(|k| super::glob::matches(&a[0], k))
                .map(|k| bulk(k.to_vec())),
        );
        if !more {
            return Ok(array(out));
        }
        after = page.last().cloned();
    }
}

pub fn dbsize(ks: &mut dyn Keyspace) -> Result<Reply> {
    let mut n = 0;
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.keys_after(after.as_deref(), PAGE)?;
        n += page.len() as i64;
        if !more {
            return Ok(int(n));
        }
        after = page.last().cloned();
    }
}

/// `[keys, keys with a TTL]`, live ones.
pub fn keyspace(ks: &mut dyn Keyspace) -> Result<Reply> {
    let (mut keys, mut expiring) = (0, 0);
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.keys_after(after.as_deref(), PAGE)?;
        keys += page.len() as i64;
        expiring += page.iter().filter(|k| ks.deadline(k).is_some()).count() as i64;
        if !more {
            return Ok(array(vec![int(keys), int(expiring)]));
        }
        after = page.last().cloned();
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`. The cursor is `0`
/// to start, and otherwise the hex of the last key a step looked at (the
/// keys are in byte order, so a step goes on after it); `0` again once
/// done. Keys added or deleted meanwhile may be seen or not, as in Redis.
pub fn scan(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let after = match a[0].as_ref() {
        b"0" => None,
        hex => match from_hex(hex) {
            Some(k) => Some(k),
            None => return Ok(error("ERR invalid cursor")),
        },
    };
    let (pattern, count, only) = match scan_options(&a[1..], true) {
        Ok(o) => o,
        Err(r) => return Ok(r),
    };
    let (page, more) = ks.keys_after(after.as_deref(), count)?;
    let cursor = match (more, page.last()) {
        (true, Some(last)) => to_hex(last),
        _ => "0".to_string(),
    };
    let mut found = Vec::new();
    for k in &page {
        if pattern.as_ref().is_some_and(|p| !super::glob::matches(p, k)) {
            continue;
        }
        if let Some(t) = &only {
            if ks.kind(k)?.map(Kind::name) != Some(t.as_str()) {
                continue;
            }
        }
        found.push(bulk(k.to_vec()));
    }
    Ok(array(vec![bulk(cursor.into_bytes()), array(found)]))
}

/// HSCAN and SSCAN (`key cursor [MATCH pattern] [COUNT n]`) over the
/// key's items: each item and its value (`pairs`, a hash's) or the item
/// alone (a set's members); cursors as SCAN's, the hex of the last item.
pub(super) fn scan_items(ks: &mut dyn Keyspace, a: Args, pairs: bool) -> Result<Reply> {
    let after = match a[1].as_ref() {
        b"0" => None,
        hex => match from_hex(hex) {
            Some(k) => Some(k),
            None => return Ok(error("ERR invalid cursor")),
        },
    };
    let (pattern, count) = match scan_options(&a[2..], false) {
        Ok((p, c, _)) => (p, c),
        Err(r) => return Ok(r),
    };
    let (page, more) = ks.items(&a[0], after.as_deref(), count)?;
    let cursor = match (more, page.last()) {
        (true, Some((item, _))) => to_hex(item),
        _ => "0".to_string(),
    };
    let mut found = Vec::new();
    for (item, value) in page {
        if pattern.as_ref().is_none_or(|p| super::glob::matches(p, &item)) {
            found.push(bulk(item.to_vec()));
            if pairs {
                found.push(bulk(value.to_vec()));
            }
        }
    }
    Ok(array(vec![bulk(cursor.into_bytes()), array(found)]))
}

/// SCAN's and HSCAN's `[MATCH pattern] [COUNT n] [TYPE type]` (TYPE only
/// if `with_type`).
pub(super) fn scan_options(
    a: &[Bytes],
    with_type: bool,
) -> Result<(Option<Bytes>, usize, Option<String>), Reply> {
    let (mut pattern, mut count, mut only) = (None, SCAN_COUNT, None);
    let mut i = 0;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(syntax());
        }
        match upper(&a[i]).as_str() {
            "MATCH" => pattern = Some(a[i + 1].clone()),
            "COUNT" => match parse_int(&a[i + 1]) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => return Err(syntax()),
                None => return Err(not_integer()),
            },
            "TYPE" if with_type => only = Some(String::from_utf8_lossy(&a[i + 1]).to_ascii_lowercase()),
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok((pattern, count, only))
}

pub(super) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn from_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// `RANDOMKEY`: the first live key at or after a random point (nil if none).
pub fn randomkey(ks: &mut dyn Keyspace) -> Result<Reply> {
    let point: [u8; 8] = rand::random();
    let (page, _) = ks.keys_after(Some(&point), 1)?;
    if let Some(k) = page.first() {
        return Ok(bulk(k.to_vec()));
    }
    let (page, _) = ks.keys_after(None, 1)?;
    Ok(bulk_or_nil(page.first().map(|k| k.to_vec())))
}

/// `FLUSHDB`/`FLUSHALL [ASYNC|SYNC]`: every key of the group, in one entry.
pub fn flush(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    match a.first().map(|o| upper(o)).as_deref() {
        None | Some("ASYNC") | Some("SYNC") if a.len() <= 1 => {}
        _ => return Ok(syntax()),
    }
    ks.delete_all()?;
    Ok(ok())
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with `NX|XX|GT|LT`: 1 if the TTL
/// was set (a deadline already past deletes the key), 0 if not.
pub fn expire(ks: &mut dyn Keyspace, a: Args, name: &str) -> Result<Reply> {
    let unit = match name {
        "EXPIRE" => "EX",
        "PEXPIRE" => "PX",
        "EXPIREAT" => "EXAT",
        _ => "PXAT",
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &a[2..] {
        match upper(opt).as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GT" => gt = true,
            "LT" => lt = true,
            other => return Ok(error(format!("ERR Unsupported option {other}"))),
        }
    }
    if nx && (xx || gt || lt) {
        return Ok(error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Ok(error("ERR GT and LT options at the same time are not compatible"));
    }
    let Some(n) = parse_int(&a[1]) else {
        return Ok(not_integer());
    };
    let now = ks.now();
    // Zero and negative times are allowed here: the key is deleted.
    let deadline = if n <= 0 {
        Some(0)
    } else {
        deadline_of(name, unit, &a[1], now).ok()
    };
    let Some(deadline) = deadline else {
        return Ok(invalid_expire(name));
    };
    if ks.kind(&a[0])?.is_none() {
        return Ok(int(0));
    }
    let current = ks.deadline(&a[0]);
    let allowed = match current {
        None => !(xx || gt),
        Some(c) => !nx && (!gt || deadline > c) && (!lt || deadline < c),
    };
    if !allowed {
        return Ok(int(0));
    }
    if deadline <= now {
        ks.delete(&a[0])?;
    } else {
        ks.set_deadline(&a[0], Some(deadline))?;
    }
    Ok(int(1))
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for one
/// without a TTL.
pub fn ttl(ks: &mut dyn Keyspace, a: Args, name: &str) -> Result<Reply> {
    if ks.kind(&a[0])?.is_none() {
        return Ok(int(-2));
    }
    let Some(deadline) = ks.deadline(&a[0]) else {
        return Ok(int(-1));
    };
    let left = deadline.saturating_sub(ks.now());
    Ok(int(match name {
        "TTL" => (left + 500) / 1000,
        "PTTL" => left,
        "EXPIRETIME" => (deadline + 500) / 1000,
        _ => deadline,
    } as i64))
}

pub fn persist(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    if ks.kind(&a[0])?.is_none() || ks.deadline(&a[0]).is_none() {
        return Ok(int(0));
    }
    ks.set_deadline(&a[0], None)?;
    Ok(int(1))
}
