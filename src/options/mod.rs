//! Options of a node: the original Floyd's fields, with LAN-appropriate defaults.
//!
//! Addresses are IPv4 (`10.0.0.1:8901`) or IPv6 in brackets (`[::1]:8901`).
//! [`Options::validate`] rewrites every member to its canonical `SocketAddr`
//! form, and [`Options::local_id`] produces the same form, because the core and
//! the connection handshake compare member names as text: after validation,
//! equal text means the same address.

use crate::error::{Error, Result};
use crate::logging::{LogCallback, LogLevel};
#[cfg(test)]
use crate::transport::MAX_FRAME_BYTES;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

mod split;
pub use split::{GroupOptions, HostOptions};

/// Default election timeout base (the real timeout is random in `[base, 2 * base)`).
pub const DEFAULT_CHECK_LEADER_US: u64 = 1_000_000;
/// Default interval between a leader's heartbeats.
pub const DEFAULT_HEARTBEAT_US: u64 = 100_000;
/// Default cap on the payload bytes of one AppendEntries.
pub const DEFAULT_APPEND_ENTRIES_SIZE_ONCE: u64 = 4 << 20;
/// Default cap on the entries of one AppendEntries.
pub const DEFAULT_APPEND_ENTRIES_COUNT_ONCE: u64 = 4096;
pub use crate::limits::{MAX_KEY_BYTES, MAX_LOG_KEEP_FILES, MAX_TIMER_US, MAX_VALUE_BYTES, MAX_WAIT};
/// Default size at which `<path>/LOG` is rotated.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 64 << 20;
/// Default number of rotated LOG files kept (`LOG.1` .. `LOG.4`).
pub const DEFAULT_LOG_KEEP_FILES: u32 = 4;
/// Default of [`Options::max_async_in_flight`].
pub const DEFAULT_MAX_ASYNC_IN_FLIGHT: usize = 100_000;

