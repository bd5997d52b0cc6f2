//! RESP2: an incremental request parser (multibulk and inline commands) with
//! bounded memory, and the reply encoder.
//!
//! Limits: a bulk string longer than [`MAX_BULK`] (floyd's largest value) is
//! refused from its header alone, before any of it is buffered: its bytes are
//! read and thrown away, the request gets an error and the connection goes on.
//! So is a request whose arguments add up to more than [`MAX_REQUEST`]. What
//! cannot be resynchronised (a header that is not a number, a negative or
//! absurd length, more than [`MAX_ARGS`] arguments, an inline line longer than
//! [`MAX_INLINE`]) is a protocol error: the connection gets the error and is
//! closed, as Redis does.
//!
//! Memory: a bulk string's body goes straight into its argument (allocated
//! once, from its header), so the read buffer holds at most a header line
//! and one read. Past a request's first [`FREE_BYTES`], its bulks are
//! reserved from the process-wide [`Budget`] before they are buffered
//! (see `limits.rs`): if the budget is full, [`Parser::wants_budget`] says
//! how much the request waits for, and parsing stops until
//! [`Parser::grant`]. Before a client authenticates (with `--requirepass`),
//! Redis's limits apply: at most 10 arguments of at most 16 KiB each, or a
//! protocol error.

use crate::limits::{Budget, Reservation, Reserve, FREE_BYTES};
use std::sync::Arc;

/// Largest bulk string accepted: floyd's largest value.
pub const MAX_BULK: usize = floyd::options::MAX_VALUE_BYTES;
/// Largest sum of one request's arguments (MSET of a few large values).
pub const MAX_REQUEST: usize = 64 << 20;
/// Most arguments in one multibulk request.
pub const MAX_ARGS: usize = 1 << 20;
/// Longest inline command line, and longest header line.
pub const MAX_INLINE: usize = 64 << 10;
/// A bulk length beyond this is not skipped but ends the connection (Redis's
/// `proto-max-bulk-len` default).
const MAX_SKIPPABLE: u64 = 512 << 20;
/// Most arguments of a request before AUTH (Redis's limit).
const UNAUTHENTICATED_ARGS: i64 = 10;
/// Longest bulk string before AUTH (Redis's limit).
const UNAUTHENTICATED_BULK: i64 = 16 << 10;

/// What the parser found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command and its arguments.
    Command(Vec<Vec<u8>>),
    /// A request that was read (or is being skipped) but refused: answer this error.
    Refused(String),
}

/// A protocol error: answer it, then close the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// What an argument costs besides its bytes, for the budget (its `Vec`):
/// a million empty arguments are not free.
const ARG_OVERHEAD: usize = 32;

/// A multibulk request being read.
struct Multibulk {
    count: usize,
    remaining: usize,
    args: Vec<Vec<u8>>,
    bytes: usize,
    /// The length of the bulk whose header was read and whose body is awaited.
    bulk: Option<usize>,
    /// That bulk's body (and CRLF) as far as it came, allocated once.
    body: Vec<u8>,
    /// Set once the request is refused: later arguments are thrown away.
    refused: Option<String>,
    /// What this request holds of the budget.
    reserved: Option<Reservation>,
}

/// Incremental request parser: [`Parser::feed`] bytes, then take requests
/// with [`Parser::next`] until it returns `Ok(None)`.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes still to throw away (the body of a refused bulk string).
    skip: u64,
    partial: Option<Multibulk>,
    /// Where large requests reserve their bytes (none: no bound).
    budget: Option<Arc<Budget>>,
    /// The request being read waits for this many bytes of the budget.
    wanted: Option<usize>,
    /// The budget the last request returned holds, until taken.
    done: Option<Reservation>,
    /// Redis's limits for a client that has not authenticated apply.
    unauthenticated: bool,
}

impl Parser {
    /// A parser with no bound across connections.
    #[cfg(test)]
    pub fn new() -> Parser {
        Parser::default()
    }

    /// A parser whose large requests reserve their bytes from `budget`.
    pub fn with_budget(budget: Arc<Budget>) -> Parser {
        Parser {
            budget: Some(budget),
            ..Parser::default()
        }
    }

    /// Applies (or lifts) the limits for a client that has not authenticated.
    pub fn set_unauthenticated(&mut self, yes: bool) {
        self.unauthenticated = yes;
    }

