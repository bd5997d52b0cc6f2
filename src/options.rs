//! Options of a node: the original Floyd's fields, with LAN-appropriate defaults.

use crate::error::{Error, Result};
use crate::logging::{LogCallback, LogLevel};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default election timeout base (the real timeout is random in `[base, 2 * base)`).
pub const DEFAULT_CHECK_LEADER_US: u64 = 1_000_000;
/// Default interval between a leader's heartbeats.
pub const DEFAULT_HEARTBEAT_US: u64 = 100_000;
/// Default cap on the payload bytes of one AppendEntries.
pub const DEFAULT_APPEND_ENTRIES_SIZE_ONCE: u64 = 4 << 20;
/// Default cap on the entries of one AppendEntries.
pub const DEFAULT_APPEND_ENTRIES_COUNT_ONCE: u64 = 4096;
/// Largest key accepted.
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// Largest value accepted.
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// How to open a node. Plain data: build it, validate it, hand it to `Floyd::open`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Every member as `"ip:port"`, this node included.
    pub members: Vec<String>,
    /// This node's address: it listens on it and connects to peers from it.
    pub local_ip: String,
    pub local_port: u16,
    /// Data directory: `<path>/log` (Raft log and meta) and `<path>/db` (state machine).
    pub path: PathBuf,
    /// Election timeout base in microseconds (default 1 s; Floyd's was 6 s).
    pub check_leader_us: u64,
    /// Leader heartbeat interval in microseconds (default 100 ms; Floyd's was 3 s).
    pub heartbeat_us: u64,
    /// Payload bytes per AppendEntries (default 4 MiB).
    pub append_entries_size_once: u64,
    /// Entries per AppendEntries (default 4096).
    pub append_entries_count_once: u64,
    /// A one-member cluster: the node leads itself and commits on local append.
    /// Forced on when `members` holds only this node.
    pub single_mode: bool,
    /// Identifies the cluster in every connection handshake, so nodes of two
    /// clusters sharing hosts never talk to each other.
    pub cluster_id: String,
    /// How long a consistent call waits for its result (default 5 s) before
    /// failing with `Timeout` ("outcome unknown").
    pub request_timeout: Duration,
    /// How long a call waits for a leader to be known before `NoLeader` (default 3 s).
    pub leader_wait: Duration,
    /// Lowest level written to `<path>/LOG` and the callback (default Info).
    pub log_level: LogLevel,
    /// Also receives every log line (for example, a C callback).
    pub log_callback: Option<LogCallback>,
}

impl Options {
    /// Floyd's four-argument constructor: `members` is `"ip:port,ip:port,..."`.
    pub fn new(members: &str, local_ip: &str, local_port: u16, path: impl Into<PathBuf>) -> Self {
        Options {
            members: parse_members(members),
            local_ip: local_ip.to_string(),
            local_port,
            path: path.into(),
            check_leader_us: DEFAULT_CHECK_LEADER_US,
            heartbeat_us: DEFAULT_HEARTBEAT_US,
            append_entries_size_once: DEFAULT_APPEND_ENTRIES_SIZE_ONCE,
            append_entries_count_once: DEFAULT_APPEND_ENTRIES_COUNT_ONCE,
            single_mode: false,
            cluster_id: "floyd".to_string(),
            request_timeout: Duration::from_secs(5),
            leader_wait: Duration::from_secs(3),
            log_level: LogLevel::Info,
            log_callback: None,
        }
    }

    /// This node's name, `"local_ip:local_port"`.
    pub fn local_id(&self) -> String {
        format!("{}:{}", self.local_ip, self.local_port)
    }

    /// Checks every field; on success the members are normalised (sorted, deduplicated).
    pub fn validate(&mut self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidArgument(m));
        if self.members.is_empty() {
            return invalid("members is empty".into());
        }
        for m in &self.members {
            if m.parse::<SocketAddr>().is_err() {
                return invalid(format!("member {m:?} is not an ip:port address"));
            }
        }
        if format!("{}:0", self.local_ip).parse::<SocketAddr>().is_err() {
            return invalid(format!("local_ip {:?} is not an IP address", self.local_ip));
        }
        if self.local_port == 0 {
            return invalid("local_port must not be 0".into());
        }
        self.members.sort();
        self.members.dedup();
        let me = self.local_id();
        if !self.members.contains(&me) {
            return invalid(format!("this node {me} is not among members {:?}", self.members));
        }
        if self.members.len() == 1 {
            self.single_mode = true;
        } else if self.single_mode {
            return invalid("single_mode needs members to hold only this node".into());
        }
        if self.path.as_os_str().is_empty() {
            return invalid("path is empty".into());
        }
        if self.heartbeat_us < 1_000 || self.check_leader_us < 2 * self.heartbeat_us {
            return invalid(format!(
                "need heartbeat_us >= 1000 and check_leader_us >= 2 * heartbeat_us (got {} and {})",
                self.heartbeat_us, self.check_leader_us
            ));
        }
        if self.append_entries_size_once == 0 || self.append_entries_count_once == 0 {
            return invalid("append_entries_size_once and append_entries_count_once must be > 0".into());
        }
        if self.cluster_id.is_empty() || self.request_timeout.is_zero() {
            return invalid("cluster_id and request_timeout must not be empty".into());
        }
        Ok(())
    }

    /// Largest frame accepted on the wire: one full AppendEntries or one maximal command.
    pub fn max_frame_bytes(&self) -> usize {
        let entries = self.append_entries_size_once.min(256 << 20) as usize;
        entries.max(MAX_KEY_BYTES + MAX_VALUE_BYTES) + (1 << 20)
    }
}

/// Splits `"ip:port,ip:port"`, trimming blanks and dropping empty items.
pub fn parse_members(members: &str) -> Vec<String> {
    members
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(members: &str, port: u16) -> Options {
        Options::new(members, "127.0.0.1", port, "/tmp/x")
    }

    #[test]
    fn valid_options_are_normalised() {
        let mut o = opts("127.0.0.1:2, 127.0.0.1:1,127.0.0.1:2", 1);
        o.validate().unwrap();
        assert_eq!(o.members, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert!(!o.single_mode);
    }

    #[test]
    fn one_member_forces_single_mode() {
        let mut o = opts("127.0.0.1:1", 1);
        o.validate().unwrap();
        assert!(o.single_mode);
    }

    #[test]
    fn bad_options_are_rejected() {
        for (members, port) in [("", 1), ("nonsense", 1), ("127.0.0.1:2", 1), ("127.0.0.1:0", 0)] {
            assert!(
                matches!(opts(members, port).validate(), Err(Error::InvalidArgument(_))),
                "{members}"
            );
        }
        let mut o = opts("127.0.0.1:1,127.0.0.1:2", 1);
        o.heartbeat_us = 500_000;
        o.check_leader_us = 600_000;
        assert!(o.validate().is_err());
    }
}
