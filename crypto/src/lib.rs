//! Ferry's tenant keys and age-format encryption.
//!
//! - [`keyfile`]: the tenant key file (age X25519 identity, dedup key, chunker seed),
//!   in a private and a write-only variant.
//! - [`envelope`]: one age header per upload session, one age payload per chunk, so
//!   `header ‖ chunk` is a valid age file the stock `age` CLI decrypts.
//! - [`chunking`]: keyed chunk ids and the keyed FastCDC gear tables.
//!
//! Only the agent links this crate; the hub never holds a key.

pub mod chunking;
mod commit_mac;
pub mod envelope;
mod header;
pub mod keyfile;
mod safe_write;
mod stream;
mod verifier;

pub use envelope::{OpenError, SealError, SessionOpener, SessionSealer};
pub use keyfile::{KeyFileError, TenantKeys};
