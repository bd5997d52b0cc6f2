//! [`Options`] in two parts: what a host has once for all its groups
//! ([`HostOptions`]: its address, directory, identity, TLS and log) and
//! what each group has of its own ([`GroupOptions`]: its members, timers,
//! log shipping, snapshots and reads). `Options` is both, for a node that
//! is a private host with one group; [`Options::split`] and
//! [`Options::from_parts`] go between the two forms.

use super::{
    canonical_member, invalid, parse_ip, Options, TlsFiles, MAX_LOG_KEEP_FILES, MAX_TIMER_US, MAX_WAIT,
};
use crate::error::{Error, Result};
use crate::limits::MAX_FRAME_BYTES;
use crate::logging::{LogCallback, LogLevel};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What a host has once for all its groups. See the fields of [`Options`]
/// of the same names.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub local_ip: String,
    pub local_port: u16,
    pub path: PathBuf,
    pub cluster_id: String,
    pub tls: Option<TlsFiles>,
    pub log_level: LogLevel,
    pub log_callback: Option<LogCallback>,
    pub log_max_bytes: u64,
    pub log_keep_files: u32,
    /// Apply workers of a host of many groups (default 0: one per core, at
    /// most 8). A group is applied by one worker at a time, in order.
    pub workers: u32,
    #[doc(hidden)]
    pub crash_at: Option<String>,
    #[doc(hidden)]
    pub fail_spawn_of: Option<String>,
}

/// What each group has of its own. See the fields of [`Options`] of the
/// same names.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    pub members: Vec<String>,
    pub check_leader_us: u64,
    pub heartbeat_us: u64,
    pub append_entries_size_once: u64,
    pub append_entries_count_once: u64,
    pub single_mode: bool,
    pub join: bool,
    pub request_timeout: Duration,
    pub leader_wait: Duration,
    pub snapshot_log_entries: u64,
    pub snapshot_log_bytes: u64,
    pub snapshot_keep_entries: u64,
    pub snapshot_chunk_bytes: u64,
    pub history_revisions: u64,
    pub session_timeout: Duration,
    pub snapshot_bytes_per_sec: u64,
    pub lease_reads: bool,
    pub quiesce: Option<bool>,
    pub max_async_in_flight: usize,
}

impl Options {
    /// The host's part and the group's part.
    pub fn split(self) -> (HostOptions, GroupOptions) {
        let host = HostOptions {
            local_ip: self.local_ip,
            local_port: self.local_port,
            path: self.path,
            cluster_id: self.cluster_id,
            tls: self.tls,
            log_level: self.log_level,
            log_callback: self.log_callback,
            log_max_bytes: self.log_max_bytes,
            log_keep_files: self.log_keep_files,
            workers: 0,
            crash_at: self.crash_at,
            fail_spawn_of: self.fail_spawn_of,
        };
        let group = GroupOptions {
            members: self.members,
            check_leader_us: self.check_leader_us,
            heartbeat_us: self.heartbeat_us,
            append_entries_size_once: self.append_entries_size_once,
            append_entries_count_once: self.append_entries_count_once,
            single_mode: self.single_mode,
            join: self.join,
            request_timeout: self.request_timeout,
            leader_wait: self.leader_wait,
            snapshot_log_entries: self.snapshot_log_entries,
            snapshot_log_bytes: self.snapshot_log_bytes,
            snapshot_keep_entries: self.snapshot_keep_entries,
            snapshot_chunk_bytes: self.snapshot_chunk_bytes,
            history_revisions: self.history_revisions,
            session_timeout: self.session_timeout,
            snapshot_bytes_per_sec: self.snapshot_bytes_per_sec,
            lease_reads: self.lease_reads,
            quiesce: self.quiesce,
            max_async_in_flight: self.max_async_in_flight,
        };
        (host, group)
    }

