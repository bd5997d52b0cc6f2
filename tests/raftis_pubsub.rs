//! raftis's Pub/Sub and Redis keyspace notifications (issue 24, item 3):
//! PUBLISH to channel and pattern subscribers of a node, subscribe mode's
//! commands, and `notify-keyspace-events` telling every change of every
//! group, with Redis's event names, to subscribers on any node.

mod common;

use common::raftis::Cluster;
use common::redis_cluster::{balanced, by_raft_address};
use redis::{Connection, Msg, RedisResult, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn error_text(r: RedisResult<Value>) -> String {
    match r {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// (channel, payload) of a message.
fn parts(m: &Msg) -> (String, String) {
    (
        m.get_channel_name().to_string(),
        String::from_utf8_lossy(m.get_payload_bytes()).into_owned(),
    )
}

#[test]
fn publish_reaches_channel_and_pattern_subscribers_and_subscribe_mode_takes_its_commands() {
    let c = Cluster::start(1);
    let mut a = c.connect(0);
    let mut b = c.connect(0);
    let mut publisher = c.connect(0);
    {
        let mut sub = a.as_pubsub();
        sub.subscribe("news").unwrap();
        let mut psub = b.as_pubsub();
        psub.psubscribe("n*").unwrap();
        let numsub: Vec<Value> = redis::cmd("PUBSUB")
            .arg(&["NUMSUB", "news"])
            .query(&mut publisher)
            .unwrap();
        assert_eq!(numsub[1], Value::Int(1));
        let numpat: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut publisher).unwrap();
        assert_eq!(numpat, 1);
        let n: i64 = redis::cmd("PUBLISH")
            .arg(&["news", "hello"])
            .query(&mut publisher)
            .unwrap();
        assert_eq!(n, 2, "a channel subscriber and a pattern subscriber");
        let n: i64 = redis::cmd("PUBLISH")
            .arg(&["other", "x"])
            .query(&mut publisher)
            .unwrap();
        assert_eq!(n, 0);
        sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        psub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(
            parts(&sub.get_message().unwrap()),
            ("news".into(), "hello".into())
        );
        let m = psub.get_message().unwrap();
        assert_eq!(m.get_pattern::<String>().unwrap(), "n*");
        assert_eq!(parts(&m), ("news".into(), "hello".into()));
        let pong: Vec<String> = sub.ping().unwrap();
        assert_eq!(pong, ["pong", ""]);
        sub.unsubscribe("news").unwrap();
    }
    // Back to ordinary commands once every subscription is gone.
    let _: () = redis::cmd("SET").arg(&["k", "v"]).query(&mut a).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut a).unwrap();
    assert_eq!(v, "v");
    // In subscribe mode only its commands run.
    let mut raw = c.connect(0);
    let _: Value = redis::cmd("SUBSCRIBE").arg("c1").query(&mut raw).unwrap();
    let e = error_text(redis::cmd("GET").arg("k").query(&mut raw));
    assert!(e.contains("only (P)SUBSCRIBE"), "{e}");
}

/// Waits for the messages that `want` lists (channel → payloads in order)
/// and returns what arrived on those channels.
fn collect(con: &mut Connection, want: &HashMap<String, Vec<String>>) -> HashMap<String, Vec<String>> {
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let mut sub = con.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let deadline = Instant::now() + common::DEADLINE;
    while want
        .iter()
        .any(|(ch, p)| got.get(ch).map_or(0, |g| g.len()) < p.len())
    {
        assert!(
            Instant::now() < deadline,
            "timed out: wanted {want:?}, got {got:?}"
        );
        if let Ok(m) = sub.get_message() {
            let (ch, payload) = parts(&m);
            got.entry(ch).or_default().push(payload);
        }
    }
    got
}

#[test]
fn keyspace_notifications_tell_every_change_of_every_group_on_any_node() {
    let c = Cluster::start_with_args(3, &["--groups", "2"]);
    // Two groups led by the first two nodes (in the order of their Raft
    // addresses): the third follows both, and hears of writes made on a
    // leader.
    common::wait_until("the groups' leaders in place", || balanced(&c, 2));
    let order = by_raft_address(&c);
    let (leader, follower) = (order[0], order[2]);
    let mut writer = c.connect(leader);
    let mut listener_cfg = c.connect(follower);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "KEA"])
        .query(&mut listener_cfg)
        .unwrap();
    let flags: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "notify-keyspace-events"])
        .query(&mut listener_cfg)
        .unwrap();
    assert_eq!(flags, ["notify-keyspace-events", "AKE"]);
    let e = error_text(
        redis::cmd("CONFIG")
            .arg(&["SET", "notify-keyspace-events", "Kq"])
            .query(&mut listener_cfg),
    );
    assert!(e.contains("notify-keyspace-events"), "{e}");

    let mut listener = c.connect(follower);
    let _: Value = redis::cmd("PSUBSCRIBE")
        .arg("__key*@0__:*")
        .query(&mut listener)
        .unwrap();
    // Keys of both groups: k and n in group 0 (slots 7629, 3432), h, l,
    // {l}2 and gone in group 1 (11694, 11562, 11562, 11139).
    for cmd in [
        vec!["SET", "k", "v", "EX", "100"],
        vec!["INCR", "n"],
        vec!["HSET", "h", "f", "v"],
        vec!["LPUSH", "l", "a"],
        vec!["RPOPLPUSH", "l", "{l}2"],
        vec!["DEL", "k"],
        vec!["SET", "gone", "v", "PX", "50"],
    ] {
        let _: Value = redis::cmd(cmd[0]).arg(&cmd[1..]).query(&mut writer).unwrap();
    }
    let want: HashMap<String, Vec<String>> = [
        ("__keyspace@0__:k", &["set", "expire", "del"][..]),
        ("__keyspace@0__:n", &["incrby"]),
        ("__keyspace@0__:h", &["hset"]),
        ("__keyspace@0__:l", &["lpush", "rpop", "del"]),
        ("__keyspace@0__:{l}2", &["lpush"]),
        ("__keyevent@0__:incrby", &["n"]),
        // Expired by the log's clock and swept on every replica.
        ("__keyevent@0__:expired", &["gone"]),
    ]
    .into_iter()
    .map(|(ch, p)| (ch.to_string(), p.iter().map(|s| s.to_string()).collect()))
    .collect();
    let got = collect(&mut listener, &want);
    for (ch, payloads) in &want {
        assert_eq!(&got[ch], payloads, "on {ch}");
    }
    assert!(
        got.keys().all(|ch| !ch.contains("raftis:node")),
        "raftis's own keys are not told: {got:?}"
    );
}
