//! The HTTP API, in the style of etcd's raftexample:
//!
//! | request | answer |
//! | --- | --- |
//! | `PUT /KEY` (body: the value) | 204 |
//! | `GET /KEY` | 200 and the value (linearizable), 404 if missing |
//! | `DELETE /KEY` | 204 |
//! | `GET /-/status` | 200, this node's status as JSON |
//! | `GET /-/leader` | 200 and the leader's `ip:port`, 503 if none is known |
//! | `GET /-/servers` | 200, the members, one a line |
//! | `POST /-/servers` (body: `ip:port`) | 204 once the server votes |
//! | `DELETE /-/servers/IP:PORT` | 204 once removed |
//!
//! Keys are the percent-decoded path after `/` (a query string is ignored).
//! Errors: 400 bad input, 404 missing key, 409 locked/busy (another membership
//! change runs: retry), 413 value too large, 503 no leader or node stopped,
//! 504 timed out (the outcome is unknown), 500 otherwise; the body says why.
//!
//! With `--requirepass`, every request needs the password, as
//! `Authorization: Bearer PASSWORD` or HTTP Basic with any user name and
//! the password: 401 and `WWW-Authenticate` otherwise. With `--no-admin`,
//! `POST /-/servers` and `DELETE /-/servers/…` get 403.

use crate::commands::same_secret;
use crate::shards::Shards;
use floyd::{Error, Floyd};
use std::io::Read;
use std::sync::Arc;
use tiny_http::{Header, Method, Request, Response, Server};

/// Worker threads answering HTTP requests (each may block on a floyd call).
const WORKERS: usize = 4;

type Answer = (u16, Vec<u8>, &'static str);

/// Who may do what over HTTP.
#[derive(Clone)]
pub struct Access {
    /// `--requirepass`: every request must carry it.
    pub password: Option<Vec<u8>>,
    /// Membership changes are served (no `--no-admin`).
    pub admin: bool,
}

/// Starts the HTTP workers; the returned server stops them with `unblock`.
pub fn start(addr: &str, shards: Arc<Shards>, access: Access) -> Result<Arc<Server>, String> {
    let server = Arc::new(Server::http(addr).map_err(|e| format!("HTTP on {addr}: {e}"))?);
    for _ in 0..WORKERS {
        let (s, f, a) = (server.clone(), shards.clone(), access.clone());
        std::thread::Builder::new()
            .name("raftis-http".into())
            .spawn(move || {
                while let Ok(req) = s.recv() {
                    handle(&f, &a, req);
                }
            })
            .map_err(|e| format!("cannot start an HTTP thread: {e}"))?;
    }
    Ok(server)
}

fn handle(f: &Shards, access: &Access, mut req: Request) {
    let header =
        |name: &str, value: &str| Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("header");
    if let Some(secret) = &access.password {
        if !authorized(&req, secret) {
            let resp = Response::from_data(&b"authentication required\n"[..])
                .with_status_code(401)
                .with_header(header("Content-Type", "text/plain; charset=utf-8"))
                .with_header(header("WWW-Authenticate", "Basic realm=\"raftis\""))
                .with_header(header("WWW-Authenticate", "Bearer realm=\"raftis\""));
            let _ = req.respond(resp);
            return;
        }
    }
    let (code, body, ctype) = answer(f, access.admin, &mut req);
    let resp = Response::from_data(body)
        .with_status_code(code)
        .with_header(header("Content-Type", ctype));
    let _ = req.respond(resp);
}

/// Whether `req` carries the password: `Authorization: Bearer PASSWORD`,
/// or `Basic` with any user name and the password.
fn authorized(req: &Request, secret: &[u8]) -> bool {
    let Some(h) = req.headers().iter().find(|h| h.field.equiv("Authorization")) else {
        return false;
    };
    let value = h.value.as_str().trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("Bearer") {
        return same_secret(rest.as_bytes(), secret);
    }
    if scheme.eq_ignore_ascii_case("Basic") {
        let Some(pair) = base64_decode(rest) else {
            return false;
        };
        let Some(colon) = pair.iter().position(|&c| c == b':') else {
            return false;
        };
        return same_secret(&pair[colon + 1..], secret);
    }
    false
}

/// Standard base64 (padding optional); `None` if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6).then_some(out)
}

fn text(code: u16, s: impl Into<String>) -> Answer {
    let mut s = s.into();
    s.push('\n');
    (code, s.into_bytes(), "text/plain; charset=utf-8")
}

