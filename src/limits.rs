//! Every size limit of floyd in one place: what a key, a value, a frame, a
//! snapshot, a timer or a lock may be at most. Each bounds memory, disk or
//! arithmetic against a caller's mistake or a hostile peer; the modules
//! that enforce them re-export them where they were first defined.

use std::time::Duration;

// ---- what callers may ask for ----------------------------------------------

/// Largest key accepted (also a lock's name and holder).
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// Largest value accepted (also a user state machine's command).
pub const MAX_VALUE_BYTES: usize = 16 << 20;
/// Most comparisons, and most operations per branch, in one transaction
/// (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// Largest transaction, encoded: it travels in one log entry, as a value
/// does (a maximal single put still fits).
pub const MAX_TXN_BYTES: usize = MAX_VALUE_BYTES + 2 * MAX_KEY_BYTES;
/// Most bytes of keys and values one page of a range read returns; past it
/// the page ends early and says there is more.
pub const MAX_RANGE_PAGE_BYTES: usize = 32 << 20;
/// Longest lock lease: a day. A holder that needs longer renews.
pub const MAX_LOCK_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest lease TTL: a year. (Shortest: 2 × `check_leader_us`, the
/// longest an election takes on the randomized timer; shorter asks are
/// raised to it, as etcd does.)
pub const MAX_LEASE_TTL_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Most leases one keep-alive entry renews: the handle batches the
/// keep-alives of all its callers into entries of at most this many.
pub const MAX_KEEPALIVE_IDS: usize = 16_384;
/// Redis commands in one batch (a MULTI/EXEC): one log entry.
pub const MAX_REDIS_CALLS: usize = 16_384;
/// Most leases one entry expires (each deletes its keys); a group with more
/// due expires the rest in the next entries, which its leader proposes at
/// once when the group is otherwise idle.
pub const MAX_LEASES_EXPIRED_PER_ENTRY: usize = 1_000;
/// Most leases one entry moves to a later deadline after a new leader
/// extended them (each move is an index update, far cheaper than an expiry).
pub const MAX_LEASES_MOVED_PER_ENTRY: usize = 10_000;
/// A client session's life without a command, in the log's time, unless
/// `session_timeout` says otherwise; and the shortest and longest it may be.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(60 * 60);
pub const MIN_SESSION_TTL_MS: u64 = 1_000;
pub const MAX_SESSION_TTL_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Most client sessions a group keeps: registering one more forgets the
/// least recently active (on every replica alike: the choice is made in
/// apply). A handle is one session per group, so this is a cap against
/// leaks (handles opened and dropped in a loop), not a working limit.
pub const MAX_SESSIONS: usize = 10_000;
/// Most answers one session keeps for commands its client has not yet
/// acknowledged (twice the default `max_async_in_flight`); past it the
/// oldest is forgotten, and a retry of that command is answered `Timeout`
/// (outcome unknown), never applied again.
pub const MAX_SESSION_ANSWERS: usize = 200_000;
/// Most sessions one entry expires; the next entries take the rest.
pub const MAX_SESSIONS_EXPIRED_PER_ENTRY: usize = 1_000;
/// Largest `request_timeout` and `leader_wait`: beyond it, deadlines computed
/// as `now + timeout` could overflow the clock.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Largest `heartbeat_us` and `check_leader_us` (one hour): the runtime
/// multiplies them, and a longer election timeout is no failure detection at all.
pub const MAX_TIMER_US: u64 = 3_600_000_000;
/// Most rotated LOG files kept: each rotation renames every one of them.
pub const MAX_LOG_KEEP_FILES: u32 = 1000;

// ---- what crosses the wire --------------------------------------------------

/// Largest encoded `Frame` (without its 4-byte length prefix) on the wire, on
/// every node. It must hold one maximal command (a 64 KiB key and a 16 MiB
/// value) and one AppendEntries of `append_entries_size_once` bytes of
/// entries plus their framing; `Options::validate` keeps the latter below it.
/// Changing it is a wire-protocol change: bump `PROTOCOL_VERSION`.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Largest term or index accepted from the wire. Honest clusters never get
/// near it (2^62 elections, or entries at a million a second for 146,000
/// years), and everything computed from it (`term + 1`, `index + n`) fits in
/// a u64.
pub const MAX_WIRE_VALUE: u64 = 1 << 62;
/// Default data bytes per snapshot chunk.
pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest data bytes per snapshot chunk: far below [`MAX_FRAME_BYTES`], so
/// a chunk never blocks a peer worker (and the heartbeats behind it) for long.
pub const MAX_SNAPSHOT_CHUNK_BYTES: usize = 8 << 20;
/// Largest snapshot a follower accepts (a bound on disk use against a bad
/// peer; the state machine's own size is the real limit).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 40;
/// Connections a node serves at once; more are refused so that a flood
/// cannot exhaust its threads.
pub const MAX_CONNECTIONS: usize = 256;

// ---- what floyd keeps -------------------------------------------------------

/// The write-ahead log of the log store kept at most (RocksDB flushes the
/// column families that hold its oldest file past it). The metadata's
/// memtable takes a few bytes per batch and would otherwise pin every WAL
/// file, entries and all, until it filled.
pub const MAX_WAL_BYTES: u64 = 32 << 20;

// The cap on append_entries_size_once (half a frame) leaves room for one
// maximal command past it; checked when compiling.
const _: () = assert!(MAX_FRAME_BYTES / 2 + MAX_KEY_BYTES + MAX_VALUE_BYTES < MAX_FRAME_BYTES);
