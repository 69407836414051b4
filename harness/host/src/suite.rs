//! Running scenarios: one on the right accelerator (probing KVM the first
//! time), or several, a few VMs at a time (the same concurrency as the
//! nextest `vm` group), reported in the order they were asked for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::path::Path;

use crate::accel::{self, Accel, Choice};
use crate::artifacts::Artifacts;
use crate::normalise::Normaliser;
use crate::snapshot::{self, SnapshotFile, SnapshotVerdict};
use crate::vm::{self, RunError, ScenarioRun, VmFailure, VmOptions};

/// Two VMs, each with 2 vCPUs, keep a 2-core machine busy without thrashing it.
pub(crate) const DEFAULT_JOBS: usize = 2;

/// One scenario's outcome: a result from the guest, or why there is none.
#[non_exhaustive]
pub struct Row {
    /// The scenario's name.
    pub scenario: String,
    /// Its run, or why the VM produced none.
    pub(crate) outcome: Result<ScenarioRun, RunError>,
    /// How long the run took as the host timed it, boot included; in a VM
    /// that ran several, the scenario's own time as the guest timed it (the
    /// first one's boot added).
    pub wall: Duration,
    /// Its snapshot, and how its output compared with it; None when the VM
    /// gave no result.
    pub(crate) snapshot: Option<(SnapshotFile, SnapshotVerdict)>,
}

impl Row {
    fn new(scenario: String, outcome: Result<ScenarioRun, RunError>, wall: Duration) -> Self {
        Row {
            scenario,
            outcome,
            wall,
            snapshot: None,
        }
    }

    /// Whether the VM ran, the scenario passed and its output matched its
    /// snapshot (or the run was asked not to compare it).
    pub fn passed(&self) -> bool {
        let snapshot = self.snapshot.as_ref();
        let matched = snapshot.is_none_or(|(_, verdict)| verdict.passed());
        matches!(&self.outcome, Ok(run) if run.result.passed) && matched
    }

    /// `pass`, `FAIL` (the scenario or its snapshot failed) or `ERROR` (no
    /// result from the VM).
    pub fn verdict(&self) -> &'static str {
        match &self.outcome {
            Ok(_) if self.passed() => "pass",
            Ok(_) => "FAIL",
            Err(_) => "ERROR",
        }
    }

    /// Whether the run failed on a data race KCSAN reported in the
    /// subject's module or the BPF core (one elsewhere is not counted).
    pub fn saw_race(&self) -> bool {
        let failures = match &self.outcome {
            Ok(run) => &run.result.failures[..],
            Err(_) => &[],
        };
        failures
            .iter()
            .any(|failure| harness_wire::splat::is_race_failure(failure))
    }

    /// The boot the harness ended and booted again before this run's VM,
    /// if it did (on the first scenario of its VM only).
    pub fn retried_boot(&self) -> Option<&vm::RetriedBoot> {
        match &self.outcome {
            Ok(run) => run.retried_boot.as_ref(),
            Err(RunError::Vm(error)) => error.retried_boot.as_ref(),
            Err(RunError::Harness(_)) => None,
        }
    }

    /// How the output compared with its snapshot: `matched`, `new`,
    /// `differs`, `not_compared`; `-` without a result.
    pub fn snapshot_word(&self) -> &'static str {
        self.snapshot
            .as_ref()
            .map_or("-", |(_, verdict)| verdict.as_str())
    }
}

/// How a suite runs its scenarios.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SuiteOptions {
    /// Each VM's.
    pub vm: VmOptions,
    /// How many VMs run at a time.
    pub jobs: usize,
    /// How many scenarios of one subject a VM runs, one after another.
    pub per_vm: usize,
    /// Whether each scenario's output is compared with its snapshot (the
    /// default); without, a pass is the scenario's expectations alone.
    pub snapshots: bool,
}

impl SuiteOptions {
    /// `harness run`'s defaults on `flavour`'s kernel: `DEFAULT_JOBS` VMs
    /// at a time, `scenarios_per_vm`, snapshots compared.
    pub fn for_flavour(flavour: crate::kernel::Flavour) -> Self {
        let vm = VmOptions::default();
        SuiteOptions {
            per_vm: scenarios_per_vm(flavour, vm.restore),
            vm,
            jobs: DEFAULT_JOBS,
            snapshots: true,
        }
    }
}

