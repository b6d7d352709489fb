//! Ferry's policy model, parser and evaluator. Pure: no I/O, network or
//! clock of its own — callers pass the text and the current time in.
//!
//! So far: snapshot retention (keep-last, hourly … yearly, keep-within),
//! evaluated the way restic's `forget` does, so operators meet no surprises.

pub mod retention;

pub use retention::{Decision, PolicyError, Retention, SnapshotRef, parse_retention};
