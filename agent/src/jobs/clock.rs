//! The time jobs are scheduled by. The daemon reads the system clock;
//! tests run the same loops on tokio's paused clock, where a sleep ends
//! as soon as nothing else can run and a day passes in milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest single sleep: a wall clock set forward or back meanwhile
/// (NTP, an operator) is noticed within this, not after a day's sleep.
const MAX_NAP: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    /// `start_utc` at tokio's `start`, moving as tokio's clock moves.
    Tokio {
        start_utc: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock reading `at` now and following tokio's time from here on
    /// (paused in tests).
    pub fn tokio_at(at: DateTime<Utc>) -> Self {
        Self::Tokio {
            start_utc: at,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Self::System => Utc::now(),
            Self::Tokio { start_utc, start } => {
                let passed =
                    chrono::TimeDelta::from_std(start.elapsed()).unwrap_or(chrono::TimeDelta::MAX);
                start_utc
                    .checked_add_signed(passed)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }

    /// Sleeps until `at`, or for [`MAX_NAP`] if that comes first: callers
    /// loop, reading the clock again.
    pub async fn nap_until(&self, at: DateTime<Utc>) {
        let left = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(left.min(MAX_NAP)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_follows_paused_time() {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 29, 0, 59, 0)
            .single()
            .unwrap_or_default();
        let clock = Clock::tokio_at(at);
        assert_eq!(clock.now(), at);
        let target = at + chrono::TimeDelta::hours(2);
        while clock.now() < target {
            clock.nap_until(target).await;
        }
        // Naps are capped, but never overshoot the target.
        assert_eq!(clock.now(), target);
    }
}