/// Boots a VM for `scenario` on the accelerator this host supports, and
/// returns its result; a boot the harness ended and booted again is on
/// the run (or the error), as [`vm::RetriedBoot`].
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
        let attempt = again_after_a_failed_boot(&options, |options| {
            vm::run_scenario_on(artifacts, scenario, options, accel, probing)
        });
        attempt.noted(|run, retried| run.retried_boot = Some(retried))
    };
    on_decided_accel(&artifacts.cache, boot)
}

/// A boot, and the one before it when the harness ended that one and
/// booted again.
struct Attempt<T> {
    outcome: Result<T, RunError>,
    retried_boot: Option<vm::RetriedBoot>,
}

impl<T> Attempt<T> {
    /// The outcome, the retried boot put on it: by `note` on a result, on
    /// the VM's error, or in the words of the harness's own error.
    fn noted(self, note: impl FnOnce(&mut T, vm::RetriedBoot)) -> Result<T, RunError> {
        let Some(retried) = self.retried_boot else {
            return self.outcome;
        };
        match self.outcome {
            Ok(mut value) => {
                note(&mut value, retried);
                Ok(value)
            }
            Err(RunError::Vm(mut error)) => {
                error.retried_boot = Some(retried);
                Err(RunError::Vm(error))
            }
            Err(RunError::Harness(error)) => Err(RunError::Harness(error.context(format!(
                "booting once more after a boot that failed ({}; logs: {})",
                retried.failure,
                retried.logs.display()
            )))),
        }
    }
}

/// `boot`, and once more if the guest failed before its agent was ready:
/// its kernel panicked, or it missed the boot deadline. Nothing of the
/// subject has run by then (the agent loads its module), so such a failure
/// says nothing of the scenario. Seen under TCG: the kernel panicking in
/// `setup_IO_APIC`'s timer check under load (which `no_timer_check` now
/// skips); the default kernel stalled after its last boot line. A kernel
/// that fails at every boot still fails, the second time; the first
/// boot's logs are kept, and the attempt says where. The second VM is
/// booted, not restored: a template that loads but fails would fail again.
fn again_after_a_failed_boot<T>(
    options: &VmOptions,
    boot: impl Fn(&VmOptions) -> Result<T, RunError>,
) -> Attempt<T> {
    let first = boot(options);
    let retried_boot = match &first {
        Err(RunError::Vm(error)) => error.boot_failure().map(|cause| vm::RetriedBoot {
            cause,
            failure: error.failure.to_string(),
            logs: error.logs.clone(),
        }),
        _ => None,
    };
    match retried_boot {
        Some(_) => Attempt {
            outcome: boot(&VmOptions {
                restore: false,
                ..options.clone()
            }),
            retried_boot,
        },
        None => Attempt {
            outcome: first,
            retried_boot,
        },
    }
}

/// `boot(accel, probing)` on the accelerator this host supports: KVM when
/// it is known to work; the first time, KVM under the watchdog (the one
/// probe on this host, the others wait for its verdict).
pub fn on_decided_accel<T>(
    cache: &Path,
    boot: impl Fn(Accel, bool) -> Result<T, RunError>,
) -> Result<T, RunError> {
    match accel::choose(cache).map_err(RunError::Harness)? {
        Choice::Decided(accel, _) => boot(accel, false),
        Choice::ProbeKvm => {
            let _lock = accel::probe_lock(cache).map_err(RunError::Harness)?;
            match accel::choose(cache).map_err(RunError::Harness)? {
                // Another process probed while we waited for the lock.
                Choice::Decided(accel, _) => boot(accel, false),
                Choice::ProbeKvm => run_probing(cache, boot),
            }
        }
    }
}

/// What one KVM boot under the watchdog says about KVM on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KvmProbe {
    /// The guest reached the agent (whatever the scenario then did).
    Works,
    /// The guest stayed silent, or QEMU blamed KVM: fall back to TCG.
    Broken { reason: String },
    /// The boot failed before any guest ran (no socket directory, say):
    /// nothing was learnt about KVM.
    Inconclusive,
}

impl KvmProbe {
    /// What `outcome`, a boot on KVM under the watchdog, says.
    pub(crate) fn of<T>(outcome: &Result<T, RunError>) -> Self {
        match outcome {
            Ok(_) => KvmProbe::Works,
            Err(RunError::Vm(error)) => match &error.failure {
                VmFailure::KvmBroken(reason) => KvmProbe::Broken {
                    reason: reason.clone(),
                },
                _ if error.agent_ready => KvmProbe::Works,
                _ => KvmProbe::Inconclusive,
            },
            Err(RunError::Harness(_)) => KvmProbe::Inconclusive,
        }
    }
}

