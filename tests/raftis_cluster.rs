//! raftis over many groups as a Redis Cluster (issue 24, item 4): the key
//! space split by hash slot over `--groups` floyd groups, CLUSTER SLOTS,
//! NODES, SHARDS and INFO naming the node that leads each range, leaders
//! spread over the nodes and spread again when a node is back, MOVED for
//! clients that opted in, CROSSSLOT for multi-key commands across groups,
//! and redis-cli -c and redis-benchmark --cluster against it.

mod common;

use common::raftis::Cluster;
use common::redis_cluster::{balanced, by_raft_address, slot_ranges};
use common::wait_until;
use redis::{Connection, RedisResult, Value};
use std::collections::BTreeSet;

const GROUPS: usize = 4;

fn error_text(r: RedisResult<Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn keys_spread_over_groups_and_cluster_commands_name_each_ranges_leader() {
    let c = Cluster::start_with_args(3, &["--groups", &GROUPS.to_string()]);
    wait_until("leaders spread over the 3 nodes", || balanced(&c, GROUPS));
    let mut cons: Vec<Connection> = (0..3).map(|i| c.connect(i)).collect();

    // Every slot in one of 4 contiguous ranges, each led by a node.
    let ranges = slot_ranges(&mut cons[1]);
    let bounds: Vec<(i64, i64)> = ranges.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(bounds, [(0, 4095), (4096, 8191), (8192, 12287), (12288, 16383)]);
    let addrs: BTreeSet<&String> = ranges.iter().map(|r| &r.2).collect();
    assert_eq!(addrs.len(), 3, "every node leads a range: {ranges:?}");
    let slot: i64 = redis::cmd("CLUSTER")
        .arg(&["KEYSLOT", "foo"])
        .query(&mut cons[0])
        .unwrap();
    assert_eq!(slot, 12182);
    let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut cons[0]).unwrap();
    assert_eq!(id.len(), 40);

    // Plain clients: any key through any node (forwarded to its group's leader).
    for k in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(&[format!("key{k}"), format!("v{k}")])
            .query(&mut cons[k % 3])
            .unwrap();
    }
    let _: i64 = redis::cmd("INCR").arg("counter").query(&mut cons[2]).unwrap();
    for con in &mut cons {
        let size: i64 = redis::cmd("DBSIZE").query(con).unwrap();
        assert_eq!(size, 201, "raftis's own address entries are not counted");
        let v: String = redis::cmd("GET").arg("key123").query(con).unwrap();
        assert_eq!(v, "v123");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("key*").query(&mut cons[1]).unwrap();
    assert_eq!(keys.len(), 200);
    let scanned: BTreeSet<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg(&["COUNT", "7"])
        .clone()
        .iter(&mut cons[2])
        .unwrap()
        .map(|k| k.unwrap())
        .collect();
    assert_eq!(scanned.len(), 201, "SCAN walks every group once");
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut cons[0]).unwrap();
    assert!(info.contains("db0:keys=201,"), "{info}");

    // Multi-key commands: one group (a hash tag), or CROSSSLOT.
    let e = error_text(redis::cmd("MSET").arg(&["a", "1", "b", "2"]).query(&mut cons[0]));
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    let _: () = redis::cmd("MSET")
        .arg(&["{u}a", "1", "{u}b", "2"])
        .query(&mut cons[0])
        .unwrap();
    let both: Vec<String> = redis::cmd("MGET")
        .arg(&["{u}a", "{u}b"])
        .query(&mut cons[1])
        .unwrap();
    assert_eq!(both, ["1", "2"]);
    let multi: RedisResult<Value> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&["a", "1"])
        .cmd("SET")
        .arg(&["b", "1"])
        .query(&mut cons[0]);
    let e = multi.expect_err("a transaction over two groups").to_string();
    assert!(e.contains("CrossSlot") || e.contains("CROSSSLOT"), "{e}");
    let mut raw = c.connect(0);
    let _: () = redis::cmd("MULTI").query(&mut raw).unwrap();
    let _: () = redis::cmd("SET").arg(&["a", "1"]).query(&mut raw).unwrap();
    let e = error_text(redis::cmd("SET").arg(&["b", "1"]).query(&mut raw));
    assert!(e.starts_with("CROSSSLOT"), "{e}");
    let e = error_text(redis::cmd("EXEC").query(&mut raw));
    assert!(e.starts_with("EXECABORT"), "{e}");
    let (x, y): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("{u}n")
        .cmd("INCR")
        .arg("{u}n")
        .query(&mut cons[2])
        .unwrap();
    assert_eq!((x, y), (1, 2));

    // A connection that opted in (READWRITE) is sent to the range's leader
    // (asked again if leadership moved in between: an election under load).
    let mut opted = c.connect(0);
    let _: () = redis::cmd("READWRITE").query(&mut opted).unwrap();
    let mut key = String::new();
    wait_until("a MOVED naming the range's leader", || {
        let ranges = slot_ranges(&mut cons[0]);
        let Some((first, last, leader_addr)) = ranges.into_iter().find(|r| r.2 != c.resp_addr(0)) else {
            return false;
        };
        key = (0..)
            .map(|n| format!("moved{n}"))
            .find(|k| {
                let s: i64 = redis::cmd("CLUSTER")
                    .arg(&["KEYSLOT", k])
                    .query(&mut cons[0])
                    .unwrap();
                (first..=last).contains(&s)
            })
            .unwrap();
        match redis::cmd("SET").arg(&[&key, "x"]).query::<Value>(&mut opted) {
            Err(e) => {
                let text = format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""));
                assert!(text.starts_with("MOVED"), "{text}");
                text.ends_with(&leader_addr)
            }
            // Node 0 leads that range now: the key was written; try another.
            Ok(_) => {
                let _: () = redis::cmd("DEL").arg(&key).query(&mut cons[1]).unwrap();
                false
            }
        }
    });
    let _: () = redis::cmd("READONLY").query(&mut opted).unwrap();
    let none: Option<String> = redis::cmd("GET").arg(&key).query(&mut opted).unwrap();
    assert_eq!(none, None, "READONLY: reads served here");

    // FLUSHALL empties every group; the nodes' entries come back, unseen.
    let _: () = redis::cmd("FLUSHALL").query(&mut cons[0]).unwrap();
    let size: i64 = redis::cmd("DBSIZE").query(&mut cons[1]).unwrap();
    assert_eq!(size, 0);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut cons[2]).unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    let none: Option<String> = redis::cmd("RANDOMKEY").query(&mut cons[2]).unwrap();
    assert_eq!(none, None);
    wait_until("every node named in CLUSTER SLOTS again", || {
        slot_ranges(&mut cons[0]).len() == GROUPS
    });
}

