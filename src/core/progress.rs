//! What a leader knows about one follower's log.

use std::collections::VecDeque;

/// How the leader is sending to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// The match point is unknown: one AppendEntries at a time until one succeeds.
    Probe,
    /// The follower is in step: AppendEntries are pipelined up to the in-flight window.
    Replicate,
    /// The follower needs entries compacted away: the snapshot at
    /// `pending_snapshot` is being streamed; nothing else is sent but heartbeats.
    Snapshot,
}

/// Replication progress of one follower.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    pub state: ProgressState,
    /// In Probe: a probe is outstanding, wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    /// In Replicate: last index and payload bytes of every unacknowledged
    /// AppendEntries, oldest first.
    pub inflight: VecDeque<(u64, u64)>,
    /// The payload bytes in `inflight`.
    pub inflight_bytes: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Acknowledged something since the last heartbeat (a full window without
    /// acknowledgements for a whole heartbeat means messages were lost).
    pub acked_since_heartbeat: bool,
    /// In Snapshot: the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// In Snapshot: heartbeats since it was offered (or since the runtime
    /// reported it sent whole, `snapshot_sent`), to give up on a lost one.
    pub snapshot_heartbeats: u32,
    pub snapshot_sent: bool,
}

impl Progress {
    pub fn new(next_index: u64) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: true,
            acked_since_heartbeat: false,
            pending_snapshot: 0,
            snapshot_heartbeats: 0,
            snapshot_sent: false,
        }
    }

    /// Whether another AppendEntries with entries may be sent now: the
    /// window is full by count or by bytes (one message always fits).
    pub fn is_paused(&self, max_inflight: usize, max_inflight_bytes: u64) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.window_full(max_inflight, max_inflight_bytes),
            ProgressState::Snapshot => true,
        }
    }

    /// In Replicate: whether the in-flight window is full.
    pub fn window_full(&self, max_inflight: usize, max_inflight_bytes: u64) -> bool {
        self.inflight.len() >= max_inflight
            || (!self.inflight.is_empty() && self.inflight_bytes >= max_inflight_bytes)
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    pub fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.clear_inflight();
        self.pending_snapshot = index;
        self.snapshot_heartbeats = 0;
        self.snapshot_sent = false;
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.clear_inflight();
        self.next_index = self.match_index + 1;
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.clear_inflight();
        self.next_index = self.match_index + 1;
    }

    /// Records an acknowledgement up to `index`; returns whether it was news.
    pub fn acknowledge(&mut self, index: u64) -> bool {
        self.acked_since_heartbeat = true;
        while let Some(&(_, bytes)) = self.inflight.front().filter(|(i, _)| *i <= index) {
            self.inflight.pop_front();
            self.inflight_bytes = self.inflight_bytes.saturating_sub(bytes);
        }
        if index > self.match_index {
            self.match_index = index;
            self.next_index = self.next_index.max(index + 1);
            self.probe_sent = false;
            true
        } else {
            false
        }
    }

    /// Records that entries up to `last`, `bytes` of payload, were sent.
    pub fn sent(&mut self, last: u64, bytes: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
            ProgressState::Replicate => {
                if last >= self.next_index {
                    self.inflight.push_back((last, bytes));
                    self.inflight_bytes += bytes;
                    self.next_index = last + 1;
                }
            }
        }
    }
}
