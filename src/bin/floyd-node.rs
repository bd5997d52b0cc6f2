//! One floyd node as its own process, driven by a line protocol on stdin.
//!
//! ```text
//! floyd-node --members 127.0.0.1:8901,127.0.0.1:8902,127.0.0.1:8903 \
//!            --ip 127.0.0.1 --port 8901 --path /tmp/n1 [--heartbeat-us N] [--check-leader-us N] [--join]
//!            [--snapshot-entries N] [--snapshot-keep N] [--snapshot-rate BYTES_PER_SEC] [--lease-reads]
//!            [--tls-ca CA.pem --tls-cert CERT.pem --tls-key KEY.pem]
//! ```
//! With `--join` the node starts empty and waits to be added (`add` on any
//! member); `--members` then lists the existing members and need not name it.
//!
//! Commands, one per line; each answer is one line starting with `OK`,
//! `NOT_FOUND` or `ERR <kind>(<message>)`:
//! `put K V`, `get K`, `dirty K`, `del K`, `lock NAME HOLDER TTL_MS` (`OK <token>`),
//! `unlock NAME HOLDER`, `add IP:PORT`, `remove IP:PORT`, `transfer IP:PORT` (hands
//! leadership to that voter; `OK` once it leads), `servers` (`OK a,b,…`), `leader`,
//! `status`, `quit`.
//!
//! With `--groups N` the process is a host of many groups (`floyd::Host`,
//! issue 21): groups 1 to N, each of `--members` (host addresses) with the
//! same options, on one port and one directory. A command for a group is
//! prefixed with it: `g ID put K V`, `g ID get K`, …; `leaders` answers the
//! groups this host leads (`OK 1,4,7`, or `OK` for none), `hoststatus` the
//! host's status as JSON.

use floyd::{Error, Floyd, Host, Options};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn options(args: &[String]) -> Result<Options, String> {
    let need = |name: &str| arg(args, name).ok_or(format!("missing {name}"));
    let port = need("--port")?.parse().map_err(|_| "bad --port".to_string())?;
    let mut o = Options::new(&need("--members")?, &need("--ip")?, port, need("--path")?);
    if let Some(v) = arg(args, "--heartbeat-us") {
        o.heartbeat_us = v.parse().map_err(|_| "bad --heartbeat-us".to_string())?;
    }
    if let Some(v) = arg(args, "--check-leader-us") {
        o.check_leader_us = v.parse().map_err(|_| "bad --check-leader-us".to_string())?;
    }
    o.join = args.iter().any(|a| a == "--join");
    o.lease_reads = args.iter().any(|a| a == "--lease-reads");
    let number = |name: &str| -> Result<Option<u64>, String> {
        arg(args, name)
            .map(|v| v.parse().map_err(|_| format!("bad {name}")))
            .transpose()
    };
    if let Some(n) = number("--snapshot-entries")? {
        o.snapshot_log_entries = n;
    }
    if let Some(n) = number("--snapshot-keep")? {
        o.snapshot_keep_entries = n;
    }
    if let Some(n) = number("--snapshot-rate")? {
        o.snapshot_bytes_per_sec = n;
    }
    o.tls = floyd::TlsFiles::from_parts(
        arg(args, "--tls-ca"),
        arg(args, "--tls-cert"),
        arg(args, "--tls-key"),
    )
    .map_err(|_| "--tls-ca, --tls-cert and --tls-key go together")?;
    // For tests: abort the process at a failpoint (see Options::crash_at).
    o.crash_at = arg(args, "--crash-at");
    Ok(o)
}

fn answer(r: Result<Option<Vec<u8>>, Error>) -> String {
    match r {
        Ok(None) => "OK".to_string(),
        Ok(Some(v)) => format!("OK {}", String::from_utf8_lossy(&v)),
        Err(Error::NotFound) => "NOT_FOUND".to_string(),
        Err(e) => format!("ERR {e:?}"),
    }
}