#[test]
fn a_killed_nodes_groups_elect_elsewhere_and_come_back_to_it() {
    let mut c = Cluster::start_with_args(3, &["--groups", &GROUPS.to_string()]);
    wait_until("leaders spread over the 3 nodes", || balanced(&c, GROUPS));
    {
        let mut con = c.connect(1);
        for k in 0..100 {
            let _: () = redis::cmd("SET")
                .arg(&[format!("k{k}"), k.to_string()])
                .query(&mut con)
                .unwrap();
        }
    }
    c.kill9(0);
    wait_until("the other two lead every range", || {
        let mut con = c.connect(1);
        let r = slot_ranges(&mut con);
        r.len() == GROUPS && r.iter().all(|(_, _, a)| *a != c.resp_addr(0))
    });
    {
        let mut con = c.connect(2);
        for k in 0..100 {
            let v: String = redis::cmd("GET").arg(format!("k{k}")).query(&mut con).unwrap();
            assert_eq!(v, k.to_string(), "every acknowledged write is there");
        }
        let _: () = redis::cmd("SET")
            .arg(&["while-down", "1"])
            .query(&mut con)
            .unwrap();
    }
    c.restart(0);
    wait_until("the node back leads a range again", || balanced(&c, GROUPS));
    let mut con = c.connect(0);
    let v: String = redis::cmd("GET").arg("while-down").query(&mut con).unwrap();
    assert_eq!(v, "1");
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(size, 101);
}