    /// A node's options from a host's and a group's.
    pub fn from_parts(host: HostOptions, group: GroupOptions) -> Options {
        Options {
            members: group.members,
            local_ip: host.local_ip,
            local_port: host.local_port,
            path: host.path,
            check_leader_us: group.check_leader_us,
            heartbeat_us: group.heartbeat_us,
            append_entries_size_once: group.append_entries_size_once,
            append_entries_count_once: group.append_entries_count_once,
            single_mode: group.single_mode,
            join: group.join,
            cluster_id: host.cluster_id,
            request_timeout: group.request_timeout,
            leader_wait: group.leader_wait,
            log_level: host.log_level,
            log_callback: host.log_callback,
            log_max_bytes: host.log_max_bytes,
            log_keep_files: host.log_keep_files,
            snapshot_log_entries: group.snapshot_log_entries,
            snapshot_log_bytes: group.snapshot_log_bytes,
            snapshot_keep_entries: group.snapshot_keep_entries,
            snapshot_chunk_bytes: group.snapshot_chunk_bytes,
            history_revisions: group.history_revisions,
            session_timeout: group.session_timeout,
            snapshot_bytes_per_sec: group.snapshot_bytes_per_sec,
            lease_reads: group.lease_reads,
            quiesce: group.quiesce,
            max_async_in_flight: group.max_async_in_flight,
            tls: host.tls,
            crash_at: host.crash_at,
            fail_spawn_of: host.fail_spawn_of,
        }
    }
}

impl HostOptions {
    /// A host listening on `local_ip:local_port` with its data under `path`,
    /// and the defaults of [`Options`] for the rest.
    pub fn new(local_ip: &str, local_port: u16, path: impl Into<PathBuf>) -> Self {
        Options::new("", local_ip, local_port, path).split().0
    }

    /// This host's name, `"local_ip:local_port"` in canonical form: what its
    /// groups call their member here.
    pub fn local_id(&self) -> String {
        match parse_ip(&self.local_ip) {
            Some(ip) => SocketAddr::new(ip, self.local_port).to_string(),
            None => format!("{}:{}", self.local_ip, self.local_port),
        }
    }

    /// Checks every field; on success `local_ip` is bare (`::1`).
    pub fn validate(&mut self) -> Result<()> {
        let Some(ip) = parse_ip(&self.local_ip) else {
            return invalid(format!("local_ip {:?} is not an IP address", self.local_ip));
        };
        if ip.is_unspecified() {
            return invalid(format!(
                "local_ip {ip} is unspecified: give this node's own address, as in members"
            ));
        }
        if self.local_port == 0 {
            return invalid("local_port must not be 0".into());
        }
        self.local_ip = ip.to_string();
        if self.path.as_os_str().is_empty() {
            return invalid("path is empty".into());
        }
        if self.cluster_id.is_empty() {
            return invalid("cluster_id must not be empty".into());
        }
        if self.log_max_bytes == 0 {
            return invalid("log_max_bytes must be > 0".into());
        }
        if self.log_keep_files > MAX_LOG_KEEP_FILES {
            return invalid(format!(
                "log_keep_files {} is over the limit of {MAX_LOG_KEEP_FILES}",
                self.log_keep_files
            ));
        }
        Ok(())
    }
}

impl GroupOptions {
    /// A group of `members` (`"ip:port,ip:port,..."`: host addresses) with
    /// the defaults of [`Options`] for the rest.
    pub fn new(members: &str) -> Self {
        Options::new(members, "127.0.0.1", 1, "").split().1
    }

    /// Checks every field for a group whose member on this host is `me` (the
    /// host's [`local_id`](HostOptions::local_id)); on success the members
    /// are normalised (canonical address text, sorted, deduplicated).
    pub fn validate(&mut self, me: &str) -> Result<()> {
        self.validate_members(me)?;
        self.validate_limits()
    }

