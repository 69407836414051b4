//! Progress of long work (a kernel build, a download, the guest binary's
//! build) as typed [`Event`]s sent to a [`Sink`] the caller chooses: the
//! library never prints. The `harness` command renders them on stderr
//! (one live line on a terminal, a plain line now and then elsewhere); a
//! test or another tool can collect them, or pass [`Progress::silent`].

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a piece of long work reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Work named `what` started.
    Started {
        /// What is being done, e.g. `make all` or `extracting linux.tar.xz`.
        what: String,
    },
    /// A long task is at its `steps`-th step, doing `now` (e.g. `CC kernel/fork.o`).
    Activity {
        /// The task, as its [`Event::Started`] named it.
        what: String,
        /// How many steps it has reported so far.
        steps: u64,
        /// What it is doing now.
        now: String,
        /// Since it started.
        elapsed: Duration,
    },
    /// Work named `what` ended after `elapsed`, with `outcome` (`done`, `failed`).
    Finished {
        /// The work, as its [`Event::Started`] named it.
        what: String,
        /// How it ended, in a word.
        outcome: String,
        /// How long it took.
        elapsed: Duration,
    },
}

/// Where [`Event`]s go. Called from the thread doing the work.
pub trait Sink: Send + Sync {
    /// Receives one event.
    fn event(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> Sink for F {
    fn event(&self, event: Event) {
        self(event)
    }
}

/// The handle long work reports through; cheap to clone.
#[derive(Clone)]
pub struct Progress {
    sink: Arc<dyn Sink>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Progress {
    /// Events go to `sink`.
    pub fn to(sink: impl Sink + 'static) -> Self {
        Progress {
            sink: Arc::new(sink),
        }
    }

    /// Events go nowhere.
    pub fn silent() -> Self {
        Progress::to(|_: Event| {})
    }

    fn send(&self, event: Event) {
        self.sink.event(event);
    }

    /// A short step: an event when it starts, one when it is done.
    pub(crate) fn step(&self, what: String) -> Step {
        self.task(what)
    }

    /// A long task that reports what it is doing while it runs.
    pub(crate) fn task(&self, what: String) -> Task {
        self.send(Event::Started { what: what.clone() });
        Task {
            progress: self.clone(),
            what,
            start: Instant::now(),
            steps: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// A short step (the same as a task that reports no activity).
pub(crate) type Step = Task;

pub(crate) struct Task {
    progress: Progress,
    what: String,
    start: Instant,
    steps: std::sync::atomic::AtomicU64,
}

impl Task {
    /// Records what the task is doing now (e.g. `CC kernel/fork.o`).
    pub fn update(&self, now: &str) {
        let steps = 1 + self
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.send(Event::Activity {
            what: self.what.clone(),
            steps,
            now: now.to_owned(),
            elapsed: self.start.elapsed(),
        });
    }

    /// The step ended well.
    pub fn done(self) {
        self.finish("done");
    }

    /// The task ended with `outcome`.
    pub fn finish(self, outcome: &str) {
        self.progress.send(Event::Finished {
            what: self.what.clone(),
            outcome: outcome.to_owned(),
            elapsed: self.start.elapsed(),
        });
    }
}

/// `1.2s` under a minute, `7m19s` above.
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
    use std::sync::Mutex;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(439)), "7m19s");
    }

    #[test]
    fn a_task_reports_its_start_activity_and_end_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let progress = Progress::to(move |event| sink.lock().unwrap().push(event));
        let task = progress.task("make all".into());
        task.update("CC kernel/fork.o");
        task.update("LD vmlinux");
        task.finish("failed");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(
            seen[0],
            Event::Started {
                what: "make all".into()
            }
        );
        assert!(
            matches!(&seen[2], Event::Activity { steps: 2, now, .. } if now == "LD vmlinux"),
            "{seen:?}"
        );
        assert!(
            matches!(&seen[3], Event::Finished { outcome, .. } if outcome == "failed"),
            "{seen:?}"
        );
    }
}
