//! Length-prefixed frames: a 4-byte big-endian length, then one encoded `Frame`.
//! The length is checked against a maximum before anything is allocated.

use crate::core::Message;
use crate::wire::{frame::Body, Frame};
use prost::Message as _;
use std::io::{self, Read, Write};

/// Why a frame could not be read.
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

/// Appends one frame to `buf` (several frames can then go out in one write).
pub fn encode_frame(body: Body, buf: &mut Vec<u8>) {
    let frame = Frame { body: Some(body) };
    let len = frame.encoded_len();
    buf.reserve(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    frame.encode(buf).expect("Vec grows as needed");
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, body: Body) -> io::Result<()> {
    let mut buf = Vec::new();
    encode_frame(body, &mut buf);
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame of at most `max_len` bytes.
pub fn read_frame(r: &mut impl Read, max_len: usize) -> Result<Body, FrameError> {
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
    frame.body.ok_or_else(|| FrameError::Decode("empty frame".into()))
}

/// A Raft message as a frame body.
pub fn message_to_body(msg: Message) -> Body {
    match msg {
        Message::RequestVote(m) => Body::RequestVote(m),
        Message::RequestVoteResponse(m) => Body::RequestVoteResponse(m),
        Message::AppendEntries(m) => Body::AppendEntries(m),
        Message::AppendEntriesResponse(m) => Body::AppendEntriesResponse(m),
    }
}

/// The Raft message in a frame body, if it holds one.
pub fn body_to_message(body: Body) -> Result<Message, Body> {
    Ok(match body {
        Body::RequestVote(m) => Message::RequestVote(m),
        Body::RequestVoteResponse(m) => Message::RequestVoteResponse(m),
        Body::AppendEntries(m) => Message::AppendEntries(m),
        Body::AppendEntriesResponse(m) => Message::AppendEntriesResponse(m),
        other => return Err(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ping;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        encode_frame(Body::Ping(Ping {}), &mut buf);
        let msg = Message::RequestVote(crate::wire::RequestVote {
            term: 3,
            ..Default::default()
        });
        encode_frame(message_to_body(msg.clone()), &mut buf);
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r, 1024).unwrap(), Body::Ping(Ping {}));
        assert_eq!(body_to_message(read_frame(&mut r, 1024).unwrap()).unwrap(), msg);
        assert!(matches!(read_frame(&mut r, 1024), Err(FrameError::Closed)));
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
