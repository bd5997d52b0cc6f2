//! Hosts of many Raft groups in this process (issue 21), each with its own
//! port and directory, for the host tests.

use super::{free_ports, wait_until, DEADLINE};
use floyd::{Error, Floyd, GroupOptions, Host, HostOptions, StateMachine};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub struct Hosts {
    pub dir: tempfile::TempDir,
    /// Each host's directory (under `dir` unless the test put it elsewhere).
    pub paths: Vec<PathBuf>,
    pub ports: Vec<u16>,
    pub hosts: Vec<Option<Host>>,
    /// Per host, the groups open on it.
    pub groups: Vec<BTreeMap<u64, Floyd>>,
}

impl Hosts {
    pub fn start(n: usize) -> Hosts {
        Hosts::start_with_hosts(n, n)
    }

    /// Reserves ports for `total` hosts and opens the first `open` of them.
    pub fn start_with_hosts(total: usize, open: usize) -> Hosts {
        let dir = tempfile::tempdir().unwrap();
        let paths = (0..total).map(|i| dir.path().join(format!("h{i}"))).collect();
        let ports = free_ports(total);
        let mut h = Hosts {
            dir,
            paths,
            ports,
            hosts: (0..total).map(|_| None).collect(),
            groups: (0..total).map(|_| BTreeMap::new()).collect(),
        };
        for i in 0..open {
            h.open_host(i);
        }
        h
    }

    pub fn host_options(&self, i: usize) -> HostOptions {
        let mut o = HostOptions::new("127.0.0.1", self.ports[i], self.path(i));
        o.workers = 2;
        o
    }

    pub fn open_host(&mut self, i: usize) {
        self.hosts[i] = Some(Host::open(self.host_options(i)).unwrap());
    }

    pub fn host(&self, i: usize) -> &Host {
        self.hosts[i].as_ref().expect("host is open")
    }

    pub fn path(&self, i: usize) -> PathBuf {
        self.paths[i].clone()
    }

