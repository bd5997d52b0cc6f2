//! RocksDB storage of the Raft log and metadata.
