//! The headers of hashes and lists: a hash's field count, a list's two
//! ends (its elements sit at positions head..tail, the first push at the
//! middle of the u64 range so both ends have room).

use bytes::Bytes;

/// Where a new list's first element goes.
pub const MIDDLE: u64 = 1 << 63;

pub fn count_header(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

pub fn count_of(header: &[u8]) -> u64 {
    header
        .get(..8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
}

pub fn list_header(head: u64, tail: u64) -> Bytes {
    let mut h = head.to_be_bytes().to_vec();
    h.extend_from_slice(&tail.to_be_bytes());
    Bytes::from(h)
}

pub fn list_ends(header: &[u8]) -> (u64, u64) {
    let n = |i: usize| {
        header
            .get(i..i + 8)
            .map_or(MIDDLE, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")))
    };
    (n(0), n(8))
}

/// A list position as an item key (big-endian: items sort by position).
pub fn pos(p: u64) -> Bytes {
    Bytes::copy_from_slice(&p.to_be_bytes())
}
