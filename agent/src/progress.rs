//! Progress shown on a terminal during long work; nothing when stderr is not
//! a terminal or when the caller asked for machine output.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    counts: Arc<[AtomicU64; 3]>,
}

const FILES: usize = 0;
const READ: usize = 1;
const SENT: usize = 2;

impl Progress {
    /// A spinner on stderr if it is a terminal and `quiet` is false.
    pub fn new(quiet: bool, what: &str) -> Self {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            {
                bar.set_style(style);
            }
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        };
        Self {
            bar,
            counts: Arc::default(),
        }
    }

    pub fn hidden() -> Self {
        Self::new(true, "")
    }

    pub fn add_files(&self, n: u64) {
        self.add(FILES, n);
    }

    pub fn add_read(&self, n: u64) {
        self.add(READ, n);
    }

    pub fn add_sent(&self, n: u64) {
        self.add(SENT, n);
    }

    fn add(&self, which: usize, n: u64) {
        self.counts[which].fetch_add(n, Ordering::Relaxed);
        if !self.bar.is_hidden() {
            let get = |i: usize| self.counts[i].load(Ordering::Relaxed);
            self.bar.set_message(format!(
                "{} files, {} read, {} sent",
                get(FILES),
                HumanBytes(get(READ)),
                HumanBytes(get(SENT))
            ));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