/// The first KVM boot on this host: `boot(accel, probing)` runs on KVM
/// under the watchdog, the verdict is cached, and a broken KVM is warned
/// about once and replaced by TCG for this run and every later one.
pub(crate) fn run_probing<T>(
    cache: &Path,
    boot: impl Fn(Accel, bool) -> Result<T, RunError>,
) -> Result<T, RunError> {
    let outcome = boot(Accel::Kvm, true);
    match KvmProbe::of(&outcome) {
        KvmProbe::Works => {
            accel::write_verdict(cache, true, "a KVM guest booted").map_err(RunError::Harness)?;
            outcome
        }
        KvmProbe::Broken { reason } => {
            accel::write_verdict(cache, false, &reason).map_err(RunError::Harness)?;
            if let Err(RunError::Vm(error)) = outcome {
                // The logs of a probe that failed as expected need no reading.
                let _ = std::fs::remove_dir_all(&error.logs);
            }
            tracing::warn!(
                "/dev/kvm is present but {reason} (nested virtualisation not working?); \
                 falling back to TCG, which is slower. This verdict is cached in {}; delete it, \
                 or set {}=kvm, to try KVM again.",
                accel::verdict_path(cache).display(),
                accel::ACCEL_ENV,
            );
            boot(Accel::Tcg, false)
        }
        KvmProbe::Inconclusive => outcome,
    }
}

/// How many scenarios one VM runs, one after another, on a flavour's
/// kernel: the debug kernel's boot costs more CPU under TCG than most of
/// its scenarios (KASAN, lockdep and kmemleak at every allocation), so its
/// VMs run several; a failed scenario ends its VM, and the rest run in a
/// fresh one. It also halves its leak scans: one VM's scan after a scenario
/// judges the one before (see the agent's `kmemleak`). The other kernels
/// boot quickly: a VM each, the cleanest start a scenario can have. A VM
/// restored from its kernel's template (`restoring`) costs no boot, so
/// every flavour gets a VM per scenario then.
/// `harness bench --debug-kernel` times both flavours' boots and suites.
pub(crate) fn scenarios_per_vm(flavour: crate::kernel::Flavour, restoring: bool) -> usize {
    match (flavour, restoring) {
        (crate::kernel::Flavour::Debug, false) => 8,
        _ => 1,
    }
}

