//! Length-prefixed frames: a 4-byte big-endian length, then one encoded `Frame`.
//!
//! [`MAX_FRAME_BYTES`] is one constant for the whole cluster: every node
//! refuses to encode a larger frame and refuses to read one, so a sender can
//! never produce a frame its peers drop, and a length prefix never wraps. The
//! length is checked against the limit before anything is allocated.

use crate::core::Message;
use crate::storage::GroupId;
use crate::wire::{frame::Body, Frame};
use prost::Message as _;
use std::io::{self, Read, Write};

pub use crate::limits::MAX_FRAME_BYTES;

/// Why a frame could not be encoded or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    #[error("frame does not decode: {0}")]
    Decode(String),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// The field number of `Frame.group_id`.
const GROUP_ID_FIELD: u32 = 15;

/// The encoded length of a frame's group id (nothing for group 0).
fn group_len(group: GroupId) -> usize {
    if group == 0 {
        0
    } else {
        prost::encoding::uint64::encoded_len(GROUP_ID_FIELD, &group)
    }
}

/// The encoded size of `body` for `group` as a frame, length prefix included.
pub fn frame_len(group: GroupId, body: &Body) -> usize {
    4 + body.encoded_len() + group_len(group)
}

/// Appends one frame of `group` to `buf`, or refuses a body larger than
/// [`MAX_FRAME_BYTES`] (leaving `buf` untouched) rather than writing a
/// length that does not fit.
pub fn encode_frame(group: GroupId, body: &Body, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    // A `Frame` is its oneof and its group id: its encoding is the body's,
    // then the id (none for group 0, as nodes of earlier versions write it).
    let len = body.encoded_len() + group_len(group);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(len, MAX_FRAME_BYTES));
    }
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge(len, MAX_FRAME_BYTES))?;
    buf.reserve(4 + len);
    buf.extend_from_slice(&prefix.to_be_bytes());
    body.encode(buf);
    if group != 0 {
        prost::encoding::uint64::encode(GROUP_ID_FIELD, &group, buf);
    }
    Ok(())
}