    /// Bytes of the budget the request being read waits for: nothing more
    /// is parsed until [`Parser::grant`].
    pub fn wants_budget(&self) -> Option<usize> {
        self.wanted
    }

    /// Hands the request being read the bytes it waited for.
    pub fn grant(&mut self, r: Reservation) {
        self.wanted = None;
        match self.partial.as_mut() {
            Some(mb) => match mb.reserved.as_mut() {
                Some(held) => held.absorb(r),
                None => mb.reserved = Some(r),
            },
            None => debug_assert!(false, "a grant with no request being read"),
        }
    }

    /// The budget the request just returned holds: keep it while the
    /// request (or floyd's copy of it) lives. Dropped at the next
    /// [`Parser::next`] if not taken.
    pub fn take_reservation(&mut self) -> Option<Reservation> {
        self.done.take()
    }

    /// Appends bytes read from the connection (or throws them away while skipping).
    pub fn feed(&mut self, mut data: &[u8]) {
        if self.skip > 0 && self.pos == self.buf.len() {
            let n = (self.skip.min(data.len() as u64)) as usize;
            self.skip -= n as u64;
            data = &data[n..];
        }
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 << 10 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet parsed.
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The next complete request, `Ok(None)` if more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Parsed>, ProtocolError> {
        self.done = None;
        loop {
            if self.wanted.is_some() {
                return Ok(None);
            }
            if self.skip > 0 {
                let n = self.skip.min(self.available().len() as u64) as usize;
                self.pos += n;
                self.skip -= n as u64;
                if self.skip > 0 {
                    return Ok(None);
                }
            }
            if let Some(mb) = &mut self.partial {
                if mb.remaining == 0 && mb.bulk.is_none() {
                    let mb = self.partial.take().expect("partial");
                    return Ok(Some(match mb.refused {
                        Some(msg) => Parsed::Refused(msg),
                        None => {
                            self.done = mb.reserved;
                            Parsed::Command(mb.args)
                        }
                    }));
                }
                if !self.bulk_step()? {
                    return Ok(None);
                }
                continue;
            }
            let Some(&first) = self.available().first() else {
                return Ok(None);
            };
            if first == b'*' {
                let Some(line) = self.line()? else {
                    return Ok(None);
                };
                let count = number(&line[1..], "multibulk length")?;
                if count > MAX_ARGS as i64 {
                    return Err(ProtocolError("invalid multibulk length".into()));
                }
                if self.unauthenticated && count > UNAUTHENTICATED_ARGS {
                    return Err(ProtocolError("unauthenticated multibulk length".into()));
                }
                if count <= 0 {
                    continue; // `*0` and `*-1` are no request at all, as in Redis.
                }
                self.partial = Some(Multibulk {
                    count: count as usize,
                    remaining: count as usize,
                    args: Vec::with_capacity((count as usize).min(64)),
                    bytes: 0,
                    bulk: None,
                    body: Vec::new(),
                    refused: None,
                    reserved: None,
                });
                continue;
            }
            let Some(line) = self.line()? else {
                return Ok(None);
            };
            match split_inline(&line) {
                Ok(args) if args.is_empty() => continue,
                Ok(args) => return Ok(Some(Parsed::Command(args))),
                Err(e) => return Err(e),
            }
        }
    }

    /// One step of a multibulk request: a bulk header or a bulk body.
    /// False if more bytes are needed.
    fn bulk_step(&mut self) -> Result<bool, ProtocolError> {
        let mb = self.partial.as_mut().expect("partial");
        if let Some(len) = mb.bulk {
            let avail = &self.buf[self.pos..];
            let mut arg = if mb.body.is_empty() && avail.len() >= len + 2 {
                // All of it is here: one copy.
                self.pos += len + 2;
                avail[..len + 2].to_vec()
            } else {
                if mb.body.capacity() == 0 {
                    mb.body.reserve_exact(len + 2);
                }
                let n = (len + 2 - mb.body.len()).min(avail.len());
                mb.body.extend_from_slice(&avail[..n]);
                self.pos += n;
                if mb.body.len() < len + 2 {
                    return Ok(false);
                }
                std::mem::take(&mut mb.body)
            };
            if &arg[len..] != b"\r\n" {
                return Err(ProtocolError("expected CRLF after a bulk string".into()));
            }
            arg.truncate(len);
            mb.args.push(arg);
            mb.bulk = None;
            return Ok(true);
        }
        let Some(line) = self.line()? else {
            return Ok(false);
        };
        if line.first() != Some(&b'$') {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                line.first().map_or(String::new(), |c| (*c as char).to_string())
            )));
        }
        let len = number(&line[1..], "bulk length")?;
        if len < 0 || len as u64 > MAX_SKIPPABLE {
            return Err(ProtocolError("invalid bulk length".into()));
        }
        if self.unauthenticated && len > UNAUTHENTICATED_BULK {
            return Err(ProtocolError("unauthenticated bulk length".into()));
        }
        let len = len as usize;
        let mb = self.partial.as_mut().expect("partial");
        mb.remaining -= 1;
        if mb.refused.is_none() {
            if len > MAX_BULK {
                mb.refused = Some(format!(
                    "ERR bulk string of {len} bytes is over the limit of {MAX_BULK} bytes"
                ));
            } else if mb.bytes + len > MAX_REQUEST {
                mb.refused = Some(format!(
                    "ERR request of more than {MAX_REQUEST} bytes is over the limit"
                ));
            }
        }
        if let Some(budget) = self.budget.as_ref().filter(|_| mb.refused.is_none()) {
            let held = mb.reserved.as_ref().map_or(0, Reservation::bytes);
            let cost = mb.bytes + len + (mb.count - mb.remaining) * ARG_OVERHEAD;
            let need = cost.saturating_sub(FREE_BYTES).saturating_sub(held);
            if need > 0 && held + need > budget.limit() {
                mb.refused = Some(format!(
                    "ERR request of more than {} bytes is over --max-request-buffer-bytes ({})",
                    mb.bytes + len,
                    budget.limit()
                ));
            } else if need > 0 {
                match budget.try_reserve(need, held > 0) {
                    Reserve::Granted(r) => match mb.reserved.as_mut() {
                        Some(h) => h.absorb(r),
                        None => mb.reserved = Some(r),
                    },
                    // Waiting while holding part of the budget could
                    // deadlock two such requests: refused (retry).
                    Reserve::Full if held > 0 => mb.refused = Some(
                        "OOM the request buffers of all clients are full (--max-request-buffer-bytes): retry"
                            .to_string(),
                    ),
                    Reserve::Full | Reserve::Never => self.wanted = Some(need),
                }
            }
        }
        if mb.refused.is_some() {
            mb.args = Vec::new();
            mb.reserved = None;
            self.skip = len as u64 + 2;
        } else {
            mb.bytes += len;
            mb.bulk = Some(len);
        }
        Ok(true)
    }

    /// The next line without its `\r\n` (or `\n`), consumed; `None` if incomplete.
    fn line(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let avail = self.available();
        match avail.iter().position(|&c| c == b'\n') {
            Some(end) if end <= MAX_INLINE => {
                let mut line = &avail[..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                let line = line.to_vec();
                self.pos += end + 1;
                Ok(Some(line))
            }
            Some(_) => Err(ProtocolError("too big inline request".into())),
            None if avail.len() > MAX_INLINE => Err(ProtocolError("too big inline request".into())),
            None => Ok(None),
        }
    }
}

