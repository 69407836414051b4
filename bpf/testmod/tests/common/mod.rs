//! What the planted-bug and mutant tests share: the module built with one
//! `PLANT_*` switch (kmod/bpf_testmod/bpf_testmod.c), a scenario run with
//! it on a kernel of one flavour, through the harness's host API as any
//! crate could, and the check that a failure names a splat class.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use harness::host::artifacts::{self, Artifacts};
use harness::host::catalogue;
use harness::host::kernel::Flavour;
use harness::host::kmod;
use harness::host::suite::{on_decided_accel, run_scenario};
use harness::host::vm::{self, Batch, VmOptions};
use harness::wire::protocol::ScenarioResult;

/// The kernel of `flavour`, the module and the guest binary, prepared once.
fn artifacts_for(flavour: Flavour) -> Artifacts {
    static PREPARED: OnceLock<Mutex<Vec<(Flavour, Artifacts)>>> = OnceLock::new();
    let prepared = PREPARED.get_or_init(|| Mutex::new(Vec::new()));
    let mut prepared = prepared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, artifacts)) = prepared.iter().find(|(made, _)| *made == flavour) {
        return artifacts.clone();
    }
    let options = harness::config::from_env()
        .unwrap_or_else(|err| panic!("{err:#}"))
        .0
        .flavour(flavour);
    let progress = harness::view::stderr_progress(false);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let subjects = vec![bpf_testmod::SUBJECT.info()];
    let catalogue = catalogue::of_package(dir, env!("CARGO_PKG_NAME"), subjects, &progress)
        .unwrap_or_else(|err| panic!("{err:#}"));
    let artifacts =
        artifacts::prepare(&options, &catalogue, &progress).unwrap_or_else(|err| panic!("{err:#}"));
    prepared.push((flavour, artifacts.clone()));
    artifacts
}

/// The `flavour` kernel's artifacts, the module built with `plant`.
fn planted(flavour: Flavour, plant: &str) -> Artifacts {
    let base = artifacts_for(flavour);
    let info = bpf_testmod::SUBJECT.info();
    let module = info.module.expect("bpf_testmod has a module");
    let progress = harness::view::stderr_progress(false);
    let planted = kmod::ensure_built(&module, &base.kernel, &base.cache, &progress, &[plant])
        .unwrap_or_else(|err| panic!("{err:#}"));
    let mut artifacts = base.clone();
    artifacts.modules.insert(module.name, planted);
    artifacts
}

/// `scenario` on the `flavour` kernel, with the module built with `plant`.
pub fn run_with(flavour: Flavour, plant: &str, scenario: &str) -> ScenarioResult {
    let artifacts = planted(flavour, plant);
    let label = format!("{}-{flavour}-{}", plant.to_lowercase(), std::process::id());
    let options = VmOptions::default().label(label);
    let run = run_scenario(&artifacts, scenario, &options).unwrap_or_else(|err| panic!("{err:#}"));
    // A failure here is the expected one; its logs need no reading.
    if let Some(logs) = &run.kept_logs {
        let _ = std::fs::remove_dir_all(logs);
    }
    run.result
}

/// `scenarios`, in this order, in one VM of the `flavour` kernel, with the
/// module built with `plant`: what `harness run` does on the debug kernel.
pub fn run_in_one_vm(flavour: Flavour, plant: &str, scenarios: &[&str]) -> Batch {
    let artifacts = planted(flavour, plant);
    let scenarios: Vec<String> = scenarios.iter().map(|name| name.to_string()).collect();
    let options = VmOptions::default().label(format!(
        "batch-{}-{}",
        plant.to_lowercase(),
        std::process::id()
    ));
    let boot = |accel, probing| vm::run_batch_on(&artifacts, &scenarios, &options, accel, probing);
    let batch = on_decided_accel(&artifacts.cache, boot).unwrap_or_else(|err| panic!("{err:#}"));
    // A failure here is the expected one; its logs need no reading.
    if let Some(logs) = batch.runs.iter().find_map(|run| run.kept_logs.as_ref()) {
        let _ = std::fs::remove_dir_all(logs);
    }
    batch
}

/// `scenario` with `plant` fails on `flavour` with a splat of `class`
/// holding `text`, and passes blind on the default kernel.
pub fn assert_caught(flavour: Flavour, plant: &str, scenario: &str, class: &str, text: &str) {
    assert_caught_within(1, flavour, plant, scenario, class, text);
}

/// As [`assert_caught`], for a detector that samples (KCSAN): the scenario
/// runs up to `attempts` times, until one run reports the bug.
pub fn assert_caught_within(
    attempts: usize,
    flavour: Flavour,
    plant: &str,
    scenario: &str,
    class: &str,
    text: &str,
) {
    assert_caught_as_one_of(attempts, flavour, plant, scenario, &[(class, text)]);
}

/// As [`assert_caught_within`], when either of several detectors may
/// report the bug (`reports`: each a class and the text its report holds):
/// KFENCE samples allocations, and an object it sampled has its
/// use-after-free reported by KFENCE rather than KASAN.
pub fn assert_caught_as_one_of(
    attempts: usize,
    flavour: Flavour,
    plant: &str,
    scenario: &str,
    reports: &[(&str, &str)],
) {
    let report_of = |failure: &String| {
        let first = failure.lines().next().unwrap_or_default();
        (reports.iter()).find(|(class, _)| first.contains(&format!("splat ({class})")))
    };
    let mut last = None;
    for attempt in 1..=attempts {
        let result = run_with(flavour, plant, scenario);
        let found =
            (result.failures.iter()).find_map(|failure| Some((failure, report_of(failure)?)));
        if let Some((found, (_, text))) = found {
            assert!(found.contains(text), "expected {text:?} in:\n{found}");
            eprintln!("{plant}: reported on run {attempt} of at most {attempts}");
            last = None;
            break;
        }
        last = Some(result);
    }
    if let Some(result) = last {
        panic!(
            "the planted bug went unnoticed in {attempts} run(s); the last: failures {:#?}\n\
             steps {:#?}\nmeasured: {:#?}",
            result.failures, result.steps, result.measurements
        );
    }
    let blind = run_with(Flavour::Default, plant, scenario);
    assert!(
        blind.passed,
        "the default kernel was to pass {plant} blind: {:#?}",
        blind.failures
    );
}
