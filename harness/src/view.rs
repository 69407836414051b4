//! How the `harness` command (and a subject's test binary) shows what the
//! library reports: progress [`Event`]s on stderr, and the library's
//! `tracing` diagnostics as `[harness] ...` lines, filtered by `RUST_LOG`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use harness_host::progress::{format_duration, Event, Progress, Sink};
use indicatif::{ProgressBar, ProgressStyle};

/// Without a terminal, a long task's activity is shown at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(20);

/// Progress shown on stderr: a live line on a terminal, unless `ci`; a
/// plain line every 20 s elsewhere.
pub fn stderr_progress(ci: bool) -> Progress {
    Progress::to(Stderr {
        live: std::io::stderr().is_terminal() && !ci,
        state: Mutex::new(State::default()),
    })
}

struct Stderr {
    live: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bar: Option<ProgressBar>,
    last_plain: Option<Instant>,
}

impl Sink for Stderr {
    fn event(&self, event: Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            Event::Started { what } => {
                eprintln!("[harness] {what} ...");
                state.last_plain = Some(Instant::now());
            }
            Event::Activity {
                what,
                steps,
                now,
                elapsed,
            } => self.activity(&mut state, &what, (steps, &now, elapsed)),
            Event::Finished {
                what,
                outcome,
                elapsed,
            } => {
                if let Some(bar) = state.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("[harness] {what} {outcome} in {}", format_duration(elapsed));
            }
            _ => {}
        }
    }
}

impl Stderr {
    fn activity(
        &self,
        state: &mut State,
        what: &str,
        (steps, now, elapsed): (u64, &str, Duration),
    ) {
        if self.live {
            let bar = state.bar.get_or_insert_with(|| live_bar(what));
            bar.set_position(steps);
            bar.set_message(now.to_owned());
            return;
        }
        if state
            .last_plain
            .is_some_and(|last| last.elapsed() < PLAIN_EVERY)
        {
            return;
        }
        state.last_plain = Some(Instant::now());
        eprintln!(
            "[harness] {what}: {} elapsed, {steps} steps, now: {now}",
            format_duration(elapsed)
        );
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

/// Shows the library's diagnostics on stderr: `[harness] warning: ...` for
/// warnings, `[harness] ...` for information, `RUST_LOG` choosing which
/// (`info` when unset). Once per process; a second call does nothing.
pub fn show_diagnostics() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Lines)
        .try_init();
}

/// `[harness] warning: message`, nothing else of tracing's default format.
struct Lines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Lines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let prefix = match level {
            tracing::Level::ERROR => "error: ",
            tracing::Level::WARN => "warning: ",
            tracing::Level::INFO => "",
            _ => "debug: ",
        };
        write!(writer, "[harness] {prefix}")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