/// How to open a node. Plain data: build it, validate it, hand it to `Floyd::open`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Every member as `"ip:port"` (IPv6 as `"[ip]:port"`), this node included.
    pub members: Vec<String>,
    /// This node's address: it listens on it and connects to peers from it.
    /// IPv6 with or without brackets (`::1` or `[::1]`).
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
    /// Start with no configuration and wait, without campaigning, until the
    /// cluster's leader adds this node (`add_server` on any member). `members`
    /// then need not name this node. Ignored once the node has a configuration.
    pub join: bool,
    /// Identifies the cluster in every connection handshake, so nodes of two
    /// clusters sharing hosts never talk to each other.
    pub cluster_id: String,
    /// How long a consistent call waits for its result (default 5 s, at most
    /// [`MAX_WAIT`]) before failing with `Timeout` ("outcome unknown").
    pub request_timeout: Duration,
    /// How long a call waits for a leader to be known before `NoLeader`
    /// (default 3 s, at most [`MAX_WAIT`]).
    pub leader_wait: Duration,
    /// Lowest level written to `<path>/LOG` and the callback (default Info).
    pub log_level: LogLevel,
    /// Also receives every log line (for example, a C callback).
    pub log_callback: Option<LogCallback>,
    /// `<path>/LOG` is rotated before a line would take it past this many bytes
    /// (default 64 MiB; must be > 0): `LOG` becomes `LOG.1`, `LOG.1` becomes `LOG.2`, ...
    pub log_max_bytes: u64,
    /// Rotated LOG files kept, `LOG.1` (newest) to `LOG.<n>` (default 4, at most
    /// [`MAX_LOG_KEEP_FILES`]); 0 keeps none: the full LOG is simply started over.
    pub log_keep_files: u32,
    /// Snapshot once the log holds this many entries beyond the last snapshot
    /// (default 50,000; 0 disables snapshots by count).
    pub snapshot_log_entries: u64,
    /// ... or once the entries held in memory exceed this many payload bytes
    /// (default 32 MiB; 0 disables snapshots by size). With both at 0, the
    /// log is never compacted and memory and disk grow with history.
    pub snapshot_log_bytes: u64,
    /// Entries kept in the log behind a snapshot, so a follower a little
    /// behind catches up from the log instead of by a snapshot (default 5,000).
    pub snapshot_keep_entries: u64,
    /// Bytes per InstallSnapshot chunk (default 1 MiB, at most 8 MiB).
    pub snapshot_chunk_bytes: u64,
    /// Revisions of changes the built-in store keeps for watches (default
    /// 10,000; 0: none, and a watch can only start from now). A watch from
    /// an older revision answers `Compacted`.
    pub history_revisions: u64,
    /// How long the handle's client session lives without a command, in
    /// the log's time (default an hour; 1 s to 30 days). The session makes
    /// the library's own retries of a write apply once; the handle opens a
    /// new one by itself when it was idle longer than half of this.
    pub session_timeout: Duration,
    /// Snapshot streaming rate per follower in bytes/s (default 64 MiB/s; 0 = unlimited),
    /// so a snapshot does not starve replication on a shared link.
    pub snapshot_bytes_per_sec: u64,
    /// Lease reads (default off): a leader that heard from a majority within
    /// its lease serves `read` at once, without a confirmation round. The
    /// lease is 90% of (`check_leader_us` minus two ticks), timed from when
    /// the confirmed heartbeat was *sent*; a leader whose lease lapsed, or
    /// that is handing leadership over, uses ReadIndex. Safe only if every
    /// member runs the same `check_leader_us` and clocks advance at rates
    /// within 10% of each other (no VM pauses hiding a leader's stall from
    /// its own clock); a restarted member then refuses votes for one
    /// election timeout.
    pub lease_reads: bool,
    /// Quiet groups (issue 23): a group idle for an election timeout stops
    /// ticking and heartbeating on every member until something happens,
    /// and its followers watch the leader's host instead of its heartbeats
    /// (`core/quiesce.rs`). `None` (the default): on in a host of many
    /// groups, off for a node opened on its own. A group goes quiet only
    /// while every member speaks protocol 7.
    pub quiesce: Option<bool>,
    /// Admission control for the async calls (`write_async` and the like):
    /// at most this many unanswered at once on this handle (default
    /// 100,000); past it they are refused with `Busy`, so a producer faster
    /// than the cluster cannot grow memory without bound.
    pub max_async_in_flight: usize,
    /// Mutual TLS between members (default off). With it, a member serves
    /// and dials only peers whose certificate chains to the CA and speaks
    /// for the member they are: it names the member's IP as an IP
    /// subjectAltName and its address as a URI subjectAltName
    /// `floyd://ip:port` (a certificate naming only the IP is accepted only
    /// where no other member shares that IP); every member of the cluster needs it. Without it, peer traffic (Raft
    /// messages, forwarded commands, snapshots) is neither authenticated nor
    /// encrypted and must stay on a trusted network. Read once, at open.
    pub tls: Option<TlsFiles>,
    /// For tests only: the process aborts (as if killed with `kill -9`) at
    /// the named failpoint (`snapshot-staged`, `snapshot-committed`,
    /// `install-received`, `install-reset`). Not part of the API.
    #[doc(hidden)]
    pub crash_at: Option<String>,
    /// For tests only: spawning the node thread whose name starts with this
    /// fails, as if the system refused a thread. Not part of the API.
    #[doc(hidden)]
    pub fail_spawn_of: Option<String>,
}

