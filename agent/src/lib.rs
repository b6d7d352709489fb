//! Ferry agent: protects sources (directories and S3 buckets) by
//! chunking, deduplicating, encrypting and shipping them to a hub, and
//! restores them.

pub mod backup;
pub mod blob_codec;
pub mod chain;
pub mod chunker;
pub mod cli;
pub mod client;
pub mod compressibility;
pub mod config;
pub mod daemon;
pub mod events;
pub mod hooks;
pub mod hub_link;
pub mod jobs;
pub mod journal;
pub mod owners;
pub mod prefetch;
pub mod progress;
pub mod replica;
pub mod restore;
pub mod restore_bucket;
pub mod restore_check;
pub mod restore_dir;
pub mod restore_durable;
pub mod source;
pub mod sparse;
#[cfg(test)]
mod test_bytes;
pub mod verified;
pub mod watch;
pub mod xattrs;
