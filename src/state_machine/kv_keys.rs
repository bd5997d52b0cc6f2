//! Key layout of the built-in key-value store, per group: one RocksDB holds
//! the state of every group of a host.
//!
//! Group 0 (the one group of a node opened on its own) keeps the keys of
//! stores from before groups, so those open as they are: `d` + user key for
//! data, `k` + user key for its revisions (protocol 6), `l` + name for
//! locks, `m:applied`, `m:time`, `m:stamp`, `m:rev`. Every other
//! group's keys are the same behind `G` + its id (big-endian), so each
//! group's state is one range of keys.

use crate::storage::GroupId;

const GROUP_PREFIX: u8 = b'G';
const DATA: u8 = b'd';
const LOCK: u8 = b'l';
/// A key's revisions (`revision.rs`), beside its value under `d`.
const META: u8 = b'k';
/// Leases (`lease.rs`): each lease's TTL and deadline, the leases by
/// deadline, and the keys attached to each.
const LEASE: u8 = b'e';
const EXPIRY: u8 = b'x';
const ATTACHED: u8 = b'a';
/// Recent changes, by revision, for watches (`history.rs`).
const HISTORY: u8 = b'h';
/// Client sessions (`session.rs`) and the answers each keeps.
const SESSION: u8 = b's';
const ANSWER: u8 = b'r';
/// Keys that expire (`expiry.rs`): each user key by its deadline.
const KEY_EXPIRY: u8 = b't';
/// Redis's hashes and lists (`typed.rs`): each such key's kind, and its items.
const REDIS_TYPE: u8 = b'y';
const REDIS_ITEM: u8 = b'f';

/// The keys of one group's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvKeys {
    group: GroupId,
    prefix: Vec<u8>,
}

impl KvKeys {
    pub fn of(group: GroupId) -> KvKeys {
        let prefix = match group {
            0 => Vec::new(),
            g => {
                let mut p = vec![GROUP_PREFIX];
                p.extend_from_slice(&g.to_be_bytes());
                p
            }
        };
        KvKeys { group, prefix }
    }

    fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let len = self.prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut k = Vec::with_capacity(len);
        k.extend_from_slice(&self.prefix);
        parts.iter().for_each(|p| k.extend_from_slice(p));
        k
    }

    /// The key of user key `key`'s value.
    pub fn data(&self, key: &[u8]) -> Vec<u8> {
        self.key(&[&[DATA], key])
    }

    /// The key of user key `key`'s revisions.
    pub fn meta(&self, key: &[u8]) -> Vec<u8> {
        self.key(&[&[META], key])
    }

    /// How long a data key's prefix is: a user key starts after it.
    pub fn data_prefix_len(&self) -> usize {
        self.prefix.len() + 1
    }

    /// The key of lock `name`'s state.
    pub fn lock(&self, name: &[u8]) -> Vec<u8> {
        self.key(&[&[LOCK], name])
    }

    /// The prefix of every lock's key.
    pub fn locks(&self) -> Vec<u8> {
        self.key(&[&[LOCK]])
    }

    /// The key of lease `id`'s TTL and deadline.
    pub fn lease(&self, id: u64) -> Vec<u8> {
        self.key(&[&[LEASE], &id.to_be_bytes()])
    }

    /// The prefix of every lease's key.
    pub fn leases(&self) -> Vec<u8> {
        self.key(&[&[LEASE]])
    }

    /// Lease `id` in the index of leases by deadline.
    pub fn expiry(&self, deadline: u64, id: u64) -> Vec<u8> {
        self.key(&[&[EXPIRY], &deadline.to_be_bytes(), &id.to_be_bytes()])
    }

    /// User key `key` in the index of expiring keys by deadline.
    pub fn key_expiry(&self, deadline: u64, key: &[u8]) -> Vec<u8> {
        self.key(&[&[KEY_EXPIRY], &deadline.to_be_bytes(), key])
    }

    /// The kind of user key `key` if it is a hash or a list.
    pub fn redis_type(&self, key: &[u8]) -> Vec<u8> {
        self.key(&[&[REDIS_TYPE], key])
    }

    /// The prefix of every kind record.
    pub fn redis_types(&self) -> Vec<u8> {
        self.key(&[&[REDIS_TYPE]])
    }

    /// The prefix of user key `key`'s items (its length first, so no
    /// other key's items start with it).
    pub fn redis_items(&self, key: &[u8]) -> Vec<u8> {
        let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
        self.key(&[&[REDIS_ITEM], &len.to_be_bytes(), key])
    }

    /// Item `sub` of user key `key` (a hash's field, a list's position).
    pub fn redis_item(&self, key: &[u8], sub: &[u8]) -> Vec<u8> {
        let mut k = self.redis_items(key);
        k.extend_from_slice(sub);
        k
    }

    /// The prefix of the index of expiring keys.
    pub fn key_expiries(&self) -> Vec<u8> {
        self.key(&[&[KEY_EXPIRY]])
    }

    /// User key `key` attached to lease `id`.
    pub fn attached(&self, id: u64, key: &[u8]) -> Vec<u8> {
        self.key(&[&[ATTACHED], &id.to_be_bytes(), key])
    }

    /// The prefix of the keys attached to lease `id`.
    pub fn attached_to(&self, id: u64) -> Vec<u8> {
        self.key(&[&[ATTACHED], &id.to_be_bytes()])
    }

    /// Change `sub` (its position) of revision `rev` in the history.
    pub fn history(&self, rev: u64, sub: u32) -> Vec<u8> {
        self.key(&[&[HISTORY], &rev.to_be_bytes(), &sub.to_be_bytes()])
    }

    /// Where revision `rev`'s changes start in the history.
    pub fn history_from(&self, rev: u64) -> Vec<u8> {
        self.key(&[&[HISTORY], &rev.to_be_bytes()])
    }

    /// The prefix of the history.
    pub fn history_prefix(&self) -> Vec<u8> {
        self.key(&[&[HISTORY]])
    }

    /// Client session `id`.
    pub fn session(&self, id: u64) -> Vec<u8> {
        self.key(&[&[SESSION], &id.to_be_bytes()])
    }

    /// The prefix of every session's key.
    pub fn sessions(&self) -> Vec<u8> {
        self.key(&[&[SESSION]])
    }

    /// The answer to command `seq` of session `id`.
    pub fn session_answer(&self, id: u64, seq: u64) -> Vec<u8> {
        self.key(&[&[ANSWER], &id.to_be_bytes(), &seq.to_be_bytes()])
    }

    /// The prefix of every session's answers.
    pub fn session_answers(&self) -> Vec<u8> {
        self.key(&[&[ANSWER]])
    }

    /// The `[start, end)` range of session `id`'s answers.
    pub fn session_answers_of(&self, id: u64) -> (Vec<u8>, Vec<u8>) {
        let start = self.key(&[&[ANSWER], &id.to_be_bytes()]);
        let end = match id.checked_add(1) {
            Some(next) => self.key(&[&[ANSWER], &next.to_be_bytes()]),
            None => self.key(&[&[ANSWER + 1]]),
        };
        (start, end)
    }

    /// The oldest revision the history still holds from.
    pub fn history_start(&self) -> Vec<u8> {
        self.key(&[b"m:hstart"])
    }

    /// The term of the last leases' promotion and the log's time at it.
    pub fn lease_promotion(&self) -> Vec<u8> {
        self.key(&[b"m:lpromo"])
    }

    pub fn applied(&self) -> Vec<u8> {
        self.key(&[b"m:applied"])
    }

    pub fn time(&self) -> Vec<u8> {
        self.key(&[b"m:time"])
    }

    pub fn stamp(&self) -> Vec<u8> {
        self.key(&[b"m:stamp"])
    }

    /// The group's revision (protocol 6).
    pub fn revision(&self) -> Vec<u8> {
        self.key(&[b"m:rev"])
    }

    /// Set once a key may exist without its revisions (`revision.rs`).
    pub fn legacy(&self) -> Vec<u8> {
        self.key(&[b"m:legacy"])
    }

    /// Every key of this group lies in one of these `[start, end)` ranges.
    pub fn ranges(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        if self.prefix.is_empty() {
            // `a…`, `d…`, `e…`, `f…`, `h…`, `k…`, `l…`, `m:…`, `r…`, `s…`, `t…`, `x…`, `y…`: apart from every
            // other group's `G…`.
            // In key order: an export writes them into one sorted file.
            return vec![
                (vec![ATTACHED], vec![ATTACHED + 1]),
                (vec![DATA], vec![DATA + 1]),
                (vec![LEASE], vec![LEASE + 1]),
                (vec![REDIS_ITEM], vec![REDIS_ITEM + 1]),
                (vec![HISTORY], vec![HISTORY + 1]),
                (vec![META], vec![META + 1]),
                (vec![LOCK], vec![LOCK + 1]),
                (b"m:".to_vec(), b"m;".to_vec()),
                (vec![ANSWER], vec![ANSWER + 1]),
                (vec![SESSION], vec![SESSION + 1]),
                (vec![KEY_EXPIRY], vec![KEY_EXPIRY + 1]),
                (vec![EXPIRY], vec![EXPIRY + 1]),
                (vec![REDIS_TYPE], vec![REDIS_TYPE + 1]),
            ];
        }
        let end = match self.group.checked_add(1) {
            Some(next) => KvKeys::of(next).prefix,
            None => vec![GROUP_PREFIX + 1],
        };
        vec![(self.prefix.clone(), end)]
    }

    /// Whether `key` is one of this group's.
    pub fn owns(&self, key: &[u8]) -> bool {
        self.ranges()
            .iter()
            .any(|(start, end)| key >= start.as_slice() && key < end.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_zero_keeps_the_keys_of_stores_from_before_groups() {
        let k = KvKeys::of(0);
        assert_eq!(k.data(b"x"), b"dx");
        assert_eq!(k.lock(b"x"), b"lx");
        assert_eq!(k.applied(), b"m:applied");
        assert!(k.owns(b"dx") && k.owns(b"m:time") && !k.owns(b"G\0\0\0\0\0\0\0\x01dx"));
        // Revisions: each key's under `k` and the group's `m:rev`, its own
        // too (exported, imported and deleted with the group).
        assert_eq!((k.meta(b"x"), k.revision()), (b"kx".to_vec(), b"m:rev".to_vec()));
        assert!(k.owns(&k.meta(b"x")) && k.owns(&k.revision()));
        // Leases too.
        for key in [
            k.lease(7),
            k.expiry(1, 7),
            k.attached(7, b"x"),
            k.lease_promotion(),
            k.session(7),
            k.session_answer(7, 1),
        ] {
            assert!(k.owns(&key), "{key:?}");
            assert!(!KvKeys::of(1).owns(&key));
        }
    }

    /// What the shared store's insert hints rely on: the first
    /// `INSERT_HINT_PREFIX_LEN` bytes of a group's key are its group and
    /// kind, the same for every key of that kind and different from any
    /// other kind's or group's.
    #[test]
    fn a_groups_keys_of_one_kind_share_one_insert_hint_prefix() {
        let n = crate::storage::INSERT_HINT_PREFIX_LEN;
        let (a, b) = (KvKeys::of(1), KvKeys::of(256));
        let prefix = |k: Vec<u8>| k[..n].to_vec();
        assert_eq!(prefix(a.data(b"x")), prefix(a.data(b"another key")));
        assert_eq!(prefix(a.history(5, 0)), prefix(a.history(1 << 40, 3)));
        assert_eq!(prefix(a.session_answer(7, 1)), prefix(a.session_answer(9, 2)));
        assert_eq!(prefix(a.applied()), prefix(a.revision()));
        let kinds = [
            a.data(b"x"),
            a.meta(b"x"),
            a.history(5, 0),
            a.session(7),
            a.session_answer(7, 1),
        ];
        let mut distinct: Vec<_> = kinds.iter().map(|k| prefix(k.clone())).collect();
        distinct.dedup();
        assert_eq!(distinct.len(), kinds.len());
        assert_ne!(prefix(a.data(b"x")), prefix(b.data(b"x")));
    }

    #[test]
    fn each_other_group_is_one_range_apart_from_the_rest() {
        let (a, b) = (KvKeys::of(1), KvKeys::of(256));
        assert!(a.owns(&a.data(b"k")) && a.owns(&a.applied()) && a.owns(&a.lock(b"")));
        assert!(a.owns(&a.meta(b"k")) && a.owns(&a.revision()) && !b.owns(&a.meta(b"k")));
        assert!(!a.owns(&b.data(b"k")) && !b.owns(&a.data(b"k")));
        assert!(!a.owns(&KvKeys::of(0).data(b"k")) && !KvKeys::of(0).owns(&a.data(b"k")));
        let last = KvKeys::of(u64::MAX);
        assert!(last.owns(&last.data(&[0xff; 8])));
        assert_eq!(KvKeys::of(255).ranges()[0].1, KvKeys::of(256).ranges()[0].0);
        let zero = KvKeys::of(0).ranges();
        assert!(
            zero.windows(2).all(|w| w[0].1 <= w[1].0),
            "group 0's ranges in key order"
        );
    }
}
