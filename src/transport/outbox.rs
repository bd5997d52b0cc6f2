//! What a peer worker writes, and what it remembers about what it wrote.
//!
//! A link has two queues: Raft traffic (votes, appends, their responses,
//! pings) and client traffic (forwarded commands and their results). A batch
//! takes every waiting Raft frame before any client frame, and stops at
//! [`BATCH_BYTES`] (but holds at least one frame), so a vote or an append
//! response waits behind at most one batch of forwarded values, never behind
//! the whole queue. Each frame is encoded into its own buffer and the batch
//! goes out with vectored writes: nothing is copied into one large buffer.
//!
//! Forwarded requests written on a connection are remembered for the in-doubt
//! window, so that when the connection breaks the node can answer their
//! callers at once instead of letting them wait for the request timeout.

use super::frame::{encode_frame, frame_len, FrameError};
use crate::storage::GroupId;
use crate::wire::{frame::Body, ClientRequest};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::time::{Duration, Instant};

/// A batch stops growing once it holds this many bytes of frames.
pub(super) const BATCH_BYTES: usize = 1 << 20;
/// At most this many frames per batch: Linux's `IOV_MAX`, so one `writev` can take a whole batch.
pub(super) const BATCH_FRAMES: usize = 1024;

/// A frame waiting to go out: the group it is for, and its body.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Outgoing {
    pub group: GroupId,
    pub body: Body,
}

/// Whether `body` belongs in the client queue (everything else is Raft traffic).
pub(super) fn is_client_traffic(body: &Body) -> bool {
    matches!(body, Body::ClientRequest(_) | Body::ClientResponse(_))
}

/// Takes the next batch: Raft frames first, then client frames, until
/// `max_bytes` of frames or `max_frames` frames are taken. A single frame
/// larger than `max_bytes` still makes a batch of its own.
pub(super) fn next_batch(
    mut raft: impl FnMut() -> Option<Outgoing>,
    mut client: impl FnMut() -> Option<Outgoing>,
    max_bytes: usize,
    max_frames: usize,
) -> Vec<Outgoing> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut raft_done = false;
    while bytes < max_bytes && batch.len() < max_frames {
        let next = if raft_done { None } else { raft() };
        let body = match next {
            Some(b) => b,
            None => {
                raft_done = true;
                match client() {
                    Some(b) => b,
                    None => break,
                }
            }
        };
        bytes += frame_len(body.group, &body.body);
        batch.push(body);
    }
    batch
}

/// A batch encoded for writing: one buffer per frame.
#[derive(Default)]
pub(super) struct Encoded {
    pub bufs: Vec<Vec<u8>>,
    /// Forwarded requests in the batch, with the index of their buffer.
    pub requests: Vec<(usize, GroupId, ClientRequest)>,
}

/// Encodes `frames`, handing each that cannot be encoded (over the
/// cluster's frame limit) to `refused` instead.
pub(super) fn encode_batch(frames: Vec<Outgoing>, mut refused: impl FnMut(Outgoing, FrameError)) -> Encoded {
    let mut out = Encoded::default();
    for frame in frames {
        let mut buf = Vec::new();
        if let Err(e) = encode_frame(frame.group, &frame.body, &mut buf) {
            refused(frame, e);
            continue;
        }
        if let Body::ClientRequest(req) = frame.body {
            out.requests.push((out.bufs.len(), frame.group, req));
        }
        out.bufs.push(buf);
    }
    out
}

/// A forwarded request, with its group.
pub(super) type GroupRequest = (GroupId, ClientRequest);

/// Splits the requests of a batch whose write failed after `written` bytes:
/// those whose frame was at least partly handed to the kernel may have
/// arrived (in doubt); the rest were certainly not sent.
pub(super) fn split_by_written(enc: Encoded, written: usize) -> (Vec<GroupRequest>, Vec<GroupRequest>) {
    let mut starts = Vec::with_capacity(enc.bufs.len());
    let mut offset = 0;
    for b in &enc.bufs {
        starts.push(offset);
        offset += b.len();
    }
    let (mut doubt, mut unsent) = (Vec::new(), Vec::new());
    for (i, group, req) in enc.requests {
        if starts[i] < written {
            doubt.push((group, req));
        } else {
            unsent.push((group, req));
        }
    }
    (doubt, unsent)
}

