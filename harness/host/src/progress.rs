//! Progress for long work: on a terminal, one line that updates in place
//! (indicatif); elsewhere (CI, a pipe), a plain line every 20 s. Always on stderr.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Where long work reports how far it got: live on a terminal, plain elsewhere.
#[derive(Clone, Copy)]
pub struct Progress {
    live: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Live only on a terminal, and never under CI (`CI` set and not `false`).
    pub fn new() -> Self {
        let ci = std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false");
        Progress {
            live: std::io::stderr().is_terminal() && !ci,
        }
    }

    /// A short step: one line when it starts, one when it is done.
    pub(crate) fn step(&self, what: String) -> Step {
        eprintln!("[harness] {what} ...");
        Step {
            what,
            start: Instant::now(),
        }
    }

    /// A long task whose current activity is reported while it runs.
    pub(crate) fn task(&self, what: String) -> Task {
        let state = Arc::new(Mutex::new(TaskState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        eprintln!("[harness] {what} ...");
        let bar = self.live.then(|| live_bar(&what));
        let ticker = (!self.live).then(|| {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            let what = what.clone();
            std::thread::spawn(move || tick(&what, start, &state, &stop))
        });
        Task {
            what,
            start,
            state,
            stop,
            ticker,
            bar,
        }
    }
}

/// A spinner with the elapsed time, the step count and the current step.
fn live_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    let style =
        ProgressStyle::with_template("[harness] {prefix}: {elapsed}, {pos} steps, now: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

pub(crate) struct Step {
    what: String,
    start: Instant,
}

impl Step {
    pub fn done(self) {
        eprintln!(
            "[harness] {} done in {}",
            self.what,
            format_duration(self.start.elapsed())
        );
    }
}

#[derive(Default)]
struct TaskState {
    current: String,
    count: u64,
}

pub(crate) struct Task {
    what: String,
    start: Instant,
    state: Arc<Mutex<TaskState>>,
    stop: Arc<AtomicBool>,
    /// The plain line every 20 s, when not on a terminal.
    ticker: Option<JoinHandle<()>>,
    /// The live line, on a terminal.
    bar: Option<ProgressBar>,
}

impl Task {
    /// Records what the task is doing now (e.g. `CC kernel/fork.o`).
    pub fn update(&self, current: &str) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(current.to_owned());
        } else if let Ok(mut state) = self.state.lock() {
            state.current = current.to_owned();
            state.count += 1;
        }
    }

    pub fn finish(mut self, outcome: &str) {
        self.stop_ticker();
        eprintln!(
            "[harness] {} {outcome} in {}",
            self.what,
            format_duration(self.start.elapsed())
        );
    }

    fn stop_ticker(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// Without a terminal: a plain line every 20 s, until `stop`.
fn tick(what: &str, start: Instant, state: &Mutex<TaskState>, stop: &AtomicBool) {
    let interval = Duration::from_secs(20);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        let Ok(state) = state.lock() else { continue };
        eprintln!(
            "[harness] {what}: {} elapsed, {} steps, now: {}",
            format_duration(start.elapsed()),
            state.count,
            state.current
        );
    }
}

/// `1.2s` under a minute, `7m19s` above.
pub(crate) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!(
            "{}m{:02}s",
            duration.as_secs() / 60,
            duration.as_secs() % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(439)), "7m19s");
    }
}
