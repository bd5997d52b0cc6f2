//! Who may talk to this node: the handshake rules.
//!
//! A cluster's identity (`cluster_uid`) is created by its first leader and
//! carried in every configuration entry, so it survives membership changes
//! and restarts. Two nodes that both have one talk only if it is the same.
//! A node without one is empty (never had a configuration from a leader):
//! two empty nodes must be bootstrapping the same member list
//! ([`config_id`](super::config_id)), and a node with an identity admits an
//! empty one only if it is in its configuration (a server being added).
//! Everything else that passes is for the Raft rules to judge: a member of
//! this cluster outside our configuration may be a leader of a newer one.

use super::server::{MAX_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::wire::Handshake;
use parking_lot::RwLock;
use std::collections::HashSet;
use std::net::SocketAddr;

/// This node's side of every handshake. Thread-safe; updated by the node
/// whenever its configuration changes.
///
/// A host of many groups ([`Identity::for_host`]) checks only what is the
/// host's: the cluster id and the protocol. Which group a peer may speak
/// for is the group's to judge, message by message (a non-member's answers
/// are refused by the core); its members, the union of every group's, serve
/// the TLS rule for certificates that name only an IP.
#[derive(Debug)]
pub struct Identity {
    cluster_id: String,
    /// `config_id` of the bootstrap member list; 0 for a joining node.
    bootstrap_id: std::sync::atomic::AtomicU64,
    /// A host of many groups: no check of configurations at the handshake.
    many_groups: bool,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    uid: String,
    members: HashSet<String>,
    /// A host of many groups: each group's members.
    groups: super::MemberUnion,
}

impl Identity {
    pub fn new(cluster_id: &str, bootstrap_id: u64) -> Self {
        Identity {
            cluster_id: cluster_id.to_string(),
            bootstrap_id: bootstrap_id.into(),
            many_groups: false,
            state: RwLock::new(State::default()),
        }
    }

    /// The identity of a host of many groups.
    pub fn for_host(cluster_id: &str) -> Self {
        Identity {
            many_groups: true,
            ..Identity::new(cluster_id, 0)
        }
    }

    /// The bootstrap member list's `config_id`, once the node's one group
    /// has read it from its log (a private host's identity is its group's).
    pub fn set_bootstrap_id(&self, id: u64) {
        self.bootstrap_id.store(id, std::sync::atomic::Ordering::Relaxed);
    }

    fn bootstrap_id(&self) -> u64 {
        self.bootstrap_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Follows the configuration in force: its identity and members.
    pub fn update(&self, uid: &str, members: impl IntoIterator<Item = String>) {
        let mut s = self.state.write();
        if !uid.is_empty() {
            s.uid = uid.to_string();
        }
        s.members = members.into_iter().collect();
    }

    /// A host of many groups: follows `group`'s configuration in force
    /// (`None`: the group closed).
    pub fn update_group(&self, group: u64, members: Option<impl IntoIterator<Item = String>>) {
        let mut s = self.state.write();
        let change = s.groups.set(group, members.map(|m| m.into_iter().collect()));
        for m in change.removed {
            s.members.remove(&m);
        }
        s.members.extend(change.added);
    }

    pub fn uid(&self) -> String {
        self.state.read().uid.clone()
    }

    /// The members of the configuration in force, as addresses: under TLS,
    /// a certificate that names only an IP is refused where two of them share it.
    pub fn member_addrs(&self) -> Vec<SocketAddr> {
        let s = self.state.read();
        s.members.iter().filter_map(|m| m.parse().ok()).collect()
    }

    /// The handshake this node sends as `from`.
    pub fn hello(&self, from: &str) -> Handshake {
        Handshake {
            cluster_id: self.cluster_id.clone(),
            from: from.to_string(),
            protocol_version: PROTOCOL_VERSION,
            config_id: self.bootstrap_id(),
            cluster_uid: self.uid(),
            max_protocol_version: MAX_PROTOCOL_VERSION,
        }
    }

    /// Why a peer's handshake is refused, if it is.
    pub fn refusal(&self, hs: &Handshake) -> Option<String> {
        if hs.protocol_version != PROTOCOL_VERSION {
            return Some(format!(
                "protocol version {} (we speak {PROTOCOL_VERSION})",
                hs.protocol_version
            ));
        }
        if hs.cluster_id != self.cluster_id {
            return Some(format!(
                "cluster {:?} is not ours ({:?})",
                hs.cluster_id, self.cluster_id
            ));
        }
        if self.many_groups {
            return None;
        }
        let bootstrap_id = self.bootstrap_id();
        let s = self.state.read();
        match (s.uid.is_empty(), hs.cluster_uid.is_empty()) {
            (false, false) if s.uid != hs.cluster_uid => Some(format!(
                "{} belongs to another cluster (identity {}, ours is {})",
                hs.from, hs.cluster_uid, s.uid
            )),
            (false, false) | (true, false) => None,
            (false, true) if s.members.contains(&hs.from) => None,
            (false, true) => Some(format!(
                "{} is not a member of this cluster (add it with add_server first)",
                hs.from
            )),
            (true, true) if hs.config_id == 0 || bootstrap_id == 0 => Some(format!(
                "neither {} nor this node has a configuration yet, and one of them is joining",
                hs.from
            )),
            (true, true) if hs.config_id != bootstrap_id => {
                let mut ours: Vec<&str> = s.members.iter().map(String::as_str).collect();
                ours.sort_unstable();
                Some(format!(
                    "member list differs: {} bootstraps configuration {:016x}, ours is {:016x}; ours has {} members: {}",
                    hs.from,
                    hs.config_id,
                    bootstrap_id,
                    ours.len(),
                    ours.join(",")
                ))
            }
            (true, true) if !s.members.contains(&hs.from) => {
                Some(format!("{} is not a member of this cluster", hs.from))
            }
            (true, true) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "127.0.0.1:1";
    const NEW: &str = "127.0.0.1:9";

    fn node(bootstrap_id: u64, uid: &str) -> Identity {
        let id = Identity::new("c", bootstrap_id);
        id.update(uid, [A.to_string(), "127.0.0.1:2".to_string()]);
        id
    }

    fn hello(from: &str, bootstrap_id: u64, uid: &str) -> Handshake {
        node(bootstrap_id, uid).hello(from)
    }

    /// A host's members are the union of its groups' members, kept as
    /// groups open, change and close.
    #[test]
    fn a_hosts_members_follow_its_groups() {
        let id = Identity::for_host("c");
        let set = |v: &[&str]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        let members = |id: &Identity| {
            let mut m: Vec<String> = id.state.read().members.iter().cloned().collect();
            m.sort();
            m
        };
        id.update_group(1, Some(set(&["a:1", "b:1"])));
        id.update_group(2, Some(set(&["b:1", "c:1"])));
        assert_eq!(members(&id), set(&["a:1", "b:1", "c:1"]));
        id.update_group(1, Some(set(&["a:1", "b:1"])));
        id.update_group(1, Some(set(&["b:1"])));
        assert_eq!(members(&id), set(&["b:1", "c:1"]));
        id.update_group(2, None::<Vec<String>>);
        assert_eq!(members(&id), set(&["b:1"]));
        id.update_group(1, None::<Vec<String>>);
        id.update_group(3, None::<Vec<String>>);
        assert!(members(&id).is_empty());
    }

    #[test]
    fn nodes_of_two_clusters_refuse_each_other() {
        let ours = node(7, "u1");
        assert_eq!(ours.refusal(&hello(A, 7, "u1")), None);
        let why = ours.refusal(&hello(A, 7, "u2")).unwrap();
        assert!(why.contains("another cluster"), "{why}");
    }

    #[test]
    fn an_empty_node_is_admitted_only_once_it_is_in_the_configuration() {
        let ours = node(7, "u1");
        let why = ours.refusal(&hello(NEW, 8, "")).unwrap();
        assert!(why.contains("not a member"), "{why}");
        ours.update("u1", [A.to_string(), NEW.to_string()]);
        assert_eq!(ours.refusal(&hello(NEW, 8, "")), None);
        // And an empty node hears any member of an established cluster.
        assert_eq!(node(8, "").refusal(&hello(A, 7, "u1")), None);
    }

    #[test]
    fn two_empty_nodes_must_bootstrap_the_same_member_list() {
        let ours = node(7, "");
        assert_eq!(ours.refusal(&hello(A, 7, "")), None);
        let why = ours.refusal(&hello(A, 6, "")).unwrap();
        assert!(why.starts_with("member list differs"), "{why}");
        assert!(
            why.contains("ours has 2 members: 127.0.0.1:1,127.0.0.1:2"),
            "{why}"
        );
        assert!(ours.refusal(&hello(A, 0, "")).unwrap().contains("joining"));
        assert!(ours.refusal(&hello(NEW, 7, "")).unwrap().contains("not a member"));
    }

    #[test]
    fn another_protocol_or_cluster_name_is_refused() {
        let ours = node(7, "u1");
        let mut old = hello(A, 7, "u1");
        old.protocol_version = 2;
        assert!(ours.refusal(&old).unwrap().contains("protocol version 2"));
        let mut other = hello(A, 7, "u1");
        other.cluster_id = "d".into();
        assert!(ours.refusal(&other).unwrap().contains("is not ours"));
    }
}
