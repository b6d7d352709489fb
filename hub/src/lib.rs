//! Ferry hub: namespace, catalog, pack storage and the services agents talk to.
//!
//! Storage layering, bottom up:
//! - [`pack`]: the pack file format (opaque ciphertext blobs plus an index).
//! - [`blobstore`]: where pack objects live (a local directory or an S3 bucket).
//! - [`catalog`]: the index over the pools plus the namespace and the journal.
//! - [`packer`]: group commit of uploaded blobs into durable, catalogued packs.
//! - [`fetch`]: blobs read back for restores, neighbours in one ranged read.
//! - [`listener`]: the accept loop: connection caps, TLS, the authentication deadline.
//! - [`stored_filter`]: which blob ids are surely new, before the catalog is asked.

pub mod admin;
pub mod blobstore;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod lag;
pub mod listener;
pub mod pack;
pub mod packer;
pub mod policy;
pub mod records;
pub mod recover;
pub mod retention;
pub mod server;
pub mod service;
pub mod stored_filter;