fn number(text: &[u8], what: &str) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError(format!("invalid {what}")))
}

/// Splits an inline command into words; `"…"` (with `\n`, `\r`, `\t`, `\\`,
/// `\"`, `\xHH` escapes) and `'…'` quote, as redis-cli and Redis do.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let unbalanced = || ProtocolError("unbalanced quotes in request".into());
    let mut words = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            break;
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let c = *line.get(i).ok_or_else(unbalanced)?;
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            let e = *line.get(i).ok_or_else(unbalanced)?;
                            i += 1;
                            word.push(match e {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'x' if i + 1 < line.len() => {
                                    let hex = std::str::from_utf8(&line[i..i + 2]).ok();
                                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                                        Some(b) => {
                                            i += 2;
                                            b
                                        }
                                        None => b'x',
                                    }
                                }
                                other => other,
                            });
                        }
                        other => word.push(other),
                    }
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let c = *line.get(i).ok_or_else(unbalanced)?;
                    i += 1;
                    match c {
                        b'\'' => break,
                        b'\\' if line.get(i) == Some(&b'\'') => {
                            word.push(b'\'');
                            i += 1;
                        }
                        other => word.push(other),
                    }
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
                words.push(word);
                continue;
            }
        }
        // A closing quote must be followed by a space or the end.
        if i < line.len() && !line[i].is_ascii_whitespace() {
            return Err(unbalanced());
        }
        words.push(word);
    }
    Ok(words)
}

