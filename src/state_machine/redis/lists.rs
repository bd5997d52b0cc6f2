//! List commands: each element an item keyed by its position, the header
//! the list's two ends, so a push or a pop writes one element and the
//! header. Commands that move elements in the middle (LINSERT, LREM)
//! rewrite the list, as they are O(n) in Redis too.

use super::keyspace::Keyspace;
use super::reply::*;
use super::typed_header::{list_ends, list_header, pos, MIDDLE};
use crate::error::Result;
use crate::state_machine::typed::Kind;
use bytes::Bytes;

type Args<'a> = &'a [Bytes];

const PAGE: usize = 4096;

/// The list's ends `(head, tail)` (elements at positions head..tail), or
/// `None` if the key is missing; `Err` (WRONGTYPE) for another kind.
fn ends(ks: &mut dyn Keyspace, key: &[u8]) -> Result<Option<(u64, u64)>> {
    Ok(ks.header(key, Kind::List)?.map(|h| list_ends(&h)))
}

/// Every element, head first.
fn elements(ks: &mut dyn Keyspace, key: &[u8]) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let (page, more) = ks.items(key, after.as_deref(), PAGE)?;
        after = page.last().map(|(p, _)| p.clone());
        out.extend(page.into_iter().map(|(_, v)| v));
        if !more {
            return Ok(out);
        }
    }
}

/// Stores `(head, tail)`, or deletes the key once it is empty.
fn set_ends(ks: &mut dyn Keyspace, key: &[u8], head: u64, tail: u64) -> Result<()> {
    if head >= tail {
        ks.delete(key)?;
        return Ok(());
    }
    ks.put_header(key, Kind::List, list_header(head, tail))
}

/// Replaces the list with `elems` (deleting it if empty).
fn rewrite(ks: &mut dyn Keyspace, key: &[u8], elems: Vec<Bytes>) -> Result<()> {
    ks.clear_items(key)?;
    let head = MIDDLE;
    for (i, e) in elems.iter().enumerate() {
        ks.put_item(key, &pos(head + i as u64), e.clone())?;
    }
    set_ends(ks, key, head, head + elems.len() as u64)
}

/// LPUSH, RPUSH, LPUSHX, RPUSHX: the new length.
pub fn push(ks: &mut dyn Keyspace, a: Args, left: bool, only_existing: bool) -> Result<Reply> {
    let (mut head, mut tail) = match ends(ks, &a[0])? {
        Some(e) => e,
        None if only_existing => return Ok(int(0)),
        None => (MIDDLE, MIDDLE),
    };
    for v in &a[1..] {
        if left {
            head -= 1;
            ks.put_item(&a[0], &pos(head), v.clone())?;
        } else {
            ks.put_item(&a[0], &pos(tail), v.clone())?;
            tail += 1;
        }
    }
    set_ends(ks, &a[0], head, tail)?;
    Ok(int((tail - head) as i64))
}

/// Pops up to `n` elements from one end.
fn pop_n(ks: &mut dyn Keyspace, key: &[u8], left: bool, n: u64) -> Result<Option<Vec<Bytes>>> {
    let Some((mut head, mut tail)) = ends(ks, key)? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    while out.len() < n as usize && head < tail {
        let at = if left { head } else { tail - 1 };
        let item = pos(at);
        if let Some(v) = ks.item(key, &item)? {
            out.push(v);
        }
        ks.delete_item(key, &item)?;
        if left {
            head += 1;
        } else {
            tail -= 1;
        }
    }
    set_ends(ks, key, head, tail)?;
    Ok(Some(out))
}

/// LPOP and RPOP, with an optional count.
pub fn pop(ks: &mut dyn Keyspace, a: Args, left: bool) -> Result<Reply> {
    match a.get(1) {
        None => Ok(bulk_or_nil(
            pop_n(ks, &a[0], left, 1)?.and_then(|v| v.into_iter().next()),
        )),
        Some(n) => {
            let Some(n) = parse_int(n).filter(|n| *n >= 0) else {
                return Ok(error("ERR value is out of range, must be positive"));
            };
            Ok(match pop_n(ks, &a[0], left, n as u64)? {
                None => nil(),
                Some(v) => array(v.into_iter().map(|e| bulk(e.to_vec())).collect()),
            })
        }
    }
}

pub fn llen(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    Ok(int(ends(ks, &a[0])?.map_or(0, |(h, t)| t - h) as i64))
}

