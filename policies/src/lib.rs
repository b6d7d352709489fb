//! Ferry's policy model, parser and evaluator. Pure: no I/O, network or
//! clock of its own — callers pass the files' text and the current time in,
//! so every rule is unit- and property-tested.
//!
//! - [`cron`] and [`schedule`]: when backups and drills run;
//! - [`retention`]: which snapshots a bucket keeps, and why;
//! - [`compliance`]: locks per retention class, governance or compliance mode;
//! - [`file`] and [`set`]: policy files, their errors (file:line:column),
//!   and the set applied to a hub, resolved per bucket and source.

pub mod compliance;
pub mod cron;
pub mod error;
pub mod file;
pub mod period;
pub mod retention;
pub mod schedule;
pub mod set;

pub use error::{Location, PolicyError, Reason};
pub use period::Period;
pub use retention::{Decision, Keep, Retention, SnapshotRef};
pub use schedule::{Next, Schedule};
