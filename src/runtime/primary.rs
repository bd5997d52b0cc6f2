//! The primary thread: CheckLeader and HeartBeat (the core's logical clock)
//! and NewCommand (group commit). It is also the one writer of the log store,
//! so Readies reach the disk in the order the core produced them, batched:
//! everything pending goes out in one WriteBatch with one fsync.

use super::node::{Node, PrimaryEvent};
use crate::core::Ready;
use crate::error::Error;
use crate::storage::LogBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs until `PrimaryEvent::Stop`.
pub fn run(node: Arc<Node>, rx: Receiver<PrimaryEvent>, tick: Duration) {
    let mut next_tick = Instant::now() + tick;
    // Commands that arrived while the last round was persisting.
    let mut carried_command = false;
    loop {
        let mut round = Round {
            new_command: carried_command,
            ..Round::default()
        };
        let wait = if carried_command {
            Duration::ZERO
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        match rx.recv_timeout(wait) {
            Ok(ev) => round.take(ev),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        round.drain(&rx);
        if round.stop {
            // A clean close still writes what the core already produced.
            if !round.readies.is_empty() {
                persist(&node, round.readies);
            }
            return;
        }
        if Instant::now() >= next_tick {
            // CheckLeader and HeartBeat: election and heartbeat timers live in the core.
            node.with_core(|core| core.tick());
            next_tick = (next_tick + tick).max(Instant::now());
        }
        if round.new_command {
            new_command(&node);
        }
        // Pick up the Readies the tick and the proposals just queued; commands
        // that arrive meanwhile wait for the next round.
        let mut late = Round::default();
        late.drain(&rx);
        round.readies.append(&mut late.readies);
        carried_command = late.new_command;
        if !round.readies.is_empty() {
            persist(&node, round.readies);
        }
        if late.stop {
            return;
        }
    }
}

#[derive(Default)]
struct Round {
    readies: Vec<Ready>,
    new_command: bool,
    stop: bool,
}

impl Round {
    fn take(&mut self, ev: PrimaryEvent) {
        match ev {
            PrimaryEvent::Persist(r) => self.readies.push(r),
            PrimaryEvent::NewCommand => self.new_command = true,
            PrimaryEvent::Stop => self.stop = true,
        }
    }

    fn drain(&mut self, rx: &Receiver<PrimaryEvent>) {
        while let Ok(ev) = rx.try_recv() {
            self.take(ev);
        }
    }
}

/// NewCommand: proposes every queued command as one batch.
fn new_command(node: &Node) {
    let pending = node.proposals.take_pending();
    if pending.is_empty() {
        return;
    }
    let (payloads, completions): (Vec<_>, Vec<_>) = pending.into_iter().unzip();
    let proposed = node.with_core(|core| {
        let proposed = core.propose(payloads);
        if let Ok(positions) = &proposed {
            // Register under the core lock: nothing can be applied before it.
            for ((index, term), done) in positions.iter().zip(completions) {
                node.proposals.wait_for(*index, *term, done);
            }
            return Ok(());
        }
        proposed.map(|_| ()).map_err(|e| (e, completions))
    });
    if let Err((not_leader, completions)) = proposed {
        let msg = match not_leader.leader {
            Some(l) => format!("this node is not the leader ({l} is)"),
            None => "this node is not the leader".to_string(),
        };
        for done in completions {
            done(Err(Error::NoLeader(msg.clone())));
        }
    }
}

/// Writes the Readies in one batch (synced if any needs it), then lets out
/// what waited on them.
fn persist(node: &Node, readies: Vec<Ready>) {
    let mut batch = LogBatch::default();
    let mut sync = false;
    let mut last = None;
    let mut hard_state = None;
    for r in &readies {
        batch.add(None, r.truncate_from, &r.entries);
        sync |= r.must_sync;
        last = r.persisted_position().or(last);
        hard_state = r.hard_state.as_ref().or(hard_state);
    }
    // Only the newest (term, vote, commit) matters; its keys are apart from the entries'.
    batch.add(hard_state, None, &[]);
    if !batch.is_empty() {
        if let Err(e) = node.log_store.write(batch, sync) {
            node.fail(Error::Io(format!("cannot persist the Raft log: {e}")));
            return;
        }
    }
    if let Some((index, term)) = last {
        node.with_core(|core| core.on_persisted(index, term));
    }
    for r in readies {
        for env in r.messages_after_persist {
            node.send_message(env);
        }
    }
    node.wake_apply();
}
