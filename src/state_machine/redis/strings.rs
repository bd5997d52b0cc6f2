//! String commands: SET and its options, the counters, APPEND, ranges.

use super::keyspace::{Keyspace, Ttl};
use super::reply::*;
use crate::error::Result;
use crate::options::MAX_VALUE_BYTES;
use bytes::Bytes;

type Args<'a> = &'a [Bytes];

/// An expiry option's deadline: `EX`/`PX` from now, `EXAT`/`PXAT` as given
/// (Unix seconds or ms); `Err` with the reply for a bad number.
pub fn deadline_of(name: &str, unit: &str, n: &[u8], now: u64) -> std::result::Result<u64, Reply> {
    let n = parse_int(n).ok_or_else(not_integer)?;
    if n <= 0 {
        return Err(invalid_expire(name));
    }
    let n = n as u64;
    let ms = match unit {
        "EX" | "EXAT" => n.checked_mul(1000),
        _ => Some(n),
    }
    .filter(|ms| *ms <= i64::MAX as u64)
    .ok_or_else(|| invalid_expire(name))?;
    match unit {
        "EX" | "PX" => now.checked_add(ms).ok_or_else(|| invalid_expire(name)),
        _ => Ok(ms),
    }
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL]`.
pub fn set(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let (mut cond, mut get, mut ttl) = (None, false, None::<Ttl>);
    let mut i = 2;
    while i < a.len() {
        let opt = upper(&a[i]);
        match opt.as_str() {
            "NX" | "XX" if cond.is_none() => cond = Some(opt),
            "GET" if !get => get = true,
            "KEEPTTL" if ttl.is_none() => ttl = Some(Ttl::Keep),
            "EX" | "PX" | "EXAT" | "PXAT" if ttl.is_none() && i + 1 < a.len() => {
                match deadline_of("set", &opt, &a[i + 1], ks.now()) {
                    Ok(d) => ttl = Some(Ttl::At(d)),
                    Err(r) => return Ok(r),
                }
                i += 1;
            }
            _ => return Ok(syntax()),
        }
        i += 1;
    }
    // Any kind of key counts for NX and XX; GET wants a string. (A plain
    // SET reads nothing.)
    let old = if get { ks.get(&a[0])? } else { None };
    let go = match cond.as_deref() {
        Some("NX") => ks.kind(&a[0])?.is_none(),
        Some("XX") => ks.kind(&a[0])?.is_some(),
        _ => true,
    };
    if go {
        ks.put(&a[0], a[1].clone(), ttl.unwrap_or(Ttl::Clear))?;
    }
    Ok(match (get, go) {
        (true, _) => bulk_or_nil(old),
        (false, true) => ok(),
        (false, false) => nil(),
    })
}

pub fn get(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(bulk_or_nil(ks.get(&a[0])?))
}

/// MGET: a key of another kind reads as nil, as in Redis.
pub fn mget(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let mut out = Vec::with_capacity(a.len());
    for k in a {
        out.push(match ks.get(k) {
            Ok(v) => bulk_or_nil(v),
            Err(crate::error::Error::InvalidArgument(m)) if m.starts_with("WRONGTYPE") => nil(),
            Err(e) => return Err(e),
        });
    }
    Ok(array(out))
}

pub fn setnx(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    if ks.kind(&a[0])?.is_some() {
        return Ok(int(0));
    }
    ks.put(&a[0], a[1].clone(), Ttl::Clear)?;
    Ok(int(1))
}

/// `SETEX key seconds value`, `PSETEX key ms value`.
pub fn setex(ks: &mut dyn Keyspace, a: Args, name: &str) -> Result<Reply> {
    let unit = if name == "SETEX" { "EX" } else { "PX" };
    match deadline_of(name, unit, &a[1], ks.now()) {
        Ok(d) => {
            ks.put(&a[0], a[2].clone(), Ttl::At(d))?;
            Ok(ok())
        }
        Err(r) => Ok(r),
    }
}

pub fn getset(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let old = ks.get(&a[0])?;
    ks.put(&a[0], a[1].clone(), Ttl::Clear)?;
    Ok(bulk_or_nil(old))
}

pub fn getdel(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let old = ks.get(&a[0])?;
    if old.is_some() {
        ks.delete(&a[0])?;
    }
    Ok(bulk_or_nil(old))
}

/// `GETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST]`.
pub fn getex(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let change = match a.len() {
        1 => None,
        2 if upper(&a[1]) == "PERSIST" => Some(None),
        3 => {
            let unit = upper(&a[1]);
            if !matches!(unit.as_str(), "EX" | "PX" | "EXAT" | "PXAT") {
                return Ok(syntax());
            }
            match deadline_of("getex", &unit, &a[2], ks.now()) {
                Ok(d) => Some(Some(d)),
                Err(r) => return Ok(r),
            }
        }
        _ => return Ok(syntax()),
    };
    let value = ks.get(&a[0])?;
    if let (Some(_), Some(deadline)) = (&value, change) {
        match deadline {
            Some(d) if d <= ks.now() => {
                ks.delete(&a[0])?;
            }
            d => ks.set_deadline(&a[0], d)?,
        }
    }
    Ok(bulk_or_nil(value))
}

pub fn mset(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    for kv in a.chunks(2) {
        ks.put(&kv[0], kv[1].clone(), Ttl::Clear)?;
    }
    Ok(ok())
}

pub fn msetnx(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    for kv in a.chunks(2) {
        if ks.kind(&kv[0])?.is_some() {
            return Ok(int(0));
        }
    }
    mset(ks, a)?;
    Ok(int(1))
}

/// INCR, DECR, INCRBY, DECRBY: `by` already parsed (with its sign).
pub fn incr_by(ks: &mut dyn Keyspace, key: &[u8], by: i64) -> Result<Reply> {
    let current = match ks.get(key)? {
        None => 0,
        Some(v) => match parse_int(&v) {
            Some(n) => n,
            None => return Ok(not_integer()),
        },
    };
    let Some(next) = current.checked_add(by) else {
        return Ok(overflow());
    };
    ks.put(key, Bytes::from(next.to_string()), Ttl::Keep)?;
    Ok(int(next))
}

/// The increment of INCRBY/DECRBY (negated for DECRBY).
pub fn increment(arg: &[u8], negate: bool) -> std::result::Result<i64, Reply> {
    let n = parse_int(arg).ok_or_else(not_integer)?;
    if negate {
        return n.checked_neg().ok_or_else(overflow);
    }
    Ok(n)
}

pub fn incrbyfloat(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let Some(by) = parse_float(&a[1]) else {
        return Ok(not_float());
    };
    let current = match ks.get(&a[0])? {
        None => 0.0,
        Some(v) => match parse_float(&v) {
            Some(n) => n,
            None => return Ok(not_float()),
        },
    };
    let next = current + by;
    if !next.is_finite() {
        return Ok(error("ERR increment would produce NaN or Infinity"));
    }
    let text = format_float(next);
    ks.put(&a[0], Bytes::from(text.clone()), Ttl::Keep)?;
    Ok(bulk(text))
}

pub fn append(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let mut value = ks.get(&a[0])?.map(|v| v.to_vec()).unwrap_or_default();
    if value.len() + a[1].len() > MAX_VALUE_BYTES {
        return Ok(too_large());
    }
    value.extend_from_slice(&a[1]);
    let len = value.len();
    ks.put(&a[0], Bytes::from(value), Ttl::Keep)?;
    Ok(int(len as i64))
}

pub fn strlen(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(int(ks.get(&a[0])?.map_or(0, |v| v.len()) as i64))
}

/// `GETRANGE key start end` (and SUBSTR): inclusive, negative from the end.
pub fn getrange(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let (Some(start), Some(end)) = (parse_int(&a[1]), parse_int(&a[2])) else {
        return Ok(not_integer());
    };
    let value = ks.get(&a[0])?.unwrap_or_default();
    let len = value.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return Ok(bulk(Vec::new()));
    }
    let from_end = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    if start > end {
        return Ok(bulk(Vec::new()));
    }
    Ok(bulk(value[start as usize..=end as usize].to_vec()))
}

/// `SETRANGE key offset value`: zero-padded; the new length.
pub fn setrange(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let Some(offset) = parse_int(&a[1]) else {
        return Ok(not_integer());
    };
    if offset < 0 {
        return Ok(error("ERR offset is out of range"));
    }
    let current = ks.get(&a[0])?;
    if a[2].is_empty() {
        return Ok(int(current.map_or(0, |v| v.len()) as i64));
    }
    let offset = offset as usize;
    if offset.saturating_add(a[2].len()) > MAX_VALUE_BYTES {
        return Ok(too_large());
    }
    let mut value = current.map(|v| v.to_vec()).unwrap_or_default();
    if value.len() < offset + a[2].len() {
        value.resize(offset + a[2].len(), 0);
    }
    value[offset..offset + a[2].len()].copy_from_slice(&a[2]);
    let len = value.len();
    ks.put(&a[0], Bytes::from(value), Ttl::Keep)?;
    Ok(int(len as i64))
}