    /// Host `i`'s address: what its groups call their member there.
    pub fn id(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    /// Which host `id` is.
    pub fn index_of(&self, id: &str) -> usize {
        (0..self.ports.len())
            .find(|&i| self.id(i) == id)
            .unwrap_or_else(|| panic!("{id} is none of the hosts"))
    }

    /// Every host's address (the hosts not open too).
    pub fn members(&self) -> String {
        self.members_of(&(0..self.ports.len()).collect::<Vec<_>>())
    }

    pub fn members_of(&self, hosts: &[usize]) -> String {
        hosts.iter().map(|&i| self.id(i)).collect::<Vec<_>>().join(",")
    }

    /// A group of every host, with test-speed timers.
    pub fn group_options(&self) -> GroupOptions {
        self.group_options_of(&(0..self.ports.len()).collect::<Vec<_>>())
    }

    /// A group of `hosts`, with test-speed timers.
    pub fn group_options_of(&self, hosts: &[usize]) -> GroupOptions {
        let mut g = GroupOptions::new(&self.members_of(hosts));
        g.heartbeat_us = 30_000;
        g.check_leader_us = 300_000;
        g
    }

    pub fn open_group(&mut self, i: usize, group: u64) {
        let opts = self.group_options();
        self.open_group_with(i, group, opts);
    }

    pub fn open_group_with(&mut self, i: usize, group: u64, opts: GroupOptions) {
        let f = self
            .host(i)
            .open_group(group, opts)
            .unwrap_or_else(|e| panic!("host {i} group {group}: {e}"));
        self.groups[i].insert(group, f);
    }

    pub fn open_group_machine(
        &mut self,
        i: usize,
        group: u64,
        opts: GroupOptions,
        machine: Box<dyn StateMachine>,
    ) {
        let f = self
            .host(i)
            .open_group_with_state_machine(group, opts, machine)
            .unwrap_or_else(|e| panic!("host {i} group {group}: {e}"));
        self.groups[i].insert(group, f);
    }

    /// Closes group `group` on host `i` (its data stays).
    pub fn close_group(&mut self, i: usize, group: u64) {
        self.groups[i].remove(&group).expect("open").close();
    }

    pub fn node(&self, i: usize, group: u64) -> &Floyd {
        &self.groups[i][&group]
    }

    /// The hosts `group` is open on.
    pub fn members_open(&self, group: u64) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].is_some() && self.groups[i].contains_key(&group))
            .collect()
    }

    /// Waits until one host leads `group` and every host it is open on
    /// agrees; returns that host.
    pub fn wait_for_leader(&self, group: u64) -> usize {
        let mut leader = 0;
        wait_until(&format!("an agreed leader of group {group}"), || {
            let open = self.members_open(group);
            let leaders: Vec<usize> = open
                .iter()
                .copied()
                .filter(|&i| self.node(i, group).is_leader())
                .collect();
            if leaders.len() != 1 {
                return false;
            }
            leader = leaders[0];
            let id = self.id(leader);
            open.iter()
                .all(|&i| self.node(i, group).get_leader().as_deref() == Some(id.as_str()))
        });
        leader
    }

    /// Writes through host `i`, retrying while no leader is known yet (and
    /// after a timeout: the same value written twice is harmless here).
    pub fn write(&self, i: usize, group: u64, key: &[u8], value: &[u8]) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.node(i, group).write(key, value) {
                Ok(()) => return,
                Err(e)
                    if (e.is_retryable() || matches!(e, Error::Timeout(_))) && Instant::now() < deadline => {}
                Err(e) => panic!("write to group {group} through host {i}: {e}"),
            }
        }
    }

    /// Reads through host `i` (linearizable), retrying while no leader is
    /// known yet or the read timed out.
    pub fn read(&self, i: usize, group: u64, key: &[u8]) -> Result<Vec<u8>, Error> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.node(i, group).read(key) {
                Err(e)
                    if (e.is_retryable() || matches!(e, Error::Timeout(_))) && Instant::now() < deadline => {}
                other => return other,
            }
        }
    }

    /// Waits until `group` on host `i` has applied `key` = `value`.
    pub fn wait_applied(&self, i: usize, group: u64, key: &[u8], value: &[u8]) {
        wait_until(&format!("group {group} on host {i} to apply its write"), || {
            self.node(i, group).dirty_read(key).is_ok_and(|v| v == value)
        });
    }

    /// Host `i`'s LOG.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.path(i).join("LOG")).unwrap_or_default()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for groups in &mut self.groups {
            for (_, f) in std::mem::take(groups) {
                f.close();
            }
        }
        for h in self.hosts.iter_mut().filter_map(Option::take) {
            h.close();
        }
    }
}

/// A connection to host `target` that passed the handshake as `as_host`
/// (a member or not: the server checks only who may connect).
pub fn connect_as(h: &Hosts, target: usize, as_host: &str) -> std::net::TcpStream {
    use floyd::transport::{read_frame, write_frame, MAX_PROTOCOL_VERSION, PROTOCOL_VERSION};
    use floyd::wire::frame::Body;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", h.ports[target])).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let hello = floyd::wire::Handshake {
        cluster_id: "floyd".into(),
        from: as_host.to_string(),
        protocol_version: PROTOCOL_VERSION,
        max_protocol_version: MAX_PROTOCOL_VERSION,
        ..Default::default()
    };
    write_frame(&mut s, Body::Handshake(hello)).unwrap();
    match read_frame(&mut s, 1 << 16).unwrap() {
        Body::HandshakeAck(ack) => assert!(ack.accepted, "{}", ack.reason),
        other => panic!("expected a handshake ack, got {other:?}"),
    }
    s
}

/// Sends `body` as a frame of `group`.
pub fn send(conn: &mut std::net::TcpStream, group: u64, body: floyd::wire::frame::Body) {
    use std::io::Write;
    let mut buf = Vec::new();
    floyd::transport::encode_frame(group, &body, &mut buf).unwrap();
    conn.write_all(&buf).unwrap();
}

/// A number in host `i`'s status.
pub fn counter(h: &Hosts, i: usize, name: &str) -> u64 {
    let s = h.host(i).status_json();
    let at = s
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {s}"));
    s[at + name.len() + 3..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
