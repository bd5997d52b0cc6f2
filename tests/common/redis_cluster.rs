//! raftis as a Redis Cluster (`--groups`), seen through CLUSTER SLOTS,
//! NODES and INFO: for tests/raftis_cluster.rs and raftis_pubsub.rs.

use super::raftis::Cluster;
use redis::{Connection, Value};
use std::collections::HashMap;

/// CLUSTER NODES as (redis address → slot ranges it masters), skipping replicas.
pub fn masters(con: &mut Connection) -> HashMap<String, Vec<String>> {
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(con).unwrap();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert!(f.len() >= 8, "a CLUSTER NODES line has 8 fields at least: {l:?}");
            assert_eq!(f[0].len(), 40, "node ids are 40 hex digits: {l:?}");
            let addr = f[1].split('@').next().unwrap().to_string();
            f[2].contains("master")
                .then(|| (addr, f[8..].iter().map(|s| s.to_string()).collect()))
        })
        .collect()
}

/// The running nodes in the order of their Raft addresses: group `g`'s
/// leader, once raftis's balancer is done, is the `g mod n`-th.
pub fn by_raft_address(c: &Cluster) -> Vec<usize> {
    let mut nodes = c.running();
    nodes.sort_by_key(|i| c.node(*i).raft.clone());
    nodes
}

/// Whether every one of `groups` groups is led where raftis's balancer
/// wants it (so no transfer is still to come), CLUSTER SLOTS and CLUSTER
/// NODES say so and CLUSTER INFO says ok, seen alike from every running node.
pub fn balanced(c: &Cluster, groups: usize) -> bool {
    c.running().into_iter().all(|i| balanced_seen_by(c, i, groups))
}

fn balanced_seen_by(c: &Cluster, viewer: usize, groups: usize) -> bool {
    let mut con = c.connect(viewer);
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con).unwrap();
    let m = masters(&mut con);
    let by_raft = by_raft_address(c);
    let ranges = slot_ranges(&mut con);
    let leader = |g: usize| c.resp_addr(by_raft[g % by_raft.len()]);
    info.contains("cluster_state:ok")
        && ranges.len() == groups
        && ranges.iter().enumerate().all(|(g, r)| r.2 == leader(g))
        && (0..groups).all(|g| m.get(&leader(g)).is_some_and(|r| !r.is_empty()))
}

/// CLUSTER SLOTS as (first, last, master's redis address), sorted.
pub fn slot_ranges(con: &mut Connection) -> Vec<(i64, i64, String)> {
    let rows: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(con).unwrap();
    let mut out: Vec<(i64, i64, String)> = rows
        .into_iter()
        .map(|row| {
            let Value::Array(cols) = row else {
                panic!("a row: {row:?}")
            };
            let num = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("{other:?}"),
            };
            let Value::Array(master) = &cols[2] else {
                panic!("a node: {:?}", cols[2])
            };
            let ip: String = redis::from_redis_value(master[0].clone()).unwrap();
            (num(&cols[0]), num(&cols[1]), format!("{ip}:{}", num(&master[1])))
        })
        .collect();
    out.sort();
    out
}
