//! Maps keyed by group id, hashed cheaply.
//!
//! The log writer builds several such maps per batch (one entry per group
//! with something to write), and with 64 busy groups std's SipHash took a
//! sixth of that thread's time. Group ids are chosen by the embedding
//! program when it opens a group (never by a peer: a frame for a group the
//! host does not have is dropped before any map sees it), so a hash that
//! resists chosen keys buys nothing here; a multiply-and-rotate mixes the
//! id's bits well enough for hashbrown's buckets.

use crate::storage::GroupId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by group id.
pub type GroupMap<V> = HashMap<GroupId, V, BuildHasherDefault<GroupHasher>>;

/// Hashes a `u64` (a group id) in one multiplication.
#[derive(Default)]
pub struct GroupHasher(u64);

impl Hasher for GroupHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than u64 (none here); kept correct anyway.
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The golden-ratio multiplier (Fibonacci hashing) mixes upwards;
        // hashbrown takes its bucket from the low bits and its tag from the
        // top 7, so the high half is folded into the low one.
        let x = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_and_strided_ids_spread_over_the_buckets() {
        for stride in [1u64, 1 << 8, 1 << 32] {
            let mut low = std::collections::HashSet::new();
            let mut top = std::collections::HashSet::new();
            for i in 0..1024u64 {
                let mut h = GroupHasher::default();
                h.write_u64(i * stride);
                low.insert(h.finish() & 1023);
                top.insert(h.finish() >> 57);
            }
            assert!(
                low.len() > 600,
                "stride {stride}: {} of 1024 low buckets",
                low.len()
            );
            assert_eq!(top.len(), 128, "stride {stride}: tags");
        }
    }

    #[test]
    fn a_map_keyed_by_group_behaves_as_a_map() {
        let mut m: GroupMap<u64> = GroupMap::default();
        for g in 0..10_000u64 {
            m.insert(g * 7, g);
        }
        assert!((0..10_000u64).all(|g| m.get(&(g * 7)) == Some(&g)));
        assert_eq!(m.get(&1), None);
    }
}
