//! Heartbeats coalesced per pair of hosts (issue 23; CockroachDB's
//! coalesced heartbeats): while a thread handles many groups at once (the
//! primary thread's pass over every group's ticks; a server thread's pass
//! over a frame of coalesced heartbeats), the heartbeats its groups send
//! (AppendEntries without entries) and the answers to them are set aside
//! per remote host, and go out at the end of the pass as one `Heartbeats`
//! frame per host. Each is the very message its group made, with its group
//! id: the cores see exactly what they would have seen one by one, so
//! pre-vote, check-quorum, ReadIndex rounds and lease reads keep their
//! meaning. Only to hosts that speak protocol 7; a message with entries, or
//! one made outside such a pass, goes out alone and at once, as before.

use super::host::HostShared;
use crate::core::Message;
use crate::storage::GroupId;
use crate::wire::frame::Body;
use crate::wire::{GroupBeat, GroupBeatAnswer, Heartbeats};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// Beats and answers per frame at most: a frame stays small next to the
/// frame cap whatever the number of groups.
const MAX_PER_FRAME: usize = 4096;

thread_local! {
    /// The pass under way on this thread: what waits for each remote host.
    static PASS: RefCell<Option<BTreeMap<String, Heartbeats>>> = const { RefCell::new(None) };
}

/// Runs `f` as a pass: the heartbeats and answers sent meanwhile go out
/// coalesced at its end. A pass inside a pass is part of the outer one.
pub(super) fn in_pass<T>(host: &HostShared, f: impl FnOnce() -> T) -> T {
    let outer = PASS.with(|p| {
        let mut p = p.borrow_mut();
        let outer = p.is_some();
        if !outer {
            *p = Some(BTreeMap::new());
        }
        outer
    });
    let out = f();
    if !outer {
        if let Some(pending) = PASS.with(|p| p.borrow_mut().take()) {
            flush(host, pending);
        }
    }
    out
}

/// Sets `msg` of `group` for `to` aside if a pass is under way and it is a
/// heartbeat or an answer for a host that speaks protocol 7; otherwise
/// gives it back, to be sent alone.
pub(super) fn set_aside(host: &HostShared, to: &str, group: GroupId, msg: Message) -> Option<Message> {
    let beat = match &msg {
        Message::AppendEntries(m) => m.entries.is_empty(),
        Message::AppendEntriesResponse(_) => true,
        _ => false,
    };
    if !beat || !PASS.with(|p| p.borrow().is_some()) {
        return Some(msg);
    }
    if !host.links.peer(to).is_some_and(|l| l.speaks_quiescence()) {
        return Some(msg);
    }
    PASS.with(|p| {
        let mut p = p.borrow_mut();
        let pending = p
            .as_mut()
            .expect("checked above")
            .entry(to.to_string())
            .or_default();
        match msg {
            Message::AppendEntries(m) => pending.beats.push(GroupBeat {
                group_id: group,
                beat: Some(m),
            }),
            Message::AppendEntriesResponse(m) => pending.answers.push(GroupBeatAnswer {
                group_id: group,
                answer: Some(m),
            }),
            _ => unreachable!("only beats are set aside"),
        }
    });
    None
}

/// Sends what a pass set aside: one frame per host (more past [`MAX_PER_FRAME`]).
fn flush(host: &HostShared, pending: BTreeMap<String, Heartbeats>) {
    for (to, all) in pending {
        let Some(link) = host.links.peer(&to) else {
            continue;
        };
        let mut beats = all.beats.into_iter().peekable();
        let mut answers = all.answers.into_iter().peekable();
        while beats.peek().is_some() || answers.peek().is_some() {
            let frame = Heartbeats {
                beats: beats.by_ref().take(MAX_PER_FRAME).collect(),
                answers: answers.by_ref().take(MAX_PER_FRAME).collect(),
            };
            let n = (frame.beats.len() + frame.answers.len()) as u64;
            if link.send(0, Body::Heartbeats(frame)) {
                host.coalesced_beats.fetch_add(n, Ordering::Relaxed);
                host.coalesced_frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
