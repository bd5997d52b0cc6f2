//! raftis's floyd groups: `--groups N` (default 1) splits Redis Cluster's
//! hash slots over N groups on one floyd host per node; a command on keys
//! runs in the group of their slot, a command on no key in every group.
//! Also this node's Redis address as the other nodes learn it (for
//! CLUSTER SLOTS and MOVED): announced under a reserved key in group 0,
//! which the key listings leave out.

use crate::slots;
use floyd::{Floyd, Host};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// The reserved keys naming each node's Redis address, in group 0:
/// `<prefix><Raft address>` = `<ip:port>`. KEYS, SCAN, RANDOMKEY and
/// DBSIZE leave them out.
pub const DIRECTORY_PREFIX: &[u8] = b"\x00raftis:node:";

/// Whether `key` is one of raftis's own.
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(DIRECTORY_PREFIX)
}

/// A command that names keys of more than one group.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

pub struct Shards {
    /// Group `g`'s handle at `g`.
    groups: Vec<Arc<Floyd>>,
    /// The host of `--groups` > 1 (with one group, the handle owns its own).
    host: Option<Host>,
    /// This node's Raft address.
    pub me: String,
    /// This node's Redis address, `ip:port`, as announced.
    pub announce: String,
    /// Raft address → Redis address, as read from group 0.
    directory: RwLock<HashMap<String, String>>,
}

/// Where a command runs.
pub enum Route {
    /// In this group.
    Group(usize),
    /// In every group (no key in particular).
    All,
    /// Its keys are in more than one group.
    CrossSlot,
}

impl Shards {
    /// One group: today's node, opened on its own.
    pub fn single(floyd: Floyd, announce: String) -> Shards {
        let me = floyd.server_status().node;
        Shards::new(vec![Arc::new(floyd)], None, me, announce)
    }

    /// `count` groups (ids 0..count) on `host`, each with `group` options.
    pub fn on_host(
        host: Host,
        count: usize,
        group: floyd::GroupOptions,
        announce: String,
    ) -> floyd::Result<Shards> {
        let mut groups = Vec::with_capacity(count);
        for g in 0..count {
            match host.open_group(g as u64, group.clone()) {
                Ok(f) => groups.push(Arc::new(f)),
                Err(e) => {
                    host.close();
                    return Err(e);
                }
            }
        }
        let me = host.id().to_string();
        Ok(Shards::new(groups, Some(host), me, announce))
    }

    fn new(groups: Vec<Arc<Floyd>>, host: Option<Host>, me: String, announce: String) -> Shards {
        let mut directory = HashMap::new();
        directory.insert(me.clone(), announce.clone());
        Shards {
            groups,
            host,
            me,
            announce,
            directory: RwLock::new(directory),
        }
    }

    pub fn count(&self) -> usize {
        self.groups.len()
    }

    pub fn all(&self) -> &[Arc<Floyd>] {
        &self.groups
    }

    /// Group 0: the node's status, membership and links speak for the rest.
    pub fn first(&self) -> &Arc<Floyd> {
        &self.groups[0]
    }

    pub fn group(&self, g: usize) -> &Arc<Floyd> {
        &self.groups[g]
    }

    pub fn group_of_key(&self, key: &[u8]) -> usize {
        slots::group_of_slot(slots::slot_of(key), self.groups.len())
    }

    pub fn for_key(&self, key: &[u8]) -> &Arc<Floyd> {
        &self.groups[self.group_of_key(key)]
    }

    /// The group of every key among `keys`, or `CrossSlot`; group 0 for none.
    pub fn route_keys<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Route {
        let mut group = None;
        for k in keys {
            let g = self.group_of_key(k);
            if group.is_some_and(|other| other != g) {
                return Route::CrossSlot;
            }
            group = Some(g);
        }
        Route::Group(group.unwrap_or(0))
    }

    /// Where command `name` with `args` runs.
    pub fn route(&self, name: &str, args: &[Vec<u8>]) -> Route {
        match slots::key_positions(name, args) {
            None => Route::All,
            Some(at) => self.route_keys(at.into_iter().map(|i| args[i].as_slice())),
        }
    }

    /// The host's status as JSON (`--groups` > 1), else group 0's.
    pub fn status_json(&self) -> String {
        match &self.host {
            Some(h) => h.status_json(),
            None => self
                .first()
                .host_status_json()
                .unwrap_or_else(|| self.first().server_status().to_json()),
        }
    }

    /// The metrics of this node's host and groups (OpenMetrics text).
    pub fn metrics(&self) -> String {
        match &self.host {
            Some(h) => h.metrics(),
            None => self.first().metrics(),
        }
    }

    /// The Redis address of the node with Raft address `member`, if known.
    pub fn redis_addr(&self, member: &str) -> Option<String> {
        if let Some(a) = self.directory.read().get(member) {
            return Some(a.clone());
        }
        let found = self.read_entry(member)?;
        self.directory.write().insert(member.to_string(), found.clone());
        Some(found)
    }

    fn read_entry(&self, member: &str) -> Option<String> {
        let v = self.first().dirty_read(&entry_key(member)).ok()?;
        String::from_utf8(v).ok()
    }

    /// Reads every member's entry again, and writes this node's if it is
    /// missing or stale (a FLUSHALL takes it). Blocks on a write. Whether
    /// this node's entry is in place.
    pub fn refresh_directory(&self) -> bool {
        for member in self.first().get_all_servers() {
            if let Some(addr) = self.read_entry(&member) {
                self.directory.write().insert(member, addr);
            }
        }
        let key = entry_key(&self.me);
        // This node's own copy: a linearizable read every few seconds would
        // keep group 0 from ever going quiet. A stale copy costs at most a
        // write of the same value.
        if self.read_entry(&self.me).as_deref() == Some(self.announce.as_str()) {
            return true;
        }
        match self.first().write(&key, self.announce.as_bytes()) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("raftis: cannot announce this node's address yet: {e}");
                false
            }
        }
    }

    /// How many reserved keys group `g` holds (linearizable).
    pub fn reserved_count(&self, g: usize) -> floyd::Result<u64> {
        if g != 0 {
            return Ok(0);
        }
        self.first()
            .count(DIRECTORY_PREFIX, &floyd::prefix_end(DIRECTORY_PREFIX))
    }

    /// How long this node's host has been connected to member `id`'s
    /// (`None`: not now, or one group, which runs no balancer).
    pub fn connected_for(&self, id: &str) -> Option<std::time::Duration> {
        let host = self.host.as_ref()?;
        host.peer_hosts().into_iter().find(|p| p.id == id)?.connected_for
    }

    pub fn close(&self) {
        for f in &self.groups {
            f.close();
        }
        if let Some(h) = &self.host {
            h.close();
        }
    }
}

fn entry_key(member: &str) -> Vec<u8> {
    let mut k = DIRECTORY_PREFIX.to_vec();
    k.extend_from_slice(member.as_bytes());
    k
}