/// Writes one frame about no group (a handshake, a ping).
pub fn write_frame(w: &mut impl Write, body: Body) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(0, &body, &mut buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame of at most `max_len` bytes, ignoring its group.
pub fn read_frame(r: &mut impl Read, max_len: usize) -> Result<Body, FrameError> {
    read_group_frame(r, max_len).map(|(_, body)| body)
}

/// Reads one frame of at most `max_len` bytes: its group and its body.
pub fn read_group_frame(r: &mut impl Read, max_len: usize) -> Result<(GroupId, Body), FrameError> {
    let mut len = [0u8; 4];
    if let Err(e) = r.read_exact(&mut len) {
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof => FrameError::Closed,
            _ => FrameError::Io(e),
        });
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max_len {
        return Err(FrameError::TooLarge(len, max_len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    let frame = Frame::decode(&buf[..]).map_err(|e| FrameError::Decode(e.to_string()))?;
    let body = frame
        .body
        .ok_or_else(|| FrameError::Decode("empty frame".into()))?;
    Ok((frame.group_id, body))
}

/// A Raft message as a frame body. `None` for `InstallSnapshot`, which is no
/// frame: the node hands it to [`PeerLink::send_snapshot`](super::PeerLink::send_snapshot),
/// which streams the snapshot as `SnapshotChunk`s.
pub fn message_to_body(msg: Message) -> Option<Body> {
    Some(match msg {
        Message::RequestVote(m) => Body::RequestVote(m),
        Message::RequestVoteResponse(m) => Body::RequestVoteResponse(m),
        Message::AppendEntries(m) => Body::AppendEntries(m),
        Message::AppendEntriesResponse(m) => Body::AppendEntriesResponse(m),
        Message::ReadIndexRequest(m) => Body::ReadIndexRequest(m),
        Message::ReadIndexResponse(m) => Body::ReadIndexResponse(m),
        Message::TimeoutNow(m) => Body::TimeoutNow(m),
        Message::InstallSnapshot(_) => return None,
    })
}

/// The Raft message in a frame body, if it holds one. Never `InstallSnapshot`:
/// a `SnapshotChunk` is handed back like every other non-Raft body.
pub fn body_to_message(body: Body) -> Result<Message, Body> {
    Ok(match body {
        Body::RequestVote(m) => Message::RequestVote(m),
        Body::RequestVoteResponse(m) => Message::RequestVoteResponse(m),
        Body::AppendEntries(m) => Message::AppendEntries(m),
        Body::AppendEntriesResponse(m) => Message::AppendEntriesResponse(m),
        Body::ReadIndexRequest(m) => Message::ReadIndexRequest(m),
        Body::ReadIndexResponse(m) => Message::ReadIndexResponse(m),
        Body::TimeoutNow(m) => Message::TimeoutNow(m),
        other => return Err(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{command::Op, ClientRequest, Command, Ping, Put};

    fn request_with_value(len: usize) -> Body {
        Body::ClientRequest(ClientRequest {
            request_id: 1,
            command: Some(Command {
                op: Some(Op::Put(Put {
                    key: "k".into(),
                    value: bytes::Bytes::from(vec![0u8; len]),
                    lease: 0,
                })),
                session: None,
            }),
        })
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_frame(0, &Body::Ping(Ping {}), &mut buf).unwrap();
        let msg = Message::RequestVote(crate::wire::RequestVote {
            term: 3,
            ..Default::default()
        });
        encode_frame(0, &message_to_body(msg.clone()).unwrap(), &mut buf).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 1024).unwrap(), Body::Ping(Ping {}));
        assert_eq!(body_to_message(read_frame(&mut r, 1024).unwrap()).unwrap(), msg);
        assert!(matches!(read_frame(&mut r, 1024), Err(FrameError::Closed)));
    }

    #[test]
    fn install_snapshot_is_no_frame_and_a_chunk_is_no_message() {
        let install = Message::InstallSnapshot(crate::wire::InstallSnapshot {
            term: 2,
            ..Default::default()
        });
        assert_eq!(message_to_body(install), None);
        let chunk = Body::SnapshotChunk(Box::new(crate::wire::SnapshotChunk {
            seq: 4,
            ..Default::default()
        }));
        assert_eq!(body_to_message(chunk.clone()), Err(chunk));
    }

    #[test]
    fn the_encoding_is_a_frame_and_frame_len_is_exact() {
        let body = request_with_value(1000);
        for group in [0, 1, 300, u64::MAX] {
            let mut buf = Vec::new();
            encode_frame(group, &body, &mut buf).unwrap();
            assert_eq!(buf.len(), frame_len(group, &body));
            let frame = Frame {
                body: Some(body.clone()),
                group_id: group,
            };
            assert_eq!(&buf[4..], &frame.encode_to_vec()[..]);
            let read = read_group_frame(&mut &buf[..], MAX_FRAME_BYTES).unwrap();
            assert_eq!(read, (group, body.clone()));
        }
    }

    #[test]
    fn a_frame_over_the_cluster_limit_is_refused_not_truncated() {
        // 4 GiB + 10 bytes used to go out as a 10-byte length prefix; 64 MiB + 1 is already too much.
        let body = request_with_value(MAX_FRAME_BYTES + 1);
        let mut buf = vec![7u8];
        match encode_frame(0, &body, &mut buf) {
            Err(FrameError::TooLarge(len, MAX_FRAME_BYTES)) => assert!(len > MAX_FRAME_BYTES),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(buf, [7u8], "nothing is appended for a refused frame");
        assert!(write_frame(&mut Vec::new(), body).is_err());
    }

    #[test]
    fn the_largest_command_fits_the_limit() {
        let most = crate::options::MAX_KEY_BYTES + crate::options::MAX_VALUE_BYTES;
        let body = request_with_value(most);
        assert!(frame_len(u64::MAX, &body) <= MAX_FRAME_BYTES);
        let mut buf = Vec::new();
        encode_frame(u64::MAX, &body, &mut buf).unwrap();
        assert_eq!(read_frame(&mut &buf[..], MAX_FRAME_BYTES).unwrap(), body);
    }

    /// A node of an earlier version writes no group id: its frames are group 0's.
    #[test]
    fn a_frame_without_a_group_id_is_group_zero() {
        let body = Body::Ping(crate::wire::Ping {});
        let old = Frame {
            body: Some(body.clone()),
            group_id: 0,
        }
        .encode_to_vec();
        let mut buf = (old.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(&old);
        assert_eq!(read_group_frame(&mut &buf[..], 1024).unwrap(), (0, body));
    }

    #[test]
    fn oversized_frame_is_refused_before_allocation() {
        let mut r: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            read_frame(&mut r, 1 << 20),
            Err(FrameError::TooLarge(_, _))
        ));
    }

    #[test]
    fn garbage_frame_is_a_decode_error() {
        let mut r: &[u8] = &[0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(read_frame(&mut r, 1024), Err(FrameError::Decode(_))));
    }
}
