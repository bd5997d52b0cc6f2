//! Fuzz targets (issue 12): each takes arbitrary bytes and must never
//! panic, hang or break an invariant. `fuzz/` runs them under cargo-fuzz;
//! `tests/fuzz_replay.rs` replays a seeded corpus through them in CI.
//! Not part of the API.

use crate::core::{Config, Message, RaftCore, Restored};
use crate::transport::{body_to_message, encode_frame, read_frame, read_group_frame, MAX_FRAME_BYTES};
use crate::wire::{
    AppendEntries, AppendEntriesResponse, Entry, ReadIndexRequest, ReadIndexResponse, RequestVote,
    RequestVoteResponse, TimeoutNow,
};
use bytes::Bytes;

/// Reads the frame decoder's input: every frame it accepts re-encodes to
/// a frame that decodes to the same group and body.
pub fn frame(data: &[u8]) {
    let mut input = data;
    while let Ok(frame) = read_group_frame(&mut input, MAX_FRAME_BYTES) {
        let mut buf = Vec::new();
        if encode_frame(frame.0, &frame.1, &mut buf).is_ok() {
            let again = read_group_frame(&mut &buf[..], MAX_FRAME_BYTES).expect("a frame we encoded decodes");
            assert_eq!(again, frame, "a frame changed through encode and decode");
        }
    }
}

/// Drives a leader and a follower of a 3-node cluster with messages built
/// from `data` (and raw frames in it), ticks and persistence: the core's
/// validation must refuse what is malformed, and nothing may panic.
pub fn rpc_step(data: &[u8]) {
    let mut u = Cursor(data);
    let mut cores = [leader(), follower()];
    while let Some(op) = u.byte() {
        let core = &mut cores[usize::from(op & 1)];
        match (op >> 1) % 4 {
            0 => core.tick(),
            1 => {
                let from = PEERS[usize::from(u.byte().unwrap_or(0)) % PEERS.len()];
                let _ = core.step(from, message(&mut u));
            }
            2 => {
                let len = usize::from(u.byte().unwrap_or(0));
                let raw = u.take(len);
                if let Ok(Ok(msg)) = read_frame(&mut &raw[..], MAX_FRAME_BYTES).map(body_to_message) {
                    let _ = core.step(PEERS[1], msg);
                }
            }
            _ => {}
        }
        let ready = core.ready();
        if let Some((index, term)) = ready.persisted_position() {
            core.on_persisted(index, term);
        }
        assert!(core.applied() <= core.commit(), "applied past commit");
    }
}

/// The C API's argument checks: options from arbitrary strings and
/// numbers, and every data call on a NULL handle with arbitrary (valid)
/// buffers, must answer with a code, never crash or accept a NULL handle.
pub fn c_api_args(data: &[u8]) {
    use crate::ffi::*;
    use std::ffi::{c_char, CString};
    let mut u = Cursor(data);
    let text = |u: &mut Cursor| {
        let len = usize::from(u.byte().unwrap_or(0) % 48);
        CString::new(
            u.take(len)
                .iter()
                .map(|b| b.max(&1))
                .copied()
                .collect::<Vec<u8>>(),
        )
        .unwrap()
    };
    let (members, ip, path) = (text(&mut u), text(&mut u), text(&mut u));
    let port = i32::from_le_bytes(u.take(4).try_into().unwrap_or([0; 4]));
    // SAFETY: every pointer is a live NUL-terminated string or a buffer at
    // least as long as the length passed with it; handles are NULL or ours.
    unsafe {
        let o = floyd_options_new(members.as_ptr(), ip.as_ptr(), port, path.as_ptr());
        assert!(!o.is_null(), "options_new returns options to report on later");
        while let Some(which) = u.byte() {
            let n = u.small();
            let code = match which % 12 {
                0 => floyd_options_set_check_leader_us(o, n),
                1 => floyd_options_set_heartbeat_us(o, n),
                2 => floyd_options_set_append_entries_size_once(o, n),
                3 => floyd_options_set_append_entries_count_once(o, n),
                4 => floyd_options_set_snapshot_chunk_bytes(o, n),
                5 => floyd_options_set_request_timeout_ms(o, n),
                6 => floyd_options_set_leader_wait_ms(o, n),
                7 => floyd_options_set_log_level(o, n as i32),
                8 => floyd_options_set_max_async_in_flight(o, n),
                9 => floyd_options_set_log_keep_files(o, n as u32),
                10 => floyd_options_set_cluster_id(o, text(&mut u).as_ptr()),
                _ => floyd_options_set_join(o, n % 2 == 1),
            };
            assert!(
                code == FLOYD_OK || code == FLOYD_INVALID_ARGUMENT,
                "setter answered {code}"
            );
        }
        let _ = crate::ffi::check_options(o);
        floyd_options_free(o);
        let key = text(&mut u);
        let (k, n) = (key.as_ptr(), key.as_bytes().len());
        let f = std::ptr::null_mut();
        let mut out: *mut c_char = std::ptr::null_mut();
        let mut len = 0usize;
        let mut msg: *mut c_char = std::ptr::null_mut();
        for code in [
            floyd_write(f, k, n, k, n, &mut msg),
            floyd_delete(f, k, n, &mut msg),
            floyd_read(f, k, n, &mut out, &mut len, &mut msg),
            floyd_dirty_read(f, k, n, &mut out, &mut len, std::ptr::null_mut()),
            floyd_try_lock(f, k, n, k, n, 1, std::ptr::null_mut(), std::ptr::null_mut()),
            floyd_write_async(f, k, n, k, n, None, std::ptr::null_mut()),
            floyd_transfer_leader(f, k, &mut msg),
        ] {
            assert_eq!(code, FLOYD_INVALID_ARGUMENT, "a NULL handle");
            floyd_free(msg.cast());
            msg = std::ptr::null_mut();
        }
        assert!(out.is_null(), "nothing handed out on error");
        assert!(!floyd_status_str(port).is_null());
    }
}

