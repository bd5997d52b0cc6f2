//! RocksDB memory, shared by every store in the process: one block cache and
//! one memtable budget for all nodes' log stores and state machines, so the
//! memory RocksDB takes is bounded per process, not per database (each
//! database on its own would keep up to two 64 MiB memtables: with three
//! nodes in one process, six databases, 768 MiB).

use rocksdb::{BlockBasedOptions, Cache, Options as DbOptions, WriteBufferManager};
use std::sync::OnceLock;

/// Memtables of every database in the process together: past it, the
/// largest memtables are flushed.
pub const MEMTABLE_BUDGET_BYTES: usize = 64 << 20;
/// The block cache shared by every database in the process (data, index and
/// filter blocks).
pub const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// How much a flush or compaction writes before syncing what it wrote.
const BACKGROUND_SYNC_BYTES: u64 = 1 << 20;
/// One memtable of one database: small enough that many databases stay
/// within the budget without stalling.
const WRITE_BUFFER_BYTES: usize = 8 << 20;

struct Shared {
    cache: Cache,
    memtables: WriteBufferManager,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        without_leak_checks(|| Shared {
            cache: Cache::new_lru_cache(BLOCK_CACHE_BYTES),
            memtables: WriteBufferManager::new_write_buffer_manager(MEMTABLE_BUDGET_BYTES, false),
        })
    })
}

/// Runs `f` with LeakSanitizer's checks paused on this thread, if the host
/// program runs it. The shared cache and memtable budget live as long as the
/// process, on purpose; with the `jemalloc` feature the only pointers to them
/// are in floyd's own heap, which LeakSanitizer does not scan, so a C or C++
/// host built with `-fsanitize=address` would report them at exit.
fn without_leak_checks<T>(f: impl FnOnce() -> T) -> T {
    type Toggle = unsafe extern "C" fn();
    // SAFETY: dlsym with RTLD_DEFAULT only looks names up; both are
    // `void (void)` in LeakSanitizer's interface when they exist.
    let find = |name: &std::ffi::CStr| unsafe {
        let p = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        (!p.is_null()).then(|| std::mem::transmute::<*mut libc::c_void, Toggle>(p))
    };
    let (Some(disable), Some(enable)) = (find(c"__lsan_disable"), find(c"__lsan_enable")) else {
        return f();
    };
    struct Enable(Toggle);
    impl Drop for Enable {
        fn drop(&mut self) {
            // SAFETY: LeakSanitizer's own function, paired with the disable below.
            unsafe { (self.0)() }
        }
    }
    // SAFETY: as above.
    unsafe { disable() };
    let _enable = Enable(enable);
    f()
}

/// Options for a floyd database (log store or state machine): created if
/// missing, checked paranoidly, sharing the process's memory budget.
pub(crate) fn db_options() -> DbOptions {
    options_with(|_| {})
}

/// Options for the key-value store: as [`db_options`], and its table files
/// carry bloom filters (10 bits a key, ~1% false positives). Applying a
/// write looks up the key's revisions and, for a key without them, whether
/// it exists: on a new key both miss, and without filters a miss reads an
/// index block of every table file and searched the memtable's skiplist
/// (measured: writes of new keys at 20 writers lost 7-24% to those lookups).
pub(crate) fn kv_options() -> DbOptions {
    let mut opts = options_with(|table| {
        table.set_bloom_filter(10.0, false);
        partitioned_filters_and_index(table);
    });
    // And so does the memtable (2% of it): a miss there was a full
    // skiplist search, the largest cost of those lookups.
    opts.set_memtable_whole_key_filtering(true);
    opts.set_memtable_prefix_bloom_ratio(0.02);
    opts
}

/// A table file's filter and index in 4 KiB partitions, under a top level
/// kept pinned in the block cache (with L0 files' whole), instead of one
/// block each. Every write looks a key's revisions up, and for a new key that
/// asks each table file's filter: a file's filter as one block grows with
/// the file (10 bits a key: ~375 KiB at 300,000 keys), larger than a shard
/// of the shared cache (512 KiB, shared with everything else), so it was
/// read back from the file and its checksum verified on nearly every lookup
/// (at 300,000 async writes, nine tenths of the apply threads' time).
fn partitioned_filters_and_index(table: &mut BlockBasedOptions) {
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
}

fn options_with(table_options: impl FnOnce(&mut BlockBasedOptions)) -> DbOptions {
    let s = shared();
    let mut opts = DbOptions::default();
    opts.create_if_missing(true);
    opts.set_paranoid_checks(true);
    opts.set_keep_log_file_num(4);
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
    opts.set_max_write_buffer_number(3);
    // A flush or compaction writes its files out a MiB at a time instead of
    // leaving megabytes dirty: on ext4 a log's fdatasync otherwise waits for
    // that data to reach the disk too (measured: 20 writers of 4 KiB, p99
    // 23-27 ms -> 12-14 ms and +15% writes/s).
    opts.set_bytes_per_sync(BACKGROUND_SYNC_BYTES);
    opts.set_write_buffer_manager(&s.memtables);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&s.cache);
    table.set_cache_index_and_filter_blocks(true);
    table_options(&mut table);
    opts.set_block_based_table_factory(&table);
    opts
}

/// Options for the log store's column families: as [`db_options`], and the
/// memtable keeps an insert position per group, so a group's next entry or
/// commit index goes in next to its last instead of being searched for from
/// the top: with many groups writing, their keys interleave in every write,
/// and those searches were a sixth of the log writer's time.
///
/// The position is kept per 10-byte key prefix: `g`, the group id and the
/// index's top byte (0 below 2^56) for a group's entries; `g`, the id and
/// `:` for its metadata. Group 0's entry keys (`e` + index, 9 bytes) are
/// shorter, so they are inserted as before (one group gains nothing from a
/// hint, and a prefix per key would cost a map entry each); its metadata
/// keys make two prefixes at most.
pub(crate) fn log_options() -> crate::error::Result<DbOptions> {
    with_insert_hints(db_options(), "log store")
}

/// Options for the key-value store a host's groups share: as
/// [`kv_options`], and its memtable keeps an insert position per group and
/// kind of key (`G`, the group id, the kind: 10 bytes, `kv_keys.rs`).
/// Applying a write inserts a group's history record, its progress and its
/// client session's answer beside the ones before them; searched for from
/// the top of a skiplist that every group's keys interleave in, those
/// inserts were a quarter of the apply workers' time with 64 groups
/// (`BENCHMARKS.md`). A user key's value goes in from its group's last one
/// (a search from there up as far as needed). Group 0's keys, which have no
/// group prefix (a host upgraded from one group), make a hint per distinct
/// first 10 bytes, counted in the memtable's size; a private store, which
/// holds only group 0, goes without ([`kv_options`]).
pub(crate) fn shared_kv_options() -> crate::error::Result<DbOptions> {
    with_insert_hints(kv_options(), "shared key-value store")
}

/// `base` with the memtable's insert hints per [`INSERT_HINT_PREFIX_LEN`]-byte
/// prefix.
///
/// [`INSERT_HINT_PREFIX_LEN`]: super::INSERT_HINT_PREFIX_LEN
fn with_insert_hints(mut base: DbOptions, what: &str) -> crate::error::Result<DbOptions> {
    let prefix = super::INSERT_HINT_PREFIX_LEN;
    base.get_options_from_string(format!(
        "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.{prefix}"
    ))
    .map_err(|e| crate::error::Error::Internal(format!("{what} options: {e}")))
}