/// Redis's `start..=stop` with negatives from the end, clamped; `None` if empty.
fn span(start: i64, stop: i64, len: i64) -> Option<(u64, u64)> {
    let start = if start < 0 { (len + start).max(0) } else { start };
    let stop = if stop < 0 { len + stop } else { stop.min(len - 1) };
    (start <= stop && start < len).then_some((start as u64, stop as u64))
}

pub fn lrange(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let (Some(start), Some(stop)) = (parse_int(&a[1]), parse_int(&a[2])) else {
        return Ok(not_integer());
    };
    let Some((head, tail)) = ends(ks, &a[0])? else {
        return Ok(array(Vec::new()));
    };
    let Some((from, to)) = span(start, stop, (tail - head) as i64) else {
        return Ok(array(Vec::new()));
    };
    let mut out = Vec::new();
    let mut after = (from > 0).then(|| pos(head + from - 1));
    while (out.len() as u64) < to - from + 1 {
        let want = ((to - from + 1) as usize - out.len()).min(PAGE);
        let (page, more) = ks.items(&a[0], after.as_deref(), want)?;
        after = page.last().map(|(p, _)| p.clone());
        out.extend(page.into_iter().map(|(_, v)| bulk(v.to_vec())));
        if !more {
            break;
        }
    }
    Ok(array(out))
}

/// The position of index `i` (negative from the end), if within the list.
fn at_index(head: u64, tail: u64, i: i64) -> Option<u64> {
    let len = (tail - head) as i64;
    let i = if i < 0 { len + i } else { i };
    (0..len).contains(&i).then(|| head + i as u64)
}

pub fn lindex(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let Some(i) = parse_int(&a[1]) else {
        return Ok(not_integer());
    };
    let Some((head, tail)) = ends(ks, &a[0])? else {
        return Ok(nil());
    };
    match at_index(head, tail, i) {
        Some(p) => Ok(bulk_or_nil(ks.item(&a[0], &pos(p))?)),
        None => Ok(nil()),
    }
}

pub fn lset(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let Some(i) = parse_int(&a[1]) else {
        return Ok(not_integer());
    };
    let Some((head, tail)) = ends(ks, &a[0])? else {
        return Ok(error("ERR no such key"));
    };
    let Some(p) = at_index(head, tail, i) else {
        return Ok(error("ERR index out of range"));
    };
    ks.put_item(&a[0], &pos(p), a[2].clone())?;
    set_ends(ks, &a[0], head, tail)?;
    Ok(ok())
}

/// `LINSERT key BEFORE|AFTER pivot element`.
pub fn linsert(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let after = match upper(&a[1]).as_str() {
        "BEFORE" => false,
        "AFTER" => true,
        _ => return Ok(syntax()),
    };
    if ends(ks, &a[0])?.is_none() {
        return Ok(int(0));
    }
    let mut elems = elements(ks, &a[0])?;
    let Some(i) = elems.iter().position(|e| *e == a[2]) else {
        return Ok(int(-1));
    };
    elems.insert(i + usize::from(after), a[3].clone());
    let len = elems.len();
    rewrite(ks, &a[0], elems)?;
    Ok(int(len as i64))
}

/// `LREM key count element`: count > 0 from the head, < 0 from the tail,
/// 0 all; how many went.
pub fn lrem(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let Some(count) = parse_int(&a[1]) else {
        return Ok(not_integer());
    };
    if ends(ks, &a[0])?.is_none() {
        return Ok(int(0));
    }
    let mut elems = elements(ks, &a[0])?;
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut removed = 0;
    let mut keep = vec![true; elems.len()];
    let order: Box<dyn Iterator<Item = usize>> = if count < 0 {
        Box::new((0..elems.len()).rev())
    } else {
        Box::new(0..elems.len())
    };
    for i in order {
        if removed < limit && elems[i] == a[2] {
            keep[i] = false;
            removed += 1;
        }
    }
    if removed > 0 {
        let mut k = keep.into_iter();
        elems.retain(|_| k.next().unwrap_or(true));
        rewrite(ks, &a[0], elems)?;
    }
    Ok(int(removed as i64))
}

/// `LTRIM key start stop`: keeps that span.
pub fn ltrim(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let (Some(start), Some(stop)) = (parse_int(&a[1]), parse_int(&a[2])) else {
        return Ok(not_integer());
    };
    let Some((head, tail)) = ends(ks, &a[0])? else {
        return Ok(ok());
    };
    let (new_head, new_tail) = match span(start, stop, (tail - head) as i64) {
        Some((from, to)) => (head + from, head + to + 1),
        None => (tail, tail),
    };
    for p in (head..new_head).chain(new_tail..tail) {
        ks.delete_item(&a[0], &pos(p))?;
    }
    set_ends(ks, &a[0], new_head, new_tail)?;
    Ok(ok())
}