/// The PEM files of a member's TLS identity: see [`Options::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster's CA certificate(s): peers must chain to one of them.
    pub ca: PathBuf,
    /// This member's certificate, then any intermediates.
    pub cert: PathBuf,
    /// This member's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn new(ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            ca: ca.into(),
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// From three optional paths (command-line flags, say): all three or none.
    pub fn from_parts<P: Into<PathBuf>>(
        ca: Option<P>,
        cert: Option<P>,
        key: Option<P>,
    ) -> Result<Option<Self>, &'static str> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles::new(ca, cert, key))),
            _ => Err("the CA, certificate and key go together: all three or none"),
        }
    }
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
            join: false,
            cluster_id: "floyd".to_string(),
            request_timeout: Duration::from_secs(5),
            leader_wait: Duration::from_secs(3),
            log_level: LogLevel::Info,
            log_callback: None,
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            log_keep_files: DEFAULT_LOG_KEEP_FILES,
            snapshot_log_entries: 50_000,
            snapshot_log_bytes: 32 << 20,
            snapshot_keep_entries: 5_000,
            snapshot_chunk_bytes: 1 << 20,
            history_revisions: crate::state_machine::DEFAULT_HISTORY_REVISIONS,
            session_timeout: crate::limits::DEFAULT_SESSION_TIMEOUT,
            snapshot_bytes_per_sec: 64 << 20,
            lease_reads: false,
            quiesce: None,
            max_async_in_flight: DEFAULT_MAX_ASYNC_IN_FLIGHT,
            tls: None,
            fail_spawn_of: None,
            crash_at: None,
        }
    }

    /// This node's name, `"local_ip:local_port"` in the canonical form members
    /// are normalised to (`127.0.0.1:8901`, `[::1]:8901`).
    pub fn local_id(&self) -> String {
        match parse_ip(&self.local_ip) {
            Some(ip) => SocketAddr::new(ip, self.local_port).to_string(),
            None => format!("{}:{}", self.local_ip, self.local_port),
        }
    }

    /// Checks every field (the host's, then the group's); on success the
    /// members are normalised (canonical address text, sorted, deduplicated)
    /// and `local_ip` is bare (`::1`).
    pub fn validate(&mut self) -> Result<()> {
        let (mut host, mut group) = self.clone().split();
        host.validate()?;
        group.validate(&host.local_id())?;
        *self = Options::from_parts(host, group);
        Ok(())
    }
}

pub(super) fn invalid<T>(message: String) -> Result<T> {
    Err(Error::InvalidArgument(message))
}

/// An IP address, IPv6 with or without brackets.
pub(super) fn parse_ip(text: &str) -> Option<IpAddr> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

