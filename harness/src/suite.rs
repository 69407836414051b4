//! Several scenarios, a few VMs at a time (the same concurrency as the
//! nextest `vm` group), reported in the order they were asked for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::artifacts::Artifacts;
use crate::report::Row;
use crate::vm::{self, VmOptions};

/// Two VMs, each with 2 vCPUs, keep a 2-core machine busy without thrashing it.
pub const DEFAULT_JOBS: usize = 2;

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
                let outcome =
                    vm::run_scenario(artifacts, name, options).map_err(|err| format!("{err:#}"));
                let row = Row {
                    scenario: name.clone(),
                    outcome,
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
