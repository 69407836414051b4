//! Progress for long work: on a terminal, one line that updates in place;
//! elsewhere (CI, a pipe), a plain line now and then. Always on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    pub fn new() -> Self {
        let ci = std::env::var_os("CI").is_some_and(|ci| !ci.is_empty() && ci != "false");
        Progress {
            live: std::io::stderr().is_terminal() && !ci,
        }
    }

    /// A short step: one line when it starts, one when it is done.
    pub fn step(&self, what: String) -> Step {
        eprintln!("[harness] {what} ...");
        Step {
            what,
            start: Instant::now(),
        }
    }

    /// A long task whose current activity is reported while it runs.
    pub fn task(&self, what: String) -> Task {
        let state = Arc::new(Mutex::new(TaskState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        eprintln!("[harness] {what} ...");
        let ticker = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            let live = self.live;
            let what = what.clone();
            std::thread::spawn(move || tick(&what, live, start, &state, &stop))
        };
        Task {
            what,
            start,
            state,
            stop,
            ticker: Some(ticker),
            live: self.live,
        }
    }
}

pub struct Step {
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

pub struct Task {
    what: String,
    start: Instant,
    state: Arc<Mutex<TaskState>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
    live: bool,
}

impl Task {
    /// Records what the task is doing now (e.g. `CC kernel/fork.o`).
    pub fn update(&self, current: &str) {
        if let Ok(mut state) = self.state.lock() {
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
        if self.live {
            eprint!("\r\x1b[2K");
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

fn tick(what: &str, live: bool, start: Instant, state: &Mutex<TaskState>, stop: &AtomicBool) {
    let interval = if live {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(20)
    };
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < interval {
            continue;
        }
        last = Instant::now();
        let (current, count) = match state.lock() {
            Ok(state) => (state.current.clone(), state.count),
            Err(_) => continue,
        };
        let line = format!(
            "[harness] {what}: {} elapsed, {count} steps, now: {current}",
            format_duration(start.elapsed())
        );
        if live {
            let width = 120;
            let shown: String = line.chars().take(width).collect();
            eprint!("\r\x1b[2K{shown}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
}

pub fn format_duration(duration: Duration) -> String {
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