#[test]
fn the_number_of_groups_cannot_change_under_existing_data() {
    let mut c = Cluster::start_with_args(1, &["--groups", "2"]);
    let mut con = c.connect(0);
    let _: () = redis::cmd("SET").arg(&["k", "v"]).query(&mut con).unwrap();
    drop(con);
    c.stop(0);
    let dir = c.node_dir(0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raftis"))
        .args([
            "--members",
            "127.0.0.1:1",
            "--local",
            "127.0.0.1:1",
            "--port",
            "0",
            "--groups",
            "3",
        ])
        .arg("--path")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("split over 2 group(s): start with --groups 2"),
        "{err}"
    );
}

/// redis-cli and redis-benchmark (Debian's redis-tools, installed by
/// scripts/install-deps.sh) as Redis Cluster clients, against `--moved`
/// and eight groups.
#[test]
fn redis_cli_c_and_redis_benchmark_cluster_work() {
    let c = Cluster::start_with_args(3, &["--groups", "8", "--moved"]);
    wait_until("leaders spread over the 3 nodes", || balanced(&c, 8));
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &c.port(0).to_string()])
            .args(args)
            .output()
            .expect("redis-cli (redis-tools) is installed");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Keys in ranges of every node, through node 0, following MOVED.
    for k in ["foo", "bar", "baz", "qux", "a", "b", "c"] {
        assert_eq!(cli(&["SET", k, &format!("v-{k}")]), "OK");
        assert_eq!(cli(&["GET", k]), format!("v-{k}"));
    }
    let out = std::process::Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p", &c.port(1).to_string()])
        .args(["-t", "set,get", "-n", "2000", "-r", "10000", "-c", "8", "-q"])
        .output()
        .expect("redis-benchmark (redis-tools) is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SET: ") && text.contains("GET: "), "{text}");
    let mut con = c.connect(2);
    let size: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert!(size > 7, "the benchmark's keys are stored: {size}");
}

/// Whether every link of node `i`'s host has been up longer than `ms`
/// (`FLOYD.STATUS HOST`).
fn links_older_than(c: &Cluster, i: usize, ms: u64) -> bool {
    let mut con = c.connect(i);
    let json: String = redis::cmd("FLOYD.STATUS").arg("HOST").query(&mut con).unwrap();
    let ages: Vec<Option<u64>> = json
        .split("\"connected_ms\":")
        .skip(1)
        .map(|rest| {
            rest.split(|ch: char| !ch.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .ok()
        })
        .collect();
    ages.len() == 2 && ages.iter().all(|a| a.is_some_and(|a| a > ms))
}

/// A FLOYD.TRANSFER holds: the balancer hands a group back to the node that
/// should lead it only within `--balance-window-secs` of that node's host
/// (re)connecting. Before, it did every 500 ms, so draining the leaders off
/// a node before its maintenance was undone at once.
#[test]
fn a_transfer_holds_until_the_node_it_drained_reconnects() {
    let mut c = Cluster::start_with_args(
        3,
        &["--groups", &GROUPS.to_string(), "--balance-window-secs", "5"],
    );
    wait_until("leaders spread over the 3 nodes", || balanced(&c, GROUPS));
    wait_until("every link up longer than the window", || {
        (0..3).all(|i| links_older_than(&c, i, 5_000))
    });
    // Group g's leader, once balanced, is order[g % 3].
    let order = by_raft_address(&c);
    let target = order[2];
    let mut con = c.connect(target);
    let _: () = redis::cmd("FLOYD.TRANSFER")
        .arg(&c.node(target).raft)
        .query(&mut con)
        .unwrap();
    let led_by = |c: &Cluster, viewer: usize| -> Vec<String> {
        slot_ranges(&mut c.connect(viewer))
            .into_iter()
            .map(|r| r.2)
            .collect()
    };
    wait_until("the target leads every range", || {
        led_by(&c, target).iter().all(|a| *a == c.resp_addr(target))
    });
    // order[0] restarts: its groups (0 and 3) come back to it; group 1's
    // node never reconnected, so group 1 stays where the transfer put it.
    c.kill9(order[0]);
    c.restart(order[0]);
    wait_until("the restarted node leads groups 0 and 3 again", || {
        let led = led_by(&c, target);
        led.len() == GROUPS && led[0] == c.resp_addr(order[0]) && led[3] == c.resp_addr(order[0])
    });
    assert_eq!(
        led_by(&c, target)[1],
        c.resp_addr(target),
        "group 1 stays drained"
    );
}