/// `LPOS key element [RANK r] [COUNT n] [MAXLEN m]`.
pub fn lpos(ks: &mut dyn Keyspace, a: Args) -> Result<Reply> {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
    let mut i = 2;
    while i < a.len() {
        let Some(n) = a.get(i + 1).and_then(|v| parse_int(v)) else {
            return Ok(if a.get(i + 1).is_some() {
                not_integer()
            } else {
                syntax()
            });
        };
        match upper(&a[i]).as_str() {
            "RANK" if n == 0 || n == i64::MIN => {
                return Ok(error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ))
            }
            "RANK" => rank = n,
            "COUNT" if n < 0 => return Ok(error("ERR COUNT can't be negative")),
            "COUNT" => count = Some(n),
            "MAXLEN" if n < 0 => return Ok(error("ERR MAXLEN can't be negative")),
            "MAXLEN" => maxlen = n,
            _ => return Ok(syntax()),
        }
        i += 2;
    }
    let elems = if ends(ks, &a[0])?.is_some() {
        elements(ks, &a[0])?
    } else {
        Vec::new()
    };
    let n = elems.len();
    let order: Box<dyn Iterator<Item = usize>> = if rank < 0 {
        Box::new((0..n).rev())
    } else {
        Box::new(0..n)
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(c) => c as usize,
        None => 1,
    };
    let mut skip = rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    for (looked, i) in order.enumerate() {
        if maxlen > 0 && looked as i64 >= maxlen {
            break;
        }
        if elems[i] == a[1] {
            if skip > 0 {
                skip -= 1;
            } else {
                found.push(int(i as i64));
                if found.len() >= want {
                    break;
                }
            }
        }
    }
    Ok(match count {
        Some(_) => array(found),
        None => found.pop().unwrap_or_else(nil),
    })
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT` (and RPOPLPUSH).
pub fn lmove(ks: &mut dyn Keyspace, src: &[u8], dst: &[u8], from_left: bool, to_left: bool) -> Result<Reply> {
    if ends(ks, src)?.is_none() {
        return Ok(nil());
    }
    // The destination's type is checked before anything moves.
    ends(ks, dst)?;
    let Some(mut popped) = pop_n(ks, src, from_left, 1)? else {
        return Ok(nil());
    };
    let Some(v) = popped.pop() else {
        return Ok(nil());
    };
    let args = [Bytes::copy_from_slice(dst), v.clone()];
    push(ks, &args, to_left, false)?;
    Ok(bulk(v.to_vec()))
}

/// The side LMOVE names.
pub fn side(arg: &[u8]) -> Option<bool> {
    match upper(arg).as_str() {
        "LEFT" => Some(true),
        "RIGHT" => Some(false),
        _ => None,
    }
}

/// The timeout of a blocking pop, checked as Redis does (seconds, a float
/// ≥ 0); the pop itself never waits here: raftis waits and asks again.
fn check_timeout(arg: &[u8]) -> Option<Reply> {
    match parse_float(arg) {
        None => Some(error("ERR timeout is not a float or out of range")),
        Some(t) if t < 0.0 => Some(error("ERR timeout is negative")),
        Some(t) if !t.is_finite() => Some(error("ERR timeout is not a float or out of range")),
        Some(_) => None,
    }
}

/// BLPOP and BRPOP, without the wait: `[key, element]` from the first of
/// the keys that holds a list, or nil if none does (the caller waits for
/// a push and asks again).
pub fn bpop(ks: &mut dyn Keyspace, a: Args, left: bool) -> Result<Reply> {
    let (keys, timeout) = a.split_at(a.len() - 1);
    if let Some(r) = check_timeout(&timeout[0]) {
        return Ok(r);
    }
    for k in keys {
        ends(ks, k)?;
    }
    for k in keys {
        if let Some(v) = pop_n(ks, k, left, 1)?.and_then(|v| v.into_iter().next()) {
            return Ok(array(vec![bulk(k.to_vec()), bulk(v.to_vec())]));
        }
    }
    Ok(nil())
}

/// BLMOVE and BRPOPLPUSH, without the wait (nil if the source is empty).
pub fn bmove(ks: &mut dyn Keyspace, a: Args, sides: Option<(bool, bool)>) -> Result<Reply> {
    if let Some(r) = check_timeout(&a[a.len() - 1]) {
        return Ok(r);
    }
    let (from, to) = sides.unwrap_or((false, true));
    lmove(ks, &a[0], &a[1], from, to)
}