    fn validate_members(&mut self, me: &str) -> Result<()> {
        if self.members.is_empty() && !self.join {
            return invalid("members is empty".into());
        }
        let mut members = Vec::with_capacity(self.members.len());
        for m in &self.members {
            members.push(canonical_member(m)?);
        }
        members.sort();
        members.dedup();
        self.members = members;
        if self.join {
            // A joining node takes its configuration from the leader.
            if self.single_mode {
                return invalid("join and single_mode exclude each other".into());
            }
            return Ok(());
        }
        if !self.members.iter().any(|m| m == me) {
            return invalid(format!("this node {me} is not among members {:?}", self.members));
        }
        if self.members.len() == 1 {
            self.single_mode = true;
        } else if self.single_mode {
            return invalid("single_mode needs members to hold only this node".into());
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<()> {
        for (name, us) in [
            ("heartbeat_us", self.heartbeat_us),
            ("check_leader_us", self.check_leader_us),
        ] {
            if us > MAX_TIMER_US {
                return invalid(format!(
                    "{name} {us} is over the limit of {MAX_TIMER_US} (one hour)"
                ));
            }
        }
        // No overflow: both are at most MAX_TIMER_US here.
        if self.heartbeat_us < 1_000 || self.check_leader_us < 2 * self.heartbeat_us {
            return invalid(format!(
                "need heartbeat_us >= 1000 and check_leader_us >= 2 * heartbeat_us (got {} and {})",
                self.heartbeat_us, self.check_leader_us
            ));
        }
        if self.append_entries_size_once == 0 || self.append_entries_count_once == 0 {
            return invalid("append_entries_size_once and append_entries_count_once must be > 0".into());
        }
        // Half the frame cap leaves room for per-entry overhead and one maximal entry
        // past the soft size limit.
        let max_batch = (MAX_FRAME_BYTES / 2) as u64;
        if self.append_entries_size_once > max_batch {
            return invalid(format!(
                "append_entries_size_once {} is over the limit of {max_batch} (half the largest frame)",
                self.append_entries_size_once
            ));
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must not be zero".into());
        }
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("leader_wait", self.leader_wait),
        ] {
            if d > MAX_WAIT {
                return invalid(format!(
                    "{name} {d:?} is over the limit of {MAX_WAIT:?} (24 hours)"
                ));
            }
        }
        let session_ms = u64::try_from(self.session_timeout.as_millis()).unwrap_or(u64::MAX);
        crate::state_machine::check_session_ttl(session_ms).map_err(|_| {
            Error::InvalidArgument(format!(
                "session_timeout {:?} must be from 1 s to 30 days",
                self.session_timeout
            ))
        })?;
        if self.max_async_in_flight == 0 {
            return invalid("max_async_in_flight must be > 0".into());
        }
        if self.snapshot_chunk_bytes == 0 || self.snapshot_chunk_bytes > 8 << 20 {
            return invalid(format!(
                "snapshot_chunk_bytes {} must be in 1..=8 MiB",
                self.snapshot_chunk_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_a_host_and_a_group_and_back_unchanged() {
        let mut o = Options::new("127.0.0.1:2,127.0.0.1:1", "127.0.0.1", 1, "/tmp/x");
        o.cluster_id = "c".into();
        o.lease_reads = true;
        o.heartbeat_us = 50_000;
        let (host, group) = o.clone().split();
        assert_eq!((host.local_port, host.cluster_id.as_str()), (1, "c"));
        assert!(group.lease_reads && group.heartbeat_us == 50_000);
        let back = Options::from_parts(host, group);
        assert_eq!(format!("{back:?}"), format!("{o:?}"));
    }

    #[test]
    fn a_group_is_checked_against_the_host_it_runs_on() {
        let (mut host, mut group) = Options::new("[::1]:2,[0::1]:1", "[::1]", 1, "/tmp/x").split();
        host.validate().unwrap();
        assert_eq!(host.local_id(), "[::1]:1");
        group.validate(&host.local_id()).unwrap();
        assert_eq!(group.members, vec!["[::1]:1", "[::1]:2"]);
        let err = group.validate("[::1]:3").unwrap_err().to_string();
        assert!(err.contains("not among members"), "{err}");
        let mut bad = host.clone();
        bad.cluster_id.clear();
        assert!(bad.validate().is_err());
    }
}
