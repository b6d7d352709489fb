//! Error texts agent and hub agree on, where the agent acts on the error.

/// Start of the message of a commit refused because it references chunks
/// the hub does not hold. The agent then rereads its source instead of
/// trusting its journal's chunk lists.
pub const MISSING_CHUNKS: &str = "commit references missing chunks";
