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

/// Runs `names`, `jobs` VMs at a time, calling `on_done` as each finishes.
pub fn run_many(
    artifacts: &Artifacts,
    names: &[String],
    options: &VmOptions,
    jobs: usize,
    on_done: impl Fn(&Row) + Sync,
) -> Vec<Row> {
    let next = AtomicUsize::new(0);
    let rows: Mutex<Vec<(usize, Row)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, names.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(index) else { break };
                let start = Instant::now();
                let row = Row {
                    scenario: name.clone(),
                    outcome: run_scenario(artifacts, name, options),
                    wall: start.elapsed(),
                };
                on_done(&row);
                if let Ok(mut rows) = rows.lock() {
                    rows.push((index, row));
                }
            });
        }
    });
    let mut rows = rows.into_inner().unwrap_or_default();
    rows.sort_by_key(|(index, _)| *index);
    rows.into_iter().map(|(_, row)| row).collect()
}
