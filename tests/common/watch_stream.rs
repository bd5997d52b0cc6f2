//! A client of raftis's `FLOYD.WATCH` stream, for the raftis tests and the
//! fault harness's watchers: a plain socket and a small RESP reader, so a
//! read that times out loses nothing (the stream goes on where it was).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One change as the stream carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: u64,
    pub put: bool,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// What the stream said next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streamed {
    Change(Change),
    /// The watch ended by itself; why.
    End(String),
    /// Nothing within the read timeout (the stream is still there).
    Idle,
}

/// A RESP value of the kinds the stream uses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resp {
    Bulk(Vec<u8>),
    Int(i64),
    Error(String),
    Simple(String),
    Array(Vec<Resp>),
}

/// A connection that carries one watch.
pub struct WatchStream {
    stream: TcpStream,
    buf: Vec<u8>,
    pub id: i64,
}

/// Opens a connection to `addr` (`ip:port`) and watches `[start, end)` from
/// `revision` on it. `Ok(Err(text))`: the node refused the watch.
pub fn watch(
    addr: &str,
    start: &[u8],
    end: &[u8],
    revision: u64,
    read_timeout: Duration,
) -> std::io::Result<Result<WatchStream, String>> {
    let to = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "no address"))?;
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(read_timeout))?;
    let rev = revision.to_string();
    let args: [&[u8]; 4] = [b"FLOYD.WATCH", start, end, rev.as_bytes()];
    let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a);
        cmd.extend_from_slice(b"\r\n");
    }
    stream.write_all(&cmd)?;
    let mut w = WatchStream {
        stream,
        buf: Vec::new(),
        id: 0,
    };
    let first = loop {
        if let Some(v) = w.read_value()? {
            break v;
        }
    };
    match first {
        Resp::Array(items) => match items.as_slice() {
            [Resp::Bulk(tag), Resp::Int(id)] if tag == b"watch" => {
                w.id = *id;
                Ok(Ok(w))
            }
            other => Ok(Err(format!("unexpected first reply {other:?}"))),
        },
        Resp::Error(e) => Ok(Err(e)),
        other => Ok(Err(format!("unexpected first reply {other:?}"))),
    }
}

impl WatchStream {
    /// The next change, the end, or `Idle` after the read timeout.
    pub fn next(&mut self) -> std::io::Result<Streamed> {
        let Some(v) = self.read_value()? else {
            return Ok(Streamed::Idle);
        };
        let Resp::Array(items) = v else {
            return Ok(Streamed::End(format!("{v:?}")));
        };
        Ok(match items.as_slice() {
            [Resp::Bulk(tag), Resp::Int(rev), Resp::Bulk(kind), Resp::Bulk(key), Resp::Bulk(value)]
                if tag == b"event" =>
            {
                Streamed::Change(Change {
                    revision: *rev as u64,
                    put: kind == b"put",
                    key: key.clone(),
                    value: value.clone(),
                })
            }
            [_, Resp::Error(why)] => Streamed::End(why.clone()),
            other => Streamed::End(format!("{other:?}")),
        })
    }

    /// One whole value, reading more as needed; `None` if the read timed
    /// out first (what was read stays buffered).
    fn read_value(&mut self) -> std::io::Result<Option<Resp>> {
        loop {
            if let Some((v, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(v));
            }
            let mut chunk = [0u8; 16 << 10];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A value at the start of `b` and the bytes it took, or `None` if `b`
/// holds only part of one.
fn parse(b: &[u8]) -> std::io::Result<Option<(Resp, usize)>> {
    let Some(line_end) = b.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let bad = || std::io::Error::new(ErrorKind::InvalidData, "not RESP");
    let line = std::str::from_utf8(&b[1..line_end]).map_err(|_| bad())?;
    let after = line_end + 2;
    match b.first() {
        Some(b'+') => Ok(Some((Resp::Simple(line.to_string()), after))),
        Some(b'-') => Ok(Some((Resp::Error(line.to_string()), after))),
        Some(b':') => Ok(Some((Resp::Int(line.parse().map_err(|_| bad())?), after))),
        Some(b'$') => {
            let len: usize = line.parse().map_err(|_| bad())?;
            if b.len() < after + len + 2 {
                return Ok(None);
            }
            Ok(Some((
                Resp::Bulk(b[after..after + len].to_vec()),
                after + len + 2,
            )))
        }
        Some(b'*') => {
            let n: usize = line.parse().map_err(|_| bad())?;
            let (mut items, mut at) = (Vec::with_capacity(n), after);
            for _ in 0..n {
                match parse(&b[at..])? {
                    Some((v, used)) => {
                        items.push(v);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), at)))
        }
        _ => Err(bad()),
    }
}