fn execute(f: &Floyd, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Some(match words.as_slice() {
        ["put", k, v] => answer(f.write(k.as_bytes(), v.as_bytes()).map(|_| None)),
        ["get", k] => answer(f.read(k.as_bytes()).map(Some)),
        ["dirty", k] => answer(f.dirty_read(k.as_bytes()).map(Some)),
        ["del", k] => answer(f.delete(k.as_bytes()).map(|_| None)),
        ["lock", name, holder, ttl] => match ttl.parse::<u64>() {
            Ok(ttl) => answer(
                f.try_lock(name.as_bytes(), holder.as_bytes(), ttl)
                    .map(|token| Some(token.to_string().into_bytes())),
            ),
            Err(_) => format!("ERR bad ttl_ms {ttl:?}"),
        },
        ["unlock", name, holder] => answer(f.unlock(name.as_bytes(), holder.as_bytes()).map(|_| None)),
        ["add", server] => answer(f.add_server(server).map(|_| None)),
        ["remove", server] => answer(f.remove_server(server).map(|_| None)),
        ["transfer", server] => answer(f.transfer_leader(server).map(|_| None)),
        ["servers"] => format!("OK {}", f.get_all_servers().join(",")),
        ["leader"] => format!("OK {}", f.get_leader().unwrap_or_default()),
        ["status"] => format!("OK {}", f.server_status().to_json()),
        ["quit"] => return None,
        _ => format!("ERR unknown command {line:?}"),
    })
}

/// A host of groups 1 to `n`, each with the group options of `opts`.
fn open_host(opts: Options, n: u64) -> Result<(Host, BTreeMap<u64, Floyd>), Error> {
    let (host_opts, group_opts) = opts.split();
    let host = Host::open(host_opts)?;
    let mut groups = BTreeMap::new();
    for g in 1..=n {
        groups.insert(g, host.open_group(g, group_opts.clone())?);
    }
    Ok((host, groups))
}

/// A command to a host of many groups.
fn execute_on_host(host: &Host, groups: &BTreeMap<u64, Floyd>, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Some(match words.as_slice() {
        ["g", id, command @ ..] => match id.parse::<u64>().ok().and_then(|g| groups.get(&g)) {
            Some(f) => return execute(f, &command.join(" ")),
            None => format!("ERR no group {id:?} on this host"),
        },
        ["leaders"] => {
            let leading: Vec<String> = groups
                .iter()
                .filter(|(_, f)| f.is_leader())
                .map(|(g, _)| g.to_string())
                .collect();
            format!("OK {}", leading.join(",")).trim_end().to_string()
        }
        ["hoststatus"] => format!("OK {}", host.status_json()),
        ["quit"] => return None,
        _ => format!("ERR unknown command {line:?} (a host's commands name their group: g ID …)"),
    })
}

/// Answers commands from stdin, one line each, until `quit` or the end.
fn serve(mut execute: impl FnMut(&str) -> Option<String>) {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match execute(&line) {
            Some(reply) => {
                let _ = writeln!(out, "{reply}");
                let _ = out.flush();
            }
            None => break,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = options(&args).and_then(|o| {
        let groups = arg(&args, "--groups")
            .map(|n| n.parse::<u64>().map_err(|_| "bad --groups".to_string()))
            .transpose()?;
        Ok((o, groups))
    });
    let (opts, groups) = match parsed {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "floyd-node: {e}\nusage: floyd-node --members A,B,C --ip IP --port PORT --path DIR [--join] [--groups N]"
            );
            std::process::exit(2);
        }
    };
    if let Some(n) = groups {
        let (host, groups) = match open_host(opts, n) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("floyd-node: cannot open the host: {e}");
                std::process::exit(1);
            }
        };
        println!("READY");
        serve(|line| execute_on_host(&host, &groups, line));
        for f in groups.values() {
            f.close();
        }
        host.close();
        return;
    }
    let f = match Floyd::open(opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("floyd-node: cannot open: {e}");
            std::process::exit(1);
        }
    };
    println!("READY");
    serve(|line| execute(&f, line));
    f.close();
}
