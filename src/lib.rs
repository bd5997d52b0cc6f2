//! floyd: an embeddable Raft library — a replicated, durable, linearizable
//! key-value store inside your own process.
//!
//! ```text
//!  Floyd (floyd.rs) ── write/read ──► runtime::proposals ──► primary thread (NewCommand: group commit)
//!        │ follower? forward to leader over transport            │ core.propose → Ready
//!        ▼                                                       ▼
//!  transport (frames, handshake, server, peer links) ◄── peer workers ◄── core (pure Raft)
//!        │ responses → core.step                                 │ commit
//!        ▼                                                       ▼
//!  storage (RocksDB: log + meta)                     apply thread → state_machine (RocksDB KV)
//! ```
//!
//! The Raft algorithm lives in [`core`], a pure state machine with no threads,
//! clocks, sockets or disk; the threads in `runtime` drive it.
//!
//! With the default feature `jemalloc`, the program's Rust allocations (in a
//! C or C++ host, only libfloyd's own) come from jemalloc: a write's entry,
//! messages and completion are made on one thread and freed on another, which
//! glibc's malloc does slowly (async writes: 150-170k/s with it, 200-230k/s
//! with jemalloc, on 3 nodes of 2 cores). Its names are prefixed, so a host's
//! `malloc` and `free` stay its own. A Rust program with a global allocator
//! of its own turns the feature off (`default-features = false`).

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod core;
pub mod error;
pub mod ffi;
mod floyd;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod options;
mod runtime;
pub mod state_machine;
pub mod storage;
pub mod transport;

/// Messages on the wire and in the log, generated from `proto/floyd.proto`.
pub mod wire {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/floyd.wire.rs"));
    pub mod result;
}

pub use error::{Error, Result};
pub use floyd::{
    prefix_end, redis_command_reads, redis_commands, redis_glob, Branch, Cmp, Floyd, KeyValue, KvList,
    KvMeta, LeaseStatus, PeerStatus, RedisValue, ServerStatus, Txn, TxnResponse, STATUS_HEADER,
};
pub use logging::{LogCallback, LogLevel};
pub use options::{GroupOptions, HostOptions, Options, TlsFiles};
#[doc(hidden)]
pub use runtime::faults::Faults;
pub use runtime::host::{Host, PeerHost};
pub use state_machine::history::{EventKind, WatchEvent};
pub use state_machine::watch::WatchUpdate;
pub use state_machine::StateMachine;