/// Committed entries built from `data` (each: a byte saying whether its
/// leader marked it protocol 6, a length, that many payload bytes, which
/// often decode as a command or transaction), applied to two stores: one
/// in a single batch, one entry by entry, as a leader and a follower may.
/// Nothing may panic, and both must answer alike and end in the same
/// state (keys, values, revisions).
pub fn apply(data: &[u8]) {
    use crate::state_machine::KvStateMachine;
    use crate::wire::{EntryType, Range};
    let mut u = Cursor(data);
    let mut entries = Vec::new();
    while let Some(flags) = u.byte() {
        let len = usize::from(u.byte().unwrap_or(0));
        entries.push(Entry {
            term: 1 + u64::from(flags >> 4),
            index: entries.len() as u64 + 1,
            r#type: EntryType::EntryCommand as i32,
            payload: Bytes::copy_from_slice(u.take(len)),
            leader_time_ms: 1_000 * entries.len() as u64,
            log_time_rule: if flags & 1 == 1 { 2 } else { 0 },
        });
    }
    let dirs = ScratchDirs::new();
    let (one, many) = (
        KvStateMachine::open(&dirs.0.join("one")).unwrap(),
        KvStateMachine::open(&dirs.0.join("many")).unwrap(),
    );
    let answers = one
        .apply(&entries)
        .expect("applying committed entries never fails the store");
    let step_by_step: Vec<_> = entries
        .iter()
        .flat_map(|e| {
            many.apply(std::slice::from_ref(e))
                .expect("applying never fails the store")
        })
        .collect();
    assert_eq!(
        answers, step_by_step,
        "answers depend on how entries were batched"
    );
    let all = Range::default();
    assert_eq!(
        one.range(&all).unwrap(),
        many.range(&all).unwrap(),
        "state depends on batching"
    );
    assert_eq!(one.applied_index().unwrap(), entries.len() as u64);
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped (the library has no tempfile dependency).
struct ScratchDirs(std::path::PathBuf);

impl ScratchDirs {
    fn new() -> ScratchDirs {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("floyd-fuzz-apply-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ScratchDirs(dir)
    }
}

impl Drop for ScratchDirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Payloads the `apply` target starts from: every kind of command, a
/// transaction of each kind of operation and each lease command, as a
/// leader would log them.
pub fn apply_seeds() -> Vec<Vec<u8>> {
    use crate::state_machine::{encode_command, CommandKind};
    use crate::wire::{compare, txn_op, Compare, Delete, Get, Put, Txn, TxnOp};
    let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
    let put = |k: &str| TxnOp {
        op: Some(txn_op::Op::Put(Put {
            key: key(k),
            value: key("v"),
            lease: 0,
        })),
    };
    let cmds = [
        CommandKind::Put {
            key: key("a"),
            value: key("1"),
        },
        CommandKind::Delete { key: key("a") },
        CommandKind::Get { key: key("a") },
        CommandKind::TryLock {
            name: key("l"),
            holder: key("h"),
            ttl_ms: 5,
        },
        CommandKind::Txn(Txn {
            compares: vec![Compare {
                key: key("a"),
                target: compare::Target::Version as i32,
                op: compare::Op::Equal as i32,
                value: Bytes::new(),
                number: 0,
            }],
            then: vec![
                put("a"),
                TxnOp {
                    op: Some(txn_op::Op::Get(Get { key: key("a") })),
                },
                TxnOp {
                    op: Some(txn_op::Op::Delete(Delete { key: key("b") })),
                },
            ],
            otherwise: vec![put("b")],
        }),
        // Entry 6 grants lease 6; entries are 1 s apart, so it expires
        // within two entries unless kept alive.
        CommandKind::LeaseGrant { ttl_ms: 1_500 },
        CommandKind::PutLeased {
            key: key("c"),
            value: key("1"),
            lease: 6,
        },
        CommandKind::LeaseKeepAlive { ids: vec![6, 2] },
        CommandKind::LeaseSweep,
        CommandKind::LeaseRevoke { id: 6 },
    ];
    let mut input = Vec::new();
    for (i, c) in cmds.into_iter().enumerate() {
        let payload = encode_command(c);
        input.extend([(i % 2) as u8 | 1, payload.len() as u8]);
        input.extend_from_slice(&payload);
    }
    vec![input]
}

const PEERS: [&str; 4] = ["n1", "n2", "n3", "stranger"];

fn config(me: &str) -> Config {
    let mut c = Config::new(me, vec!["n1".into(), "n2".into(), "n3".into()]);
    c.pre_vote = false;
    // Quiet groups too: the quiesce heartbeat, wake requests and quiet ticks.
    c.quiesce_after_ticks = 2;
    c
}

fn follower() -> RaftCore {
    RaftCore::new(config("n2"), Restored::default(), 2)
}

/// n1, elected by n2's vote.
fn leader() -> RaftCore {
    let mut core = RaftCore::new(config("n1"), Restored::default(), 1);
    for _ in 0..1000 {
        core.tick();
        if core.term() > 0 {
            break;
        }
    }
    let term = core.term();
    let _ = core.ready();
    let vote = RequestVoteResponse {
        term,
        granted: true,
        pre_vote: false,
        from: "n2".into(),
    };
    let _ = core.step("n2", Message::RequestVoteResponse(vote));
    let _ = core.ready();
    core
}

/// A message of any kind, its fields from `u`.
fn message(u: &mut Cursor) -> Message {
    let term = u.small();
    let from = PEERS[usize::from(u.byte().unwrap_or(0)) % PEERS.len()].to_string();
    match u.byte().unwrap_or(0) % 7 {
        0 => Message::RequestVote(RequestVote {
            term,
            candidate: from,
            last_log_index: u.small(),
            last_log_term: u.small(),
            pre_vote: u.flag(),
            leader_transfer: u.flag(),
        }),
        1 => Message::RequestVoteResponse(RequestVoteResponse {
            term,
            granted: u.flag(),
            pre_vote: u.flag(),
            from,
        }),
        2 => {
            let count = usize::from(u.byte().unwrap_or(0) % 4);
            let entries = (0..count)
                .map(|_| Entry {
                    term: u.small(),
                    index: u.small(),
                    r#type: i32::from(u.byte().unwrap_or(0) % 4),
                    payload: Bytes::copy_from_slice(u.take(8)),
                    leader_time_ms: u.small(),
                    log_time_rule: u32::from(u.byte().unwrap_or(0) % 3),
                })
                .collect();
            Message::AppendEntries(AppendEntries {
                term,
                leader: from,
                prev_log_index: u.small(),
                prev_log_term: u.small(),
                entries,
                leader_commit: u.small(),
                read_seq: u.small(),
                quiesce: u.flag(),
                commit_notice: u.flag(),
            })
        }
        3 => Message::AppendEntriesResponse(AppendEntriesResponse {
            term,
            success: u.flag(),
            from,
            match_index: u.small(),
            last_log_index: u.small(),
            conflict_term: u.small(),
            conflict_index: u.small(),
            rejected_prev_index: u.small(),
            read_seq: u.small(),
            wake: u.flag(),
        }),
        4 => Message::ReadIndexRequest(ReadIndexRequest {
            term,
            from,
            ctx: u.small(),
        }),
        5 => Message::ReadIndexResponse(ReadIndexResponse {
            term,
            from,
            ctx: u.small(),
            index: u.small(),
            ok: u.flag(),
        }),
        _ => Message::TimeoutNow(TimeoutNow { term, from }),
    }
}

/// Bytes read front to back; zeros once they run out.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn flag(&mut self) -> bool {
        self.byte().unwrap_or(0) & 1 == 1
    }

    /// Mostly small numbers (terms and indexes near the real ones), now and then any.
    fn small(&mut self) -> u64 {
        match self.byte().unwrap_or(0) {
            255 => u64::from_le_bytes(self.take(8).try_into().unwrap_or([0xff; 8])),
            b => u64::from(b % 16),
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Role;

    #[test]
    fn the_rpc_target_drives_a_real_leader_and_follower() {
        assert_eq!(leader().role(), Role::Leader);
        assert_eq!(follower().role(), Role::Follower);
    }
}