/// Runs `names`, `jobs` VMs at a time, each VM up to `per_vm` scenarios of
/// one subject, comparing each one's output with its snapshot (unless told
/// not to) and calling `on_done` as each finishes; the rows come back in
/// the order of `names`. The longest scenarios of the last run start
/// first, so the short ones fill in beside them and the whole run ends sooner.
pub(crate) fn run_many(
    artifacts: &Artifacts,
    names: &[String],
    suite: &SuiteOptions,
    on_done: impl Fn(&Row) + Sync,
) -> Vec<Row> {
    let (options, jobs, per_vm) = (&suite.vm, suite.jobs, suite.per_vm);
    let on_done = |row: &mut Row| {
        row.snapshot = compare_snapshot(artifacts, row, suite.snapshots);
        on_done(row);
    };
    let durations = Durations::load(&artifacts.cache);
    let order = longest_first(names, &durations);
    // A scenario the catalogue does not know runs alone, to fail with the
    // reason; a VM's scenarios share its binary and its topology.
    let subject_of = |name: &str| {
        let binary = artifacts.binary_for(name).ok()?;
        let (_, declared) = artifacts.catalogue.find(name)?;
        Some((binary, declared.topology))
    };
    let batches = batches(names, &order, subject_of, (per_vm, jobs));
    let queue = Mutex::new(std::collections::VecDeque::from(batches));
    let rows: Mutex<Vec<(usize, Row)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, names.len().max(1)) {
            scope.spawn(|| {
                while let Some(batch) = queue.lock().ok().and_then(|mut queue| queue.pop_front()) {
                    let left = run_batch(artifacts, names, &batch, options, &on_done, &rows);
                    if !left.is_empty() {
                        if let Ok(mut queue) = queue.lock() {
                            queue.push_front(left);
                        }
                    }
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

/// `order`'s scenarios in VMs of up to `per_vm`, each VM's of one subject
/// and topology (`subject_of`; None runs alone), and, with several `jobs`,
/// small enough that the VMs share the work evenly (two VMs a job): each
/// subject's scenarios are dealt out in turn, longest first, to as few VMs
/// as that allows.
fn batches<K: PartialEq + Copy>(
    names: &[String],
    order: &[usize],
    subject_of: impl Fn(&str) -> Option<K>,
    (per_vm, jobs): (usize, usize),
) -> Vec<Vec<usize>> {
    let size = match jobs {
        0 | 1 => per_vm,
        _ => names.len().div_ceil(2 * jobs),
    }
    .clamp(1, per_vm.max(1));
    let mut subjects: Vec<(Option<K>, Vec<usize>)> = Vec::new();
    for &index in order {
        let binary = subject_of(&names[index]);
        match subjects
            .iter_mut()
            .find(|(of, _)| binary.is_some() && *of == binary)
        {
            Some((_, indices)) => indices.push(index),
            None => subjects.push((binary, vec![index])),
        }
    }
    let mut batches = Vec::new();
    for (_, indices) in subjects {
        let count = indices.len().div_ceil(size);
        let mut dealt = vec![Vec::new(); count];
        for (turn, index) in indices.into_iter().enumerate() {
            dealt[turn % count].push(index);
        }
        batches.extend(dealt);
    }
    batches
}

/// One VM's scenarios of a `run_many`, each row kept beside its place in
/// the list; returns the scenarios it did not run (after a failure), for
/// another VM.
fn run_batch(
    artifacts: &Artifacts,
    names: &[String],
    batch: &[usize],
    options: &VmOptions,
    on_done: &(impl Fn(&mut Row) + Sync),
    rows: &Mutex<Vec<(usize, Row)>>,
) -> Vec<usize> {
    let scenarios: Vec<String> = batch.iter().map(|&index| names[index].clone()).collect();
    let start = Instant::now();
    // Counted once a VM, not once a boot: a retried boot runs the same fault.
    let counted = vm::with_counted_fault(options).map_err(RunError::Harness);
    let boot = |options: &VmOptions, accel, probing| {
        let options = VmOptions {
            verbose_console: options.verbose_console || probing,
            ..options.clone()
        };
        let attempt = again_after_a_failed_boot(&options, |options| {
            vm::run_batch_on(artifacts, &scenarios, options, accel, probing)
        });
        attempt.noted(note_retried_boot)
    };
    let outcome = counted.and_then(|options| {
        on_decided_accel(&artifacts.cache, |accel, probing| {
            boot(&options, accel, probing)
        })
    });
    let (runs, ended, failed_in) = match outcome {
        Ok(batch) => (batch.runs, batch.ended, batch.failed_in),
        Err(error) => (Vec::new(), Err(error), None),
    };
    let single = scenarios.len() == 1;
    let mut done: Vec<Row> = (runs.into_iter())
        .map(|run| {
            let wall = match single {
                true => start.elapsed(),
                // Results arrive together when they wait for a later scan:
                // the scenario's own time, as the guest timed it, the first one's boot added.
                false => {
                    run.boot.unwrap_or_default() + Duration::from_millis(run.result.duration_ms)
                }
            };
            Row::new(run.result.scenario.clone(), Ok(run), wall)
        })
        .collect();
    let mut left: Vec<usize> = batch[done.len()..].to_vec();
    // A batch with no result ended in an error (Vm::into_batch), so a
    // requeued scenario never waits on a VM that runs nothing.
    if let Err(error) = ended {
        let left_names: Vec<&str> = left.iter().map(|&index| names[index].as_str()).collect();
        let done_names: Vec<&str> = done.iter().map(|row| row.scenario.as_str()).collect();
        match blame(&left_names, &done_names, failed_in.as_deref()) {
            Blame::Unreported(at) => {
                let index = left.remove(at);
                let row = Row::new(names[index].clone(), Err(error), start.elapsed());
                report(row, index, on_done, rows);
            }
            Blame::Reported(at) => {
                if let Some(row) = done.get_mut(at) {
                    let mut error = error;
                    // The run it replaces may have carried the VM's retried boot.
                    if let (Ok(run), RunError::Vm(failure)) = (&mut row.outcome, &mut error) {
                        failure.retried_boot = run.retried_boot.take();
                    }
                    row.outcome = Err(error);
                }
            }
        }
    }
    for (row, &index) in done.into_iter().zip(batch) {
        report(row, index, on_done, rows);
    }
    left
}

/// A retried boot on the VM's first run, or on its failure when it has
/// none: it is the VM's, once, like its boot time.
fn note_retried_boot(batch: &mut vm::Batch, retried: vm::RetriedBoot) {
    match (batch.runs.first_mut(), &mut batch.ended) {
        (Some(run), _) => run.retried_boot = Some(retried),
        (None, Err(RunError::Vm(error))) => error.retried_boot = Some(retried),
        (None, _) => {}
    }
}

/// Which scenario a VM's failure is: one of those without a result (the
/// others of which run again in another VM), or one that reported.
#[derive(Debug, PartialEq, Eq)]
enum Blame {
    Unreported(usize),
    Reported(usize),
}

/// The scenario the console says the VM was in (`failed_in`), whether or
/// not it reported (a kernel can panic as it powers off); without that
/// word, the first without a result, or the last that reported.
fn blame(left: &[&str], done: &[&str], failed_in: Option<&str>) -> Blame {
    let named = |names: &[&str]| failed_in.and_then(|name| names.iter().position(|&n| n == name));
    if let Some(at) = named(left) {
        return Blame::Unreported(at);
    }
    if let Some(at) = named(done) {
        return Blame::Reported(at);
    }
    match left.is_empty() {
        false => Blame::Unreported(0),
        true => Blame::Reported(done.len().saturating_sub(1)),
    }
}

fn report(
    mut row: Row,
    index: usize,
    on_done: &(impl Fn(&mut Row) + Sync),
    rows: &Mutex<Vec<(usize, Row)>>,
) {
    on_done(&mut row);
    if let Ok(mut rows) = rows.lock() {
        rows.push((index, row));
    }
}

/// `row`'s snapshot and how its normalised output compares with it (or
/// [`SnapshotVerdict::NotCompared`] when `compare` is false); None without
/// a result. A snapshot that cannot be read fails the row, saying why.
fn compare_snapshot(
    artifacts: &Artifacts,
    row: &Row,
    compare: bool,
) -> Option<(SnapshotFile, SnapshotVerdict)> {
    let run = row.outcome.as_ref().ok()?;
    let (subject, declared) = artifacts.catalogue.find(&row.scenario)?;
    let file = SnapshotFile::of(&subject.info, declared, &artifacts.kernel.version);
    if !compare {
        return Some((file, SnapshotVerdict::NotCompared));
    }
    let verdict = Normaliser::for_subject(&subject.info)
        .and_then(|normaliser| snapshot::compare(&file, &normaliser.snapshot_text(&run.result)))
        .unwrap_or_else(|err| SnapshotVerdict::Unreadable {
            error: format!("{err:#}"),
        });
    Some((file, verdict))
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
    fn a_vm_runs_scenarios_of_one_subject_dealt_out_longest_first() {
        let names: Vec<String> = ["a1", "a2", "a3", "a4", "a5", "b1", "b2", "unknown"]
            .map(String::from)
            .to_vec();
        let order: Vec<usize> = (0..names.len()).collect();
        let subject_of = |name: &str| match name.as_bytes()[0] {
            b'a' => Some(Path::new("/a")),
            b'b' => Some(Path::new("/b")),
            _ => None,
        };
        // 8 scenarios, 2 jobs: VMs of up to 2, each subject's dealt out in turn.
        let batches = batches(&names, &order, subject_of, (8, 2));
        assert_eq!(
            batches,
            [vec![0, 3], vec![1, 4], vec![2], vec![5, 6], vec![7]]
        );
        // One job: as many as a VM takes.
        let batches = super::batches(&names, &order, subject_of, (4, 1));
        assert_eq!(batches, [vec![0, 2, 4], vec![1, 3], vec![5, 6], vec![7]]);
        // One a VM: every scenario alone.
        assert_eq!(super::batches(&names, &order, subject_of, (1, 2)).len(), 8);
    }

    fn panicked(agent_ready: bool) -> RunError {
        failed(
            VmFailure::GuestPanicked {
                detail: ": Kernel panic - not syncing: Fatal exception in interrupt".into(),
            },
            agent_ready,
        )
    }

    fn failed(failure: VmFailure, agent_ready: bool) -> RunError {
        RunError::Vm(Box::new(vm::VmError {
            failure,
            console_tail: String::new(),
            stderr_tail: String::new(),
            logs: std::path::PathBuf::from("/nonexistent"),
            run_dir: std::path::PathBuf::new(),
            agent_ready,
            retried_boot: None,
        }))
    }

    #[test]
    fn a_stalled_boot_boots_again_a_timeout_does_not() {
        let calls = std::cell::Cell::new(0);
        let stalled_once = |options: &VmOptions| {
            calls.set(calls.get() + 1);
            // The second try boots: a template's VM that stalled may again.
            assert_eq!(options.restore, calls.get() == 1);
            match calls.get() {
                1 => Err(failed(
                    VmFailure::NeverReady {
                        deadline: crate::boot_times::BootDeadline {
                            after: Duration::from_secs(10),
                            measured: Some((Duration::from_secs(2), 20)),
                        },
                        state: "running".into(),
                        vcpus: "vCPU 0 at default_idle+0xb, halted".into(),
                    },
                    false,
                )),
                _ => Ok(calls.get()),
            }
        };
        let restoring = VmOptions::default().restore(true);
        let attempt = again_after_a_failed_boot(&restoring, stalled_once);
        assert_eq!(attempt.outcome.ok(), Some(2));
        let retried = attempt.retried_boot.expect("the stalled boot is recorded");
        assert_eq!(retried.cause, vm::BootFailure::Stalled);
        assert_eq!(retried.logs, Path::new("/nonexistent"));
        assert!(
            retried.failure.contains("did not say ready within 10.0s")
                && retried.failure.contains("default_idle+0xb"),
            "{}",
            retried.failure
        );
        calls.set(0);
        let timed_out = |_: &VmOptions| {
            calls.set(calls.get() + 1);
            Err::<(), _>(failed(
                VmFailure::Timeout {
                    after: Duration::from_secs(120),
                    state: "running".into(),
                },
                true,
            ))
        };
        let attempt = again_after_a_failed_boot(&VmOptions::default(), timed_out);
        assert!(attempt.outcome.is_err() && attempt.retried_boot.is_none());
        assert_eq!(calls.get(), 1, "a scenario that hangs is the scenario's");
    }

    #[test]
    fn only_a_panic_before_the_agent_is_ready_boots_again() {
        let calls = std::cell::Cell::new(0);
        let flaky = |_: &VmOptions| {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => Err(panicked(false)),
                _ => Ok(calls.get()),
            }
        };
        let attempt = again_after_a_failed_boot(&VmOptions::default(), flaky);
        assert_eq!(attempt.outcome.ok(), Some(2));
        let retried = attempt.retried_boot.expect("the panicked boot is recorded");
        assert_eq!(retried.cause, vm::BootFailure::Panicked);
        calls.set(0);
        let every_time = |_: &VmOptions| {
            calls.set(calls.get() + 1);
            Err::<(), _>(panicked(false))
        };
        let attempt = again_after_a_failed_boot(&VmOptions::default(), every_time);
        // The second boot's error, the first boot's failure beside it.
        let Err(RunError::Vm(error)) = attempt.noted(|_, _| {}) else {
            panic!("a kernel that panics at every boot must fail");
        };
        assert_eq!(
            error.retried_boot.map(|boot| boot.cause),
            Some(vm::BootFailure::Panicked)
        );
        assert_eq!(
            calls.get(),
            2,
            "a kernel that panics at every boot still fails"
        );
        calls.set(0);
        let in_the_scenario = |_: &VmOptions| {
            calls.set(calls.get() + 1);
            Err::<(), _>(panicked(true))
        };
        let attempt = again_after_a_failed_boot(&VmOptions::default(), in_the_scenario);
        assert!(attempt.outcome.is_err() && attempt.retried_boot.is_none());
        assert_eq!(
            calls.get(),
            1,
            "a panic once the agent ran is the scenario's"
        );
    }

    #[test]
    fn a_vm_failure_is_the_scenario_it_was_in() {
        let blame = super::blame;
        // In c: a and b reported, c and d did not.
        assert_eq!(
            blame(&["c", "d"], &["a", "b"], Some("c")),
            Blame::Unreported(0)
        );
        // In d: c lost its result with the VM and runs again elsewhere.
        assert_eq!(
            blame(&["c", "d"], &["a", "b"], Some("d")),
            Blame::Unreported(1)
        );
        // Every result in, the kernel panicked after b's.
        assert_eq!(blame(&[], &["a", "b"], Some("b")), Blame::Reported(1));
        assert_eq!(blame(&[], &["a", "b"], None), Blame::Reported(1));
        // One scenario a VM: no word on the console.
        assert_eq!(blame(&["a"], &[], None), Blame::Unreported(0));
    }

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
