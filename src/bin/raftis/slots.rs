//! Redis Cluster's key space: 16,384 hash slots (CRC16 of the key, or of
//! its `{hash tag}`, modulo 16,384), split into contiguous ranges, one per
//! floyd group, and which arguments of a command are keys.

/// Redis Cluster's number of hash slots.
pub const SLOTS: usize = 16_384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), Redis Cluster's.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`: only its hash tag counts when it has one (the
/// bytes between the first `{` and the next `}`, if not empty), so keys
/// sharing a tag share a slot.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&c| c == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&c| c == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS as u16
}

/// The first slot of group `g` of `groups`: the groups split the slots
/// into `groups` contiguous ranges of near-equal size, in order.
pub fn first_slot(g: usize, groups: usize) -> usize {
    (g * SLOTS).div_ceil(groups)
}

/// The group holding `slot` (see [`first_slot`]).
pub fn group_of_slot(slot: u16, groups: usize) -> usize {
    usize::from(slot) * groups / SLOTS
}

/// Group `g`'s slots, first and last.
pub fn slot_range(g: usize, groups: usize) -> (usize, usize) {
    (first_slot(g, groups), first_slot(g + 1, groups) - 1)
}

/// The positions in `args` (`args[0]` the command's name, upper case in
/// `name`) of the keys the command touches; `None` for a command on no key
/// in particular (KEYS, SCAN, DBSIZE, FLUSHDB…), which runs on every group.
pub fn key_positions(name: &str, args: &[Vec<u8>]) -> Option<Vec<usize>> {
    let n = args.len();
    let positions = match name {
        "KEYS" | "SCAN" | "RANDOMKEY" | "DBSIZE" | "FLUSHDB" | "FLUSHALL" | "FLOYD.KEYSPACE" => return None,
        "MGET" | "EXISTS" | "TOUCH" | "DEL" | "UNLINK" | "SUNION" | "SINTER" | "SDIFF" | "SUNIONSTORE"
        | "SINTERSTORE" | "SDIFFSTORE" | "WATCH" => (1..n).collect(),
        "MSET" | "MSETNX" => (1..n).step_by(2).collect(),
        // The last argument is the timeout.
        "BLPOP" | "BRPOP" => (1..n.saturating_sub(1)).collect(),
        "RENAME" | "RENAMENX" | "COPY" | "LMOVE" | "RPOPLPUSH" | "SMOVE" | "BLMOVE" | "BRPOPLPUSH" => {
            (1..n.min(3)).collect()
        }
        // SINTERCARD numkeys key… [LIMIT n]
        "SINTERCARD" => {
            let count = args
                .get(1)
                .and_then(|c| std::str::from_utf8(c).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            (2..n.min(2 + count)).collect()
        }
        _ => (1..n.min(2)).collect(),
    };
    Some(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Values from Redis's CLUSTER KEYSLOT.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12182);
        assert_eq!(slot_of(b"bar"), 5061);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"{user1000}.followers"), slot_of(b"user1000"));
        // An empty tag, or no closing brace: the whole key.
        assert_eq!(slot_of(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384);
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(slot_of(b"foo{bar"), crc16(b"foo{bar") % 16384);
    }

    #[test]
    fn the_groups_split_every_slot_into_contiguous_ranges() {
        for groups in [1usize, 2, 3, 7, 8, 64, 1000] {
            let mut next = 0;
            for g in 0..groups {
                let (a, b) = slot_range(g, groups);
                assert_eq!(a, next, "{groups} groups: group {g} starts where the last ended");
                assert!(b >= a);
                for s in [a, b] {
                    assert_eq!(group_of_slot(s as u16, groups), g);
                }
                next = b + 1;
            }
            assert_eq!(next, SLOTS);
        }
    }

    #[test]
    fn the_keys_of_a_command_are_found_where_redis_puts_them() {
        let args = |s: &str| s.split(' ').map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(key_positions("GET", &args("GET k")), Some(vec![1]));
        assert_eq!(key_positions("MSET", &args("MSET a 1 b 2")), Some(vec![1, 3]));
        assert_eq!(key_positions("BLPOP", &args("BLPOP a b 0")), Some(vec![1, 2]));
        assert_eq!(
            key_positions("LMOVE", &args("LMOVE a b LEFT RIGHT")),
            Some(vec![1, 2])
        );
        assert_eq!(
            key_positions("SINTERCARD", &args("SINTERCARD 2 a b LIMIT 1")),
            Some(vec![2, 3])
        );
        assert_eq!(key_positions("DBSIZE", &args("DBSIZE")), None);
        assert_eq!(key_positions("PING", &args("PING")), Some(vec![]));
    }
}
