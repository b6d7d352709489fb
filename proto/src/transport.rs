//! HTTP/2 settings both ends use. Chunks travel in multi-megabyte messages;
//! h2's default 64 KiB flow-control windows would stall every stream on
//! window updates, so both sides open wider windows.

/// Largest gRPC message either side accepts: a batch of blobs or a fetch reply.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Per-stream flow-control window.
pub const STREAM_WINDOW: u32 = 8 << 20;
/// Per-connection flow-control window (shared by all streams).
pub const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 frame (the protocol maximum is 16 MiB - 1).
pub const MAX_FRAME: u32 = 1 << 20;
