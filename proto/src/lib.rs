//! Ferry's gRPC services and the byte formats agent and hub share.

pub mod auth;
pub mod chain;
pub mod ids;
pub mod manifest;
pub mod status;
pub mod transport;
pub mod verified;

pub use ids::{BadId, BlobId, BlobKind, FLAG_ZSTD, ID_LEN};

/// Generated protobuf and gRPC code for package `ferry.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ferry.v1");
}
