//! Scheduled jobs: what the policy in force asks of this site's sources
//! (backup schedules, restore drills), learnt from the hub ([`plan`]); when
//! each runs ([`timer`], on a [`clock`] tests can drive); and what each job
//! last did ([`status`], read by `ferry-agent status`).

pub mod clock;
pub mod plan;
pub mod status;
pub mod timer;
