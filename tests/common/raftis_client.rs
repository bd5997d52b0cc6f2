//! Talking to a raftis node in tests: a SET retried until acknowledged, an
//! error reply's code, one HTTP/1.1 request.

use super::DEADLINE;
use redis::{Connection, RedisResult, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub fn error_code(r: RedisResult<Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// SET until acknowledged, retrying errors that say "not applied" or
/// "unknown" (the same value written again is harmless).
pub fn set_acknowledged(con: &mut Connection, key: &str, value: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match redis::cmd("SET").arg(key).arg(value).query::<String>(con) {
            Ok(ok) => return assert_eq!(ok, "OK"),
            Err(e) => {
                let code = e.code().unwrap_or("").to_string();
                assert!(
                    matches!(code.as_str(), "NOLEADER" | "TIMEOUT" | "BUSY"),
                    "SET {key}: {e}"
                );
                assert!(Instant::now() < deadline, "SET {key} never acknowledged: {e}");
            }
        }
    }
}

/// One HTTP/1.1 request; the status code and the body.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let (code, _, body) = http_with(port, method, path, &[], body);
    (code, body)
}

/// One HTTP/1.1 request with extra header lines; the status code, the
/// response's header lines and its body.
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let at = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers")
        + 4;
    (code, text[..at].to_string(), resp[at..].to_vec())
}
