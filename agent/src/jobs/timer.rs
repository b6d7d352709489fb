//! One scheduled job's loop: wait for the next slot of its schedules, run
//! it, repeat. Slots missed while the agent was down, or while the last
//! run took longer than the gap between slots, make one run, not one per
//! slot; a run that fails is retried with backoff until it succeeds, and
//! counts for every slot that passed meanwhile. Runs of one job are one
//! after another in this loop, so they never overlap.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_policies::Schedule;
use ferry_policies::schedule::{Next, next_run};
use tokio::sync::watch;

use super::clock::Clock;
use super::plan::Plan;

/// Longest wait between attempts of a failing run.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why [`on_schedule`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop.
    Stopped,
    /// The plan changed this job's schedules (or took them away).
    Replanned,
}

/// What the loop tells its caller besides running the job.
pub trait Job {
    /// Runs the job once, started at `at`; true if it succeeded.
    fn run(&mut self, at: DateTime<Utc>) -> impl Future<Output = bool> + Send;
    /// The next run is due at `at` (`None`: now).
    fn next(&mut self, at: Option<DateTime<Utc>>);
}

/// Runs `job` on the schedules `pick` takes from the plan, until `stop`
/// turns true or the plan gives other schedules. `last_ok`: when the last
/// successful run started (slots up to it are done); `None` means the
/// first slot from now on.
pub async fn on_schedule(
    clock: Clock,
    plan: &mut watch::Receiver<Arc<Plan>>,
    pick: impl Fn(&Plan) -> Vec<Schedule>,
    last_ok: Option<DateTime<Utc>>,
    job: &mut impl Job,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let schedules = pick(&plan.borrow_and_update());
    let mut done = last_ok.unwrap_or_else(|| clock.now());
    let mut backoff = Duration::from_secs(1);
    let mut plan_open = true;
    loop {
        if *stop.borrow() {
            return Ended::Stopped;
        }
        let now = clock.now();
        let wake_at = match next_run(&schedules, Some(done), now) {
            None => return Ended::Replanned,
            Some(Next::Now) => {
                job.next(None);
                if job.run(now).await {
                    done = now;
                    backoff = Duration::from_secs(1);
                    continue;
                }
                let retry = chrono::TimeDelta::from_std(backoff).unwrap_or_default();
                backoff = (backoff * 2).min(MAX_BACKOFF);
                now + retry
            }
            Some(Next::At(at)) => {
                job.next(Some(at));
                at
            }
        };
        while clock.now() < wake_at {
            tokio::select! {
                () = clock.nap_until(wake_at) => {}
                _ = stop.changed() => return Ended::Stopped,
                changed = plan.changed(), if plan_open => match changed {
                    Ok(()) if pick(&plan.borrow_and_update()) != schedules => {
                        return Ended::Replanned;
                    }
                    Ok(()) => {}
                    // A plan sender gone (the daemon stopping) changes nothing.
                    Err(_) => plan_open = false,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use ferry_policies::cron::Cron;

    /// Records when it ran; each run takes `takes` and fails while
    /// `failures` last.
    struct Recorder {
        clock: Clock,
        takes: Duration,
        failures: usize,
        runs: Vec<(DateTime<Utc>, DateTime<Utc>)>,
        stop_after: usize,
        stop: watch::Sender<bool>,
    }

    impl Job for Recorder {
        async fn run(&mut self, at: DateTime<Utc>) -> bool {
            tokio::time::sleep(self.takes).await;
            self.runs.push((at, self.clock.now()));
            if self.runs.len() >= self.stop_after {
                let _ = self.stop.send(true);
            }
            if self.failures > 0 {
                self.failures -= 1;
                return false;
            }
            true
        }

        fn next(&mut self, _at: Option<DateTime<Utc>>) {}
    }

    fn at(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, m, s)
            .single()
            .unwrap_or_default()
    }

    fn plan_of(expr: &str) -> Arc<Plan> {
        let mut plan = Plan::default();
        let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{e:?}"));
        plan.sources.insert(
            "docs".into(),
            super::super::plan::SourcePlan {
                schedules: vec![Schedule {
                    cron,
                    zone: chrono_tz::Tz::UTC,
                }],
                drill: None,
            },
        );
        Arc::new(plan)
    }

    fn pick(plan: &Plan) -> Vec<Schedule> {
        plan.schedules_of("docs").to_vec()
    }

    async fn drive(
        expr: &str,
        start: DateTime<Utc>,
        last_ok: Option<DateTime<Utc>>,
        takes: Duration,
        failures: usize,
        stop_after: usize,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let clock = Clock::tokio_at(start);
        let (stop_tx, mut stop) = watch::channel(false);
        let (_plan_tx, mut plan) = watch::channel(plan_of(expr));
        let mut job = Recorder {
            clock,
            takes,
            failures,
            runs: Vec::new(),
            stop_after,
            stop: stop_tx,
        };
        let ended = on_schedule(clock, &mut plan, pick, last_ok, &mut job, &mut stop).await;
        assert_eq!(ended, Ended::Stopped);
        job.runs
    }

    #[tokio::test(start_paused = true)]
    async fn runs_come_at_their_slots() {
        let runs = drive(
            "*/15 * * * *",
            at(7, 9, 7, 0),
            None,
            Duration::from_secs(5),
            0,
            3,
        )
        .await;
        let starts: Vec<_> = runs.iter().map(|r| r.0).collect();
        assert_eq!(starts, [at(7, 9, 15, 0), at(7, 9, 30, 0), at(7, 9, 45, 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn slots_missed_while_down_make_one_run_at_start() {
        // Last ran at 03:00; started again at 09:20 with six slots missed.
        let runs = drive(
            "0 * * * *",
            at(7, 9, 20, 0),
            Some(at(7, 3, 0, 0)),
            Duration::from_secs(5),
            0,
            2,
        )
        .await;
        let starts: Vec<_> = runs.iter().map(|r| r.0).collect();
        assert_eq!(starts, [at(7, 9, 20, 0), at(7, 10, 0, 0)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_longer_than_the_gap_never_overlaps_and_missed_slots_make_one_run() {
        // Every minute, each run 150 s: each starts only after the last ended,
        // and the slots it overran make one run straight after.
        let runs = drive(
            "* * * * *",
            at(7, 9, 0, 30),
            None,
            Duration::from_secs(150),
            0,
            4,
        )
        .await;
        for pair in runs.windows(2) {
            assert!(pair[1].0 >= pair[0].1, "overlap: {pair:?}");
            assert_eq!(pair[1].0, pair[0].1, "the missed slots run at once");
        }
        assert_eq!(runs[0].0, at(7, 9, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_run_is_retried_with_backoff_and_covers_the_slots_meanwhile() {
        let runs = drive("0 * * * *", at(7, 9, 59, 0), None, Duration::ZERO, 3, 5).await;
        let starts: Vec<_> = runs.iter().map(|r| r.0).collect();
        assert_eq!(
            starts,
            [
                at(7, 10, 0, 0),
                at(7, 10, 0, 1),
                at(7, 10, 0, 3),
                at(7, 10, 0, 7),
                // Succeeded at 10:00:07: the next is the next slot.
                at(7, 11, 0, 0),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_plan_ends_the_loop_and_an_unchanged_one_does_not() {
        let clock = Clock::tokio_at(at(7, 9, 0, 30));
        let (stop_tx, mut stop) = watch::channel(false);
        let (plan_tx, mut plan) = watch::channel(plan_of("0 * * * *"));
        let mut job = Recorder {
            clock,
            takes: Duration::ZERO,
            failures: 0,
            runs: Vec::new(),
            stop_after: usize::MAX,
            stop: stop_tx,
        };
        let driver = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = plan_tx.send(plan_of("0 * * * *"));
            tokio::time::sleep(Duration::from_secs(60)).await;
            let _ = plan_tx.send(plan_of("30 * * * *"));
            std::future::pending::<()>().await;
        };
        let ended = tokio::select! {
            ended = on_schedule(clock, &mut plan, pick, None, &mut job, &mut stop) => ended,
            () = driver => unreachable!(),
        };
        assert_eq!(ended, Ended::Replanned);
        assert_eq!(clock.now(), at(7, 9, 2, 30));
        assert!(job.runs.is_empty());
    }
}
