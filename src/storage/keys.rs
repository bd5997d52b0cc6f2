//! Key layout of the log store.

use crate::error::{Error, Result};

/// Prefix of log entry keys; the index follows in big-endian so keys sort by index.
pub const ENTRY_PREFIX: &[u8] = b"e";
/// Prefix of every metadata key.
pub const META_PREFIX: &[u8] = b"m:";
pub const TERM: &[u8] = b"m:term";
pub const VOTE: &[u8] = b"m:vote";
pub const COMMIT: &[u8] = b"m:commit";
/// The latest configuration in the log and its index (a `ConfigState`).
pub const CONFIG: &[u8] = b"m:conf";
/// The last compacted entry: 16 bytes, its index then its term (big-endian).
pub const LOG_START: &[u8] = b"m:logstart";
/// The member list this node bootstrapped with, `,`-separated.
pub const BOOTSTRAP: &[u8] = b"m:bootstrap";

/// The key of the entry at `index`.
pub fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = ENTRY_PREFIX[0];
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The index encoded in an entry key.
pub fn index_of(key: &[u8]) -> Result<u64> {
    match key {
        [b'e', rest @ ..] if rest.len() == 8 => Ok(decode_u64(rest).expect("8 bytes")),
        _ => Err(Error::Corruption(format!("malformed log key {key:?}"))),
    }
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}
