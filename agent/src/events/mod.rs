//! S3 event notifications: what S3-compatible servers push when objects
//! change. [`parse`] reads their bodies, [`webhook`] takes them over HTTP,
//! [`queue`] keeps them durably until a snapshot takes them, and [`overlay`]
//! makes the source such a snapshot reads.
pub mod overlay;
pub mod parse;
pub mod queue;
pub mod webhook;
