//! Running scenarios: one on the right accelerator (probing KVM the first
//! time), or several, a few VMs at a time (the same concurrency as the
//! nextest `vm` group), reported in the order they were asked for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::accel::{self, Choice};
use crate::artifacts::Artifacts;
use crate::vm::{self, RunError, ScenarioRun, VmOptions};

/// Two VMs, each with 2 vCPUs, keep a 2-core machine busy without thrashing it.
pub const DEFAULT_JOBS: usize = 2;

/// One scenario's outcome: a result from the guest, or why there is none.
pub struct Row {
    pub scenario: String,
    pub outcome: Result<ScenarioRun, RunError>,
    pub wall: Duration,
}

impl Row {
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, Ok(run) if run.result.passed)
    }

    pub fn verdict(&self) -> &'static str {
        match &self.outcome {
            Ok(run) if run.result.passed => "pass",
            Ok(_) => "FAIL",
            Err(_) => "ERROR",
        }
    }
}

/// Boots a VM for `scenario` on the accelerator this host supports, and
/// returns its result.
pub fn run_scenario(
    artifacts: &Artifacts,
    scenario: &str,
    options: &VmOptions,
) -> Result<ScenarioRun, RunError> {
    let boot = |accel, probing| {
        let options = VmOptions {
            // A probe needs every boot message: a working KVM guest speaks within a second.
            verbose_console: options.verbose_console || probing,
            ..options.clone()
        };
        vm::run_scenario_on(artifacts, scenario, &options, accel, probing)
    };
    match accel::choose(&artifacts.cache).map_err(RunError::Harness)? {
        Choice::Decided(accel, _) => boot(accel, false),
        Choice::ProbeKvm => {
            let _lock = accel::probe_lock(&artifacts.cache).map_err(RunError::Harness)?;
            match accel::choose(&artifacts.cache).map_err(RunError::Harness)? {
                // Another process probed while we waited for the lock.
                Choice::Decided(accel, _) => boot(accel, false),
                Choice::ProbeKvm => accel::run_probing(&artifacts.cache, boot),
            }
        }
    }
}

/// Runs `names`, `jobs` VMs at a time, calling `on_done` as each finishes;
/// the rows come back in the order of `names`. The longest scenarios of the
/// last run start first, so the short ones fill in beside them and the
/// whole run ends sooner.
pub fn run_many(
    artifacts: &Artifacts,
    names: &[String],
    options: &VmOptions,
    jobs: usize,
    on_done: impl Fn(&Row) + Sync,
) -> Vec<Row> {
    let order = longest_first(names, &Durations::load(&artifacts.cache));
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<(usize, Row)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, names.len().max(1)) {
            scope.spawn(|| {
                while let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    run_one(artifacts, &names[index], index, options, &on_done, &rows);
                }
            });
        }
    });
    let mut rows = rows.into_inner().unwrap_or_default();
    rows.sort_by_key(|(index, _)| *index);
    let rows: Vec<Row> = rows.into_iter().map(|(_, row)| row).collect();
    Durations::record(&artifacts.cache, &rows);
    rows
}

/// One scenario of a `run_many`, its row kept beside its place in the list.
fn run_one(
    artifacts: &Artifacts,
    name: &str,
    index: usize,
    options: &VmOptions,
    on_done: &(impl Fn(&Row) + Sync),
    rows: &Mutex<Vec<(usize, Row)>>,
) {
    let start = Instant::now();
    let row = Row {
        scenario: name.to_owned(),
        outcome: run_scenario(artifacts, name, options),
        wall: start.elapsed(),
    };
    on_done(&row);
    if let Ok(mut rows) = rows.lock() {
        rows.push((index, row));
    }
}

/// How long each scenario took last time, kept in the cache.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Durations(std::collections::BTreeMap<String, f64>);

impl Durations {
    fn path(cache: &std::path::Path) -> std::path::PathBuf {
        cache.join("scenario-durations.json")
    }

    fn load(cache: &std::path::Path) -> Self {
        std::fs::read_to_string(Self::path(cache))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Best effort: a lost record only costs the next run its order.
    fn record(cache: &std::path::Path, rows: &[Row]) {
        let mut durations = Self::load(cache);
        for row in rows.iter().filter(|row| row.passed()) {
            durations
                .0
                .insert(row.scenario.clone(), row.wall.as_secs_f64());
        }
        if let Ok(text) = serde_json::to_string_pretty(&durations) {
            let _ = crate::paths::write_atomically(&Self::path(cache), text.as_bytes());
        }
    }
}

/// Indices of `names`, the longest last time first (unknown ones first of
/// all: they may be long), ties in the order given.
fn longest_first(names: &[String], durations: &Durations) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    let took = |index: &usize| durations.0.get(&names[*index]).copied().unwrap_or(f64::MAX);
    order.sort_by(|a, b| took(b).total_cmp(&took(a)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_start_first_and_new_ones_before_them() {
        let names: Vec<String> = ["short", "new", "long", "middle"]
            .map(String::from)
            .to_vec();
        let durations = Durations(
            [("short", 1.0), ("long", 7.0), ("middle", 3.0)]
                .map(|(name, secs)| (name.to_owned(), secs))
                .into_iter()
                .collect(),
        );
        assert_eq!(longest_first(&names, &durations), [1, 2, 3, 0]);
        assert_eq!(longest_first(&names, &Durations::default()), [0, 1, 2, 3]);
    }
}