/// Writes every buffer with vectored writes (std's `write_all_vectored` is
/// unstable). On failure, also says how many bytes were written before it.
pub(super) fn write_all_vectored(w: &mut impl Write, bufs: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    let mut written = 0;
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match w.write_vectored(rest) {
            Ok(0) => return Err((written, io::Error::from(io::ErrorKind::WriteZero))),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut rest, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    w.flush().map_err(|e| (written, e))
}

/// Ids of the forwarded requests written on one connection within the last
/// `window`: pruned by age, so it stays bounded by the forwarding rate.
pub(super) struct InDoubt {
    window: Duration,
    written: VecDeque<(Instant, GroupId, u64)>,
}

impl InDoubt {
    pub fn new(window: Duration) -> Self {
        InDoubt {
            window,
            written: VecDeque::new(),
        }
    }

    pub fn record(&mut self, at: Instant, group: GroupId, request_id: u64) {
        self.prune(at);
        self.written.push_back((at, group, request_id));
    }

    /// Forgets requests written more than `window` before `now`: their callers have timed out already.
    pub fn prune(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.written.front() {
            if now.saturating_duration_since(*at) <= self.window {
                break;
            }
            self.written.pop_front();
        }
    }

    /// The (group, id) still in the window, oldest first; the list is left empty.
    pub fn take(&mut self, now: Instant) -> Vec<(GroupId, u64)> {
        self.prune(now);
        self.written.drain(..).map(|(_, group, id)| (group, id)).collect()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.written.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{command::Op, ClientResponse, Command, Ping, Put, RequestVote};

    fn vote(term: u64) -> Outgoing {
        let body = Body::RequestVote(RequestVote {
            term,
            ..Default::default()
        });
        Outgoing { group: 3, body }
    }

    fn request(id: u64, value_len: usize) -> Outgoing {
        let body = Body::ClientRequest(ClientRequest {
            request_id: id,
            command: Some(Command {
                op: Some(Op::Put(Put {
                    key: "k".into(),
                    value: bytes::Bytes::from(vec![1u8; value_len]),
                    lease: 0,
                })),
                session: None,
            }),
        });
        Outgoing { group: id, body }
    }

    fn batch_of(
        raft: &mut VecDeque<Outgoing>,
        client: &mut VecDeque<Outgoing>,
        max_bytes: usize,
    ) -> Vec<Outgoing> {
        next_batch(
            || raft.pop_front(),
            || client.pop_front(),
            max_bytes,
            BATCH_FRAMES,
        )
    }

    fn id(b: &Outgoing) -> u64 {
        match &b.body {
            Body::ClientRequest(r) => r.request_id,
            Body::RequestVote(v) => 1000 + v.term,
            _ => 0,
        }
    }

    #[test]
    fn traffic_is_split_into_raft_and_client_queues() {
        assert!(is_client_traffic(&request(1, 0).body));
        assert!(is_client_traffic(
            &Body::ClientResponse(ClientResponse::default())
        ));
        assert!(!is_client_traffic(&vote(1).body));
        assert!(!is_client_traffic(&Body::Ping(Ping {})));
    }

    #[test]
    fn raft_frames_go_first_and_a_batch_is_bounded_in_bytes() {
        let mut client: VecDeque<Outgoing> = (1..=5).map(|i| request(i, 600 << 10)).collect();
        let mut raft: VecDeque<Outgoing> = (1..=3).map(vote).collect();
        let first = batch_of(&mut raft, &mut client, BATCH_BYTES);
        // Every vote, then client frames until 1 MiB is reached: the second 600 KiB crosses it.
        assert_eq!(first.iter().map(id).collect::<Vec<_>>(), [1001, 1002, 1003, 1, 2]);
        // A vote queued behind the rest of the client frames still goes first.
        raft.push_back(vote(4));
        let second = batch_of(&mut raft, &mut client, BATCH_BYTES);
        assert_eq!(second.iter().map(id).collect::<Vec<_>>(), [1004, 3, 4]);
        let third = batch_of(&mut raft, &mut client, BATCH_BYTES);
        assert_eq!(third.iter().map(id).collect::<Vec<_>>(), [5]);
        assert!(batch_of(&mut raft, &mut client, BATCH_BYTES).is_empty());
    }

    #[test]
    fn a_frame_larger_than_a_batch_is_a_batch_of_its_own() {
        let mut client: VecDeque<Outgoing> = [request(1, 3 << 20), request(2, 10)].into();
        let mut raft = VecDeque::new();
        assert_eq!(batch_of(&mut raft, &mut client, BATCH_BYTES).len(), 1);
        assert_eq!(batch_of(&mut raft, &mut client, BATCH_BYTES).len(), 1);
    }

    #[test]
    fn a_batch_is_bounded_in_frames() {
        let mut raft: VecDeque<Outgoing> = (0..3000).map(vote).collect();
        let b = next_batch(|| raft.pop_front(), || None, BATCH_BYTES, BATCH_FRAMES);
        assert_eq!(b.len(), BATCH_FRAMES);
    }

    #[test]
    fn the_client_queue_is_not_read_while_raft_frames_wait() {
        // A client frame taken too early could not be put back in its queue.
        let raft: std::cell::RefCell<VecDeque<Outgoing>> =
            std::cell::RefCell::new((1..=2).map(vote).collect());
        let mut client: VecDeque<Outgoing> = [request(9, 1)].into();
        let mut asked_client_with_raft_left = false;
        let mut raft_calls = 0;
        let b = next_batch(
            || {
                raft_calls += 1;
                raft.borrow_mut().pop_front()
            },
            || {
                asked_client_with_raft_left |= !raft.borrow().is_empty();
                client.pop_front()
            },
            BATCH_BYTES,
            BATCH_FRAMES,
        );
        assert_eq!(b.iter().map(id).collect::<Vec<_>>(), [1001, 1002, 9]);
        assert!(!asked_client_with_raft_left);
        assert_eq!(
            raft_calls, 3,
            "the raft source is not asked again once it was empty"
        );
    }

    #[test]
    fn frames_too_large_are_refused_and_the_rest_encoded() {
        let huge = request(7, super::super::MAX_FRAME_BYTES + 1);
        let mut refused = Vec::new();
        let enc = encode_batch(vec![vote(1), huge, request(8, 10)], |b, _| refused.push(id(&b)));
        assert_eq!(refused, [7]);
        assert_eq!(enc.bufs.len(), 2);
        assert_eq!(enc.requests.len(), 1);
        let (at, group, req) = &enc.requests[0];
        assert_eq!((*at, *group, req.request_id), (1, 8, 8));
    }

    /// Accepts at most `chunk` bytes per call, and fails once `fail_after` bytes are in.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
        fail_after: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.out.len() >= self.fail_after {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let room = self.chunk.min(self.fail_after - self.out.len());
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(room - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == room {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_writes_survive_partial_writes_across_buffers() {
        let bufs = vec![vec![1u8; 5], Vec::new(), vec![2u8; 3], vec![3u8; 9]];
        let mut w = Trickle {
            out: Vec::new(),
            chunk: 4,
            fail_after: usize::MAX,
        };
        write_all_vectored(&mut w, &bufs).unwrap();
        assert_eq!(w.out, bufs.concat());
    }

    #[test]
    fn a_failed_write_splits_requests_into_in_doubt_and_unsent() {
        let enc = encode_batch(
            vec![request(1, 10), vote(1), request(2, 10), request(3, 10)],
            |_, _| unreachable!(),
        );
        let lens: Vec<usize> = enc.bufs.iter().map(Vec::len).collect();
        // Fails inside the third frame (request 2): 1 and 2 may have arrived, 3 was never sent.
        let fail_after = lens[0] + lens[1] + 1;
        let mut w = Trickle {
            out: Vec::new(),
            chunk: 7,
            fail_after,
        };
        let (written, _) = write_all_vectored(&mut w, &enc.bufs).unwrap_err();
        assert_eq!(written, fail_after);
        let (doubt, unsent) = split_by_written(enc, written);
        assert_eq!(
            doubt.iter().map(|(g, r)| (*g, r.request_id)).collect::<Vec<_>>(),
            [(1, 1), (2, 2)]
        );
        assert_eq!(unsent.iter().map(|(_, r)| r.request_id).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn nothing_written_means_nothing_in_doubt() {
        let enc = encode_batch(vec![request(1, 10)], |_, _| unreachable!());
        let (doubt, unsent) = split_by_written(enc, 0);
        assert!(doubt.is_empty());
        assert_eq!(unsent.len(), 1);
    }

    #[test]
    fn in_doubt_requests_are_pruned_by_age() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = InDoubt::new(5 * s);
        for i in 0..10u32 {
            d.record(t0 + s * i, 2, u64::from(i));
        }
        // Recorded at 0..9 s with a 5 s window: at 9 s, those of 0..3 s are gone.
        assert_eq!(d.len(), 6);
        // At 12 s, only those of the last 5 s remain.
        assert_eq!(d.take(t0 + 12 * s), [(2, 7), (2, 8), (2, 9)]);
        assert_eq!(d.len(), 0);
        assert!(d.take(t0 + 12 * s).is_empty());
    }
}