/// A reply, encoded by [`Reply::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    /// The text after `-`: its first word is the error's kind (`ERR`, `NOLEADER`, …).
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }

    pub fn err(msg: impl Into<String>) -> Reply {
        Reply::Error(msg.into())
    }

    /// Bytes of its encoding, about (exactly for a bulk string's body).
    pub fn size(&self) -> usize {
        match self {
            Reply::Simple(s) | Reply::Error(s) => s.len() + 3,
            Reply::Int(_) => 22,
            Reply::Bulk(b) => b.len() + 16,
            Reply::Nil => 5,
            Reply::Array(items) => 16 + items.iter().map(Reply::size).sum::<usize>(),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::Int(n) => line(out, b':', n.to_string().as_bytes()),
            Reply::Bulk(b) => {
                line(out, b'$', b.len().to_string().as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                line(out, b'*', items.len().to_string().as_bytes());
                for r in items {
                    r.encode(out);
                }
            }
        }
    }
}

/// Writes a one-line reply; CR and LF inside it (never allowed there) become spaces.
fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend(
        text.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Parsed {
        Parsed::Command(words.iter().map(|w| w.as_bytes().to_vec()).collect())
    }

    fn all(p: &mut Parser) -> Vec<Parsed> {
        std::iter::from_fn(|| p.next().unwrap()).collect()
    }

    #[test]
    fn multibulk_and_inline_requests_byte_by_byte() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nx!\r\nPING\r\n  \r\nset \"a b\" 'c'\n*0\r\n*1\r\n$0\r\n\r\n";
        let want = vec![
            Parsed::Command(vec![b"SET".to_vec(), b"k".to_vec(), b"v\r\nx!".to_vec()]),
            cmd(&["PING"]),
            cmd(&["set", "a b", "c"]),
            cmd(&[""]),
        ];
        let mut p = Parser::new();
        p.feed(input);
        assert_eq!(all(&mut p), want);
        let mut p = Parser::new();
        let mut got = Vec::new();
        for b in input {
            p.feed(&[*b]);
            got.extend(all(&mut p));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn an_oversized_bulk_is_refused_from_its_header_and_skipped() {
        let mut p = Parser::new();
        let n = MAX_BULK + 1;
        p.feed(format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${n}\r\n").as_bytes());
        assert_eq!(p.next().unwrap(), None);
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..n / chunk.len() {
            p.feed(&chunk);
            assert_eq!(p.next().unwrap(), None);
            assert!(p.buf.len() < 1 << 16, "a refused bulk is not buffered");
        }
        p.feed(&chunk[..n % chunk.len()]);
        p.feed(b"\r\nPING\r\n");
        assert!(matches!(p.next().unwrap(), Some(Parsed::Refused(m)) if m.contains("over the limit")));
        assert_eq!(p.next().unwrap(), Some(cmd(&["PING"])));
    }

    #[test]
    fn unrecoverable_input_is_a_protocol_error() {
        for bad in [
            &b"*x\r\n"[..],
            b"*2000000\r\n",
            b"*1\r\n$-5\r\n",
            b"*1\r\n$99999999999\r\n",
            b"*1\r\n+x\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"get \"k\n",
        ] {
            let mut p = Parser::new();
            p.feed(bad);
            assert!(p.next().is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut p = Parser::new();
        p.feed(&vec![b'a'; MAX_INLINE + 1]);
        assert!(p.next().is_err());
    }

    /// A multibulk SET header whose value is `len` bytes long.
    fn set_header(key: &str, len: usize) -> Vec<u8> {
        format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${len}\r\n", key.len()).into_bytes()
    }

    #[test]
    fn large_requests_reserve_from_the_budget_wait_when_it_is_full_and_give_it_back() {
        let budget = Budget::new(1 << 20);
        let mut a = Parser::with_budget(budget.clone());
        let mut b = Parser::with_budget(budget.clone());
        // A small request reserves nothing.
        a.feed(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert!(matches!(a.next().unwrap(), Some(Parsed::Command(_))));
        assert!(a.take_reservation().is_none());
        assert_eq!(budget.used(), 0);
        // A's 700 KiB value is reserved from its header, before its body.
        a.feed(&set_header("a", 700 << 10));
        assert_eq!(a.next().unwrap(), None);
        let a_held = budget.used();
        assert!(a_held > 600 << 10 && a_held <= 700 << 10, "{a_held}");
        // B's does not fit next to it: B waits, and parses nothing more.
        b.feed(&set_header("b", 700 << 10));
        assert_eq!(b.next().unwrap(), None);
        let want = b.wants_budget().expect("B waits");
        b.feed(&vec![b'y'; 700 << 10]);
        b.feed(b"\r\n");
        assert_eq!(b.next().unwrap(), None);
        // A completes; its reservation lasts until dropped.
        a.feed(&vec![b'x'; 700 << 10]);
        a.feed(b"\r\n");
        let Some(Parsed::Command(args)) = a.next().unwrap() else {
            panic!("A's SET")
        };
        assert_eq!(args[2].len(), 700 << 10);
        let r = a.take_reservation().expect("A holds the budget");
        assert_eq!((r.bytes(), budget.used()), (a_held, a_held));
        drop(r);
        assert_eq!(budget.used(), 0);
        let Reserve::Granted(room) = budget.try_reserve(want, false) else {
            panic!("room for B")
        };
        b.grant(room);
        assert!(matches!(b.next().unwrap(), Some(Parsed::Command(args)) if args[2].len() == 700 << 10));
        drop(b.next().unwrap());
        assert_eq!(budget.used(), 0, "not taken: given back at the next call");
    }

    #[test]
    fn a_request_that_holds_part_of_a_full_budget_is_refused_and_gives_it_back() {
        let budget = Budget::new(1 << 20);
        let Reserve::Granted(other) = budget.try_reserve(300 << 10, false) else {
            panic!()
        };
        let mut p = Parser::with_budget(budget.clone());
        let half = 400 << 10;
        p.feed(format!("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n${half}\r\n").as_bytes());
        p.feed(&vec![b'x'; half]);
        p.feed(format!("\r\n$1\r\nb\r\n${half}\r\n").as_bytes());
        assert_eq!(p.next().unwrap(), None);
        assert_eq!(budget.used(), 300 << 10, "the first value's share is given back");
        p.feed(&vec![b'x'; half]);
        p.feed(b"\r\nPING\r\n");
        assert!(matches!(p.next().unwrap(), Some(Parsed::Refused(m)) if m.starts_with("OOM")));
        assert_eq!(p.next().unwrap(), Some(cmd(&["PING"])));
        // More than the whole budget is refused at once, never waited for.
        p.feed(&set_header("c", (1 << 20) + FREE_BYTES));
        p.feed(&vec![b'x'; (1 << 20) + FREE_BYTES]);
        p.feed(b"\r\n");
        assert!(
            matches!(p.next().unwrap(), Some(Parsed::Refused(m)) if m.contains("--max-request-buffer-bytes"))
        );
        assert_eq!(p.wants_budget(), None);
        drop(other);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn before_auth_requests_are_held_to_redis_limits() {
        for (bad, why) in [
            (&b"*11\r\n"[..], "unauthenticated multibulk length"),
            (b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", "unauthenticated bulk length"),
        ] {
            let mut p = Parser::new();
            p.set_unauthenticated(true);
            p.feed(bad);
            assert_eq!(p.next(), Err(ProtocolError(why.into())));
        }
        let mut p = Parser::new();
        p.set_unauthenticated(true);
        p.feed(b"*2\r\n$4\r\nAUTH\r\n$16384\r\n");
        assert_eq!(p.next().unwrap(), None);
    }

    #[test]
    fn replies_are_encoded() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::ok(),
            Reply::err("ERR bad\r\nthing"),
            Reply::Int(-3),
            Reply::Bulk(b"a\r\nb".to_vec()),
            Reply::Nil,
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*5\r\n+OK\r\n-ERR bad  thing\r\n:-3\r\n$4\r\na\r\nb\r\n$-1\r\n"
        );
    }
}