/// `member` as the text of its `SocketAddr`, rejecting what no node can listen on.
pub fn canonical_member(member: &str) -> Result<String> {
    let Ok(addr) = member.parse::<SocketAddr>() else {
        return invalid(format!(
            "member {member:?} is not an ip:port address (IPv6 is written [ip]:port)"
        ));
    };
    if addr.ip().is_unspecified() {
        return invalid(format!(
            "member {member:?} has the unspecified address {}: give the node's own address",
            addr.ip()
        ));
    }
    if addr.port() == 0 {
        return invalid(format!("member {member:?} has port 0"));
    }
    Ok(addr.to_string())
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

    fn rejected(o: &mut Options) -> String {
        match o.validate() {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected InvalidArgument, got {other:?} for {o:?}"),
        }
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

    #[test]
    fn members_are_compared_as_addresses_not_text() {
        let mut o = opts("127.0.0.1:08901,127.0.0.1:8901, 127.0.0.1:8902", 8901);
        o.validate().unwrap();
        assert_eq!(o.members, vec!["127.0.0.1:8901", "127.0.0.1:8902"]);
        assert_eq!(o.local_id(), "127.0.0.1:8901");
    }

    #[test]
    fn ipv6_members_and_local_ip_are_canonical() {
        for local_ip in ["::1", "[::1]", "0:0:0:0:0:0:0:1", "[0::1]"] {
            let mut o = Options::new("[::1]:8901,[0:0::1]:8902,[::1]:08903", local_ip, 8901, "/tmp/x");
            o.validate().unwrap_or_else(|e| panic!("{local_ip}: {e}"));
            assert_eq!(o.members, vec!["[::1]:8901", "[::1]:8902", "[::1]:8903"]);
            assert_eq!(o.local_ip, "::1");
            assert_eq!(o.local_id(), "[::1]:8901");
        }
        // Before validation too: the runtime and the handshake use this exact text.
        assert_eq!(Options::new("", "[::1]", 7, "/x").local_id(), "[::1]:7");
        assert_eq!(Options::new("", "::1", 7, "/x").local_id(), "[::1]:7");
    }

    #[test]
    fn a_bare_ipv6_member_is_rejected_with_a_hint() {
        let mut o = Options::new("::1:8901", "::1", 8901, "/tmp/x");
        assert!(rejected(&mut o).contains("[ip]:port"));
    }

    #[test]
    fn unspecified_addresses_and_port_zero_are_rejected() {
        let mut o = opts("0.0.0.0:8901,127.0.0.1:8902", 8902);
        assert!(rejected(&mut o).contains("unspecified"));
        let mut o = Options::new("[::]:8901,[::1]:8902", "::1", 8902, "/tmp/x");
        assert!(rejected(&mut o).contains("unspecified"));
        let mut o = opts("127.0.0.1:0,127.0.0.1:8902", 8902);
        assert!(rejected(&mut o).contains("port 0"));
        let mut o = Options::new("0.0.0.0:8901", "0.0.0.0", 8901, "/tmp/x");
        assert!(rejected(&mut o).contains("unspecified"));
        let mut o = Options::new("[::1]:8901", "::", 8901, "/tmp/x");
        assert!(rejected(&mut o).contains("local_ip"));
    }

    #[test]
    fn huge_timers_are_rejected_not_overflowed() {
        let mut o = opts("127.0.0.1:1", 1);
        o.heartbeat_us = u64::MAX;
        assert!(rejected(&mut o).contains("heartbeat_us"));
        let mut o = opts("127.0.0.1:1", 1);
        o.check_leader_us = u64::MAX;
        assert!(rejected(&mut o).contains("check_leader_us"));
        let mut o = opts("127.0.0.1:1", 1);
        o.check_leader_us = MAX_TIMER_US;
        o.heartbeat_us = MAX_TIMER_US / 2;
        o.validate().unwrap();
    }

    #[test]
    fn huge_waits_are_rejected() {
        let mut o = opts("127.0.0.1:1", 1);
        o.request_timeout = Duration::MAX;
        assert!(rejected(&mut o).contains("request_timeout"));
        let mut o = opts("127.0.0.1:1", 1);
        o.leader_wait = MAX_WAIT + Duration::from_nanos(1);
        assert!(rejected(&mut o).contains("leader_wait"));
        let mut o = opts("127.0.0.1:1", 1);
        o.request_timeout = MAX_WAIT;
        o.leader_wait = MAX_WAIT;
        o.validate().unwrap();
        // The deadlines a call computes from them stay representable.
        let _ = std::time::Instant::now() + o.request_timeout;
    }

    #[test]
    fn append_entries_size_must_fit_half_a_frame() {
        let mut o = opts("127.0.0.1:1", 1);
        o.append_entries_size_once = (MAX_FRAME_BYTES / 2) as u64 + 1;
        assert!(rejected(&mut o).contains("append_entries_size_once"));
        o.append_entries_size_once = (MAX_FRAME_BYTES / 2) as u64;
        o.validate().unwrap();
    }

    #[test]
    fn log_rotation_limits_are_checked() {
        let mut o = opts("127.0.0.1:1", 1);
        o.log_max_bytes = 0;
        assert!(rejected(&mut o).contains("log_max_bytes"));
        let mut o = opts("127.0.0.1:1", 1);
        o.log_keep_files = MAX_LOG_KEEP_FILES + 1;
        assert!(rejected(&mut o).contains("log_keep_files"));
        o.log_keep_files = 0;
        o.validate().unwrap();
    }
}