fn no_content() -> Answer {
    (204, Vec::new(), "text/plain; charset=utf-8")
}

fn error(e: &Error) -> Answer {
    let code = match e {
        Error::NotFound => 404,
        Error::NoLeader(_) | Error::Stopped(_) => 503,
        Error::Timeout(_) => 504,
        Error::Locked(_) | Error::NotHolder(_) | Error::Busy(_) => 409,
        Error::InvalidArgument(_) => 400,
        _ => 500,
    };
    text(code, e.to_string())
}

fn answer(shards: &Shards, admin: bool, req: &mut Request) -> Answer {
    let f = &**shards.first();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    let Some(path) = percent_decode(path) else {
        return text(400, "bad percent-encoding in the path");
    };
    let method = req.method().clone();
    if path == b"/metrics" && method == Method::Get {
        return (200, shards.metrics().into_bytes(), OPENMETRICS);
    }
    let api = path.strip_prefix(b"/-/").filter(|a| !a.starts_with(b"kv/"));
    if let Some(api) = api {
        let api = String::from_utf8_lossy(api).into_owned();
        let changes_servers = api == "servers" || api.starts_with("servers/");
        if !admin && changes_servers && matches!(method, Method::Post | Method::Delete) {
            return text(403, "admin commands are disabled on this node");
        }
        return match (&method, api.as_str()) {
            (Method::Get, "status") => (
                200,
                (f.server_status().to_json() + "\n").into_bytes(),
                "application/json",
            ),
            (Method::Get, "leader") => match f.get_leader() {
                Some(l) => text(200, l),
                None => text(503, "no leader known"),
            },
            (Method::Get, "servers") => text(200, f.get_all_servers().join("\n")),
            (Method::Post, "servers") => match body(req, 256) {
                Ok(b) => {
                    let server = String::from_utf8_lossy(&b).trim().to_string();
                    every_group(shards, |f| f.add_server(&server))
                }
                Err(a) => a,
            },
            (Method::Delete, s) if s.starts_with("servers/") => {
                every_group(shards, |f| f.remove_server(&s["servers/".len()..]))
            }
            _ => text(404, format!("no such API: {method} /-/{api}")),
        };
    }
    // `/-/kv/KEY` reaches any key, `metrics` too.
    let key = path.strip_prefix(b"/-/kv/").unwrap_or(&path[1.min(path.len())..]);
    if key.is_empty() {
        return text(400, "the key is the path: /KEY");
    }
    let f = &**shards.for_key(key);
    match method {
        Method::Get => f
            .read(key)
            .map_or_else(|e| error(&e), |v| (200, v, "application/octet-stream")),
        Method::Put | Method::Post => match body(req, floyd::options::MAX_VALUE_BYTES) {
            Ok(v) => f.write(key, &v).map_or_else(|e| error(&e), |_| no_content()),
            Err(a) => a,
        },
        Method::Delete => f.delete(key).map_or_else(|e| error(&e), |_| no_content()),
        other => text(405, format!("method {other} is not allowed on a key")),
    }
}

/// What Prometheus asks for and gets.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A membership change in every group, in order: the first error, else 204.
fn every_group(shards: &Shards, change: impl Fn(&Floyd) -> Result<(), Error>) -> Answer {
    match shards.all().iter().try_for_each(|f| change(f)) {
        Ok(()) => no_content(),
        Err(e) => error(&e),
    }
}

/// The request body, refused (413) past `limit` bytes before reading it all.
fn body(req: &mut Request, limit: usize) -> Result<Vec<u8>, Answer> {
    let too_large = || text(413, format!("the body is over the limit of {limit} bytes"));
    if req.body_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut v = Vec::new();
    req.as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| text(400, format!("cannot read the body: {e}")))?;
    if v.len() > limit {
        return Err(too_large());
    }
    Ok(v)
}

/// `%XX` decoded; `None` for a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decoding() {
        assert_eq!(super::base64_decode("dXNlcjpzM2NyZXQ=").unwrap(), b"user:s3cret");
        assert_eq!(super::base64_decode("OnB3").unwrap(), b":pw");
        assert_eq!(super::base64_decode("").unwrap(), b"");
        assert!(super::base64_decode("a").is_none());
        assert!(super::base64_decode("ab!c").is_none());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("/a%20b%2F").unwrap(), b"/a b/");
        assert!(super::percent_decode("/a%2").is_none());
        assert!(super::percent_decode("/a%zz").is_none());
    }
}
