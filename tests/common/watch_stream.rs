//! A client of raftis's `FLOYD.WATCH` stream, for the raftis tests and the
//! fault harness's watchers.

use redis::{Connection, RedisResult, Value};
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
}

/// A connection that carries one watch.
pub struct WatchStream {
    con: Connection,
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
) -> RedisResult<Result<WatchStream, String>> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(read_timeout))?;
    let cmd = redis::cmd("FLOYD.WATCH")
        .arg(start)
        .arg(end)
        .arg(revision)
        .get_packed_command();
    con.send_packed_command(&cmd)?;
    match con.recv_response() {
        Ok(Value::Array(items)) => match items.as_slice() {
            [Value::BulkString(w), Value::Int(id)] if w == b"watch" => Ok(Ok(WatchStream { con, id: *id })),
            other => Ok(Err(format!("unexpected first reply {other:?}"))),
        },
        Ok(other) => Ok(Err(format!("unexpected first reply {other:?}"))),
        Err(e)
            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                || e.code().is_some() =>
        {
            Ok(Err(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

impl WatchStream {
    /// The next change (or the end), waiting at most the read timeout.
    pub fn next(&mut self) -> RedisResult<Streamed> {
        let Value::Array(items) = self.con.recv_response()? else {
            return Ok(Streamed::End("not an array".into()));
        };
        Ok(match items.as_slice() {
            [Value::BulkString(tag), Value::Int(rev), Value::BulkString(kind), Value::BulkString(key), Value::BulkString(value)]
                if tag == b"event" =>
            {
                Streamed::Change(Change {
                    revision: *rev as u64,
                    put: kind == b"put",
                    key: key.clone(),
                    value: value.clone(),
                })
            }
            [_, why] => Streamed::End(format!("{why:?}")),
            other => Streamed::End(format!("{other:?}")),
        })
    }
}
