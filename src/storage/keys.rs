//! Key layout of the log store, per group.
//!
//! Group 0 (the one group of a private host: `Floyd::open`) keeps the keys
//! of stores written before groups existed, so those open as they are:
//! entries under `e` + index, metadata under `m:` + name. Every other group
//! has its id after a `g`: entries under `g` + group + index, metadata
//! under `g` + group + `:` + name (numbers big-endian, so a group's entries
//! sort by index and each group's keys are one range).

use crate::error::{Error, Result};

/// A Raft group on a host.
pub type GroupId = u64;

/// The log store's memtables keep an insert position per this many first
/// bytes of a key (`memory::log_options`): one per group of its entries and
/// of its metadata; group 0's entry keys are shorter, and go without. A
/// host's shared key-value store does the same (`memory::shared_kv_options`):
/// `G`, the group id and the kind of key (`kv_keys.rs`).
pub const INSERT_HINT_PREFIX_LEN: usize = 10;

/// Prefix of group 0's entry keys; the index follows in big-endian.
pub const ENTRY_PREFIX: &[u8] = b"e";
/// Prefix of every key of a group other than 0; its id follows.
const GROUP_PREFIX: u8 = b'g';
/// Prefix of group 0's metadata keys (in the `meta` column family; among
/// the entries in stores from before it).
pub const META_PREFIX: &[u8] = b"m:";

/// What the metadata of a group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Term,
    Vote,
    Commit,
    /// The latest configuration in the log and its index (a `ConfigState`).
    Config,
    /// The last compacted entry: 16 bytes, its index then its term (big-endian).
    LogStart,
    /// The member list this node bootstrapped with, `,`-separated.
    Bootstrap,
}

impl Meta {
    fn name(self) -> &'static [u8] {
        match self {
            Meta::Term => b"term",
            Meta::Vote => b"vote",
            Meta::Commit => b"commit",
            Meta::Config => b"conf",
            Meta::LogStart => b"logstart",
            Meta::Bootstrap => b"bootstrap",
        }
    }
}

/// A key of at most 17 bytes, built without allocating.
#[derive(Clone, Copy)]
pub struct Key {
    buf: [u8; 17],
    len: u8,
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_ref())
    }
}

/// The prefix every entry key of `group` starts with.
pub fn entry_prefix(group: GroupId) -> Key {
    let mut key = Key { buf: [0; 17], len: 1 };
    if group == 0 {
        key.buf[0] = ENTRY_PREFIX[0];
    } else {
        key.buf[0] = GROUP_PREFIX;
        key.buf[1..9].copy_from_slice(&group.to_be_bytes());
        key.len = 9;
    }
    key
}

/// The key of `group`'s entry at `index`.
pub fn entry_key(group: GroupId, index: u64) -> Key {
    let mut key = entry_prefix(group);
    let at = usize::from(key.len);
    key.buf[at..at + 8].copy_from_slice(&index.to_be_bytes());
    key.len += 8;
    key
}

/// The key of `group`'s metadata `what`.
pub fn meta_key(group: GroupId, what: Meta) -> Vec<u8> {
    let mut key = Vec::with_capacity(20);
    if group == 0 {
        key.extend_from_slice(META_PREFIX);
    } else {
        key.push(GROUP_PREFIX);
        key.extend_from_slice(&group.to_be_bytes());
        key.push(b':');
    }
    key.extend_from_slice(what.name());
    key
}

/// The first key after every metadata key of `group`, for range deletes.
pub fn meta_end(group: GroupId) -> Vec<u8> {
    if group == 0 {
        return b"m;".to_vec();
    }
    let mut key = vec![GROUP_PREFIX];
    key.extend_from_slice(&group.to_be_bytes());
    key.push(b';');
    key
}

/// The start of `group`'s metadata keys.
pub fn meta_start(group: GroupId) -> Vec<u8> {
    let mut key = meta_key(group, Meta::Term);
    key.truncate(key.len() - Meta::Term.name().len());
    key
}

/// The index encoded in one of `group`'s entry keys.
pub fn index_of(group: GroupId, key: &[u8]) -> Result<u64> {
    let prefix = entry_prefix(group);
    match key.strip_prefix(prefix.as_ref()) {
        Some(rest) if rest.len() == 8 => Ok(decode_u64(rest).expect("8 bytes")),
        _ => Err(Error::Corruption(format!(
            "malformed log key {key:?} of group {group}"
        ))),
    }
}

/// The group a key of the log store (entry or metadata) belongs to.
pub fn group_of_key(key: &[u8]) -> Option<GroupId> {
    match key {
        [b'e', ..] => Some(0),
        [b'm', b':', ..] => Some(0),
        [b'g', rest @ ..] if rest.len() >= 8 => decode_u64(&rest[..8]),
        _ => None,
    }
}

/// Where the keys of the group `key` belongs to end, in `key`'s column
/// family: the first key after them (`None`: none can follow).
pub fn past_group_of(key: &[u8]) -> Option<Vec<u8>> {
    match key {
        [b'e', ..] => Some(b"f".to_vec()),
        [b'm', b':', ..] => Some(b"m;".to_vec()),
        [b'g', rest @ ..] if rest.len() >= 8 => {
            let next = decode_u64(&rest[..8])?.checked_add(1)?;
            let mut k = vec![GROUP_PREFIX];
            k.extend_from_slice(&next.to_be_bytes());
            Some(k)
        }
        _ => None,
    }
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the memtables' insert hints rely on: one hint prefix per group
    /// for its entries (any index below 2^56) and one for its metadata;
    /// none for group 0's entries.
    #[test]
    fn a_groups_keys_share_one_insert_hint_prefix_and_group_zeros_entries_have_none() {
        let n = INSERT_HINT_PREFIX_LEN;
        for g in [1u64, 7, u64::MAX - 1] {
            let entries: Vec<_> = [1u64, 2, 1 << 40, (1 << 56) - 1]
                .iter()
                .map(|i| entry_key(g, *i).as_ref()[..n].to_vec())
                .collect();
            assert!(entries.windows(2).all(|w| w[0] == w[1]), "group {g}");
            assert_ne!(
                entry_key(g, 1).as_ref()[..n],
                entry_key(g.wrapping_add(1).max(1), 1).as_ref()[..n]
            );
            let meta: Vec<_> = [Meta::Term, Meta::Vote, Meta::Commit, Meta::Config, Meta::LogStart]
                .iter()
                .map(|m| meta_key(g, *m)[..n].to_vec())
                .collect();
            assert!(meta.windows(2).all(|w| w[0] == w[1]), "group {g}");
        }
        assert!(entry_key(0, u64::MAX).as_ref().len() < n);
    }

    #[test]
    fn group_zero_keeps_the_keys_of_stores_from_before_groups() {
        assert_eq!(entry_key(0, 7).as_ref(), [b'e', 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(meta_key(0, Meta::Term), b"m:term");
        assert_eq!(meta_key(0, Meta::LogStart), b"m:logstart");
        assert_eq!(meta_key(0, Meta::Bootstrap), b"m:bootstrap");
    }

    #[test]
    fn each_group_is_one_range_of_keys_sorted_by_index() {
        let (a, b) = (entry_key(5, 1), entry_key(5, 256));
        assert!(a.as_ref() < b.as_ref());
        assert!(entry_key(5, u64::MAX).as_ref() < entry_key(6, 0).as_ref());
        assert!(entry_key(0, u64::MAX).as_ref() < entry_key(1, 0).as_ref());
        assert_eq!(index_of(5, b.as_ref()).unwrap(), 256);
        assert!(index_of(6, b.as_ref()).is_err());
        assert_eq!(group_of_key(b.as_ref()), Some(5));
        assert_eq!(group_of_key(entry_key(0, 3).as_ref()), Some(0));
        assert_eq!(group_of_key(&meta_key(7, Meta::Vote)), Some(7));
        assert_eq!(past_group_of(b.as_ref()).unwrap(), entry_prefix(6).as_ref());
        for g in [0, 5, u64::MAX] {
            for what in [Meta::Term, Meta::Vote, Meta::Config, Meta::Bootstrap] {
                let k = meta_key(g, what);
                assert!(meta_start(g) <= k && k < meta_end(g), "{g} {what:?}");
            }
        }
        assert!(meta_end(5) <= meta_start(6));
    }
}
