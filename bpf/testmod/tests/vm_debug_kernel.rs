//! The debug kernel (`--debug-kernel`) sees what the default kernel cannot:
//! each test builds the module with one bug planted in it (the `PLANT_*`
//! switches in kmod/bpf_testmod/bpf_testmod.c, never built for the normal scenarios),
//! runs the `trigger` scenario on the debug kernel, and insists that the
//! scenario fails naming the kernel's report. The nextest setup script
//! `debug-kernel` builds that kernel first (about 10 minutes, once). A
//! subject's own test of the harness's host API, as any crate could write.

use std::path::Path;
use std::sync::OnceLock;

use harness::host::artifacts::{self, Artifacts, PrepareOptions};
use harness::host::catalogue;
use harness::host::kernel::Flavour;
use harness::host::kmod;
use harness::host::progress::Progress;
use harness::host::suite::run_scenario;
use harness::host::vm::VmOptions;
use harness::wire::protocol::ScenarioResult;

fn debug_artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let options = PrepareOptions {
            flavour: Flavour::Debug,
            ..PrepareOptions::from_env().unwrap_or_else(|err| panic!("{err:#}"))
        };
        let progress = Progress::new();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let subjects = vec![bpf_testmod::SUBJECT.info()];
        let catalogue = catalogue::of_package(dir, env!("CARGO_PKG_NAME"), subjects, &progress)
            .unwrap_or_else(|err| panic!("{err:#}"));
        artifacts::prepare(&options, &catalogue, &progress).unwrap_or_else(|err| panic!("{err:#}"))
    })
}

/// The `trigger` scenario on the debug kernel, with the bug that the
/// module's switch `plant` compiles in.
fn trigger_with(plant: &str) -> ScenarioResult {
    let base = debug_artifacts();
    let info = bpf_testmod::SUBJECT.info();
    let module = info.module.expect("bpf_testmod has a module");
    let progress = Progress::new();
    let planted = kmod::ensure_built(&module, &base.kernel, &base.cache, &progress, &[plant])
        .unwrap_or_else(|err| panic!("{err:#}"));
    let mut artifacts = base.clone();
    artifacts.modules.insert(module.name, planted);
    let options = VmOptions {
        label: Some(format!("{}-{}", plant.to_lowercase(), std::process::id())),
        ..VmOptions::default()
    };
    let run = run_scenario(&artifacts, "trigger", &options).unwrap_or_else(|err| panic!("{err:#}"));
    // The failure is the expected one; its logs need no reading.
    if let Some(logs) = &run.kept_logs {
        let _ = std::fs::remove_dir_all(logs);
    }
    run.result
}

/// The scenario failed, and one failure is a splat of `class` holding `text`.
fn assert_caught(result: &ScenarioResult, class: &str, text: &str) {
    assert!(
        !result.passed,
        "the planted bug went unnoticed: {:#?}",
        result.steps
    );
    let splat = format!("the kernel log holds a splat ({class})");
    let found = result
        .failures
        .iter()
        .find(|failure| failure.starts_with(&splat));
    let Some(found) = found else {
        panic!(
            "no {class} splat among the failures: {:#?}",
            result.failures
        );
    };
    assert!(found.contains(text), "expected {text:?} in:\n{found}");
}

/// A read of freed memory on the trigger path. On the default kernel the
/// same module passes `trigger`: the freed byte is read without complaint.
#[test]
fn debug_kernel_catches_use_after_free() {
    let result = trigger_with("PLANT_USE_AFTER_FREE");
    assert_caught(
        &result,
        "KASAN memory error",
        "BUG: KASAN: slab-use-after-free in",
    );
}

/// The ops read and called without rcu_read_lock(). On the default kernel
/// the same module passes `trigger`: nothing checks the RCU read section.
#[test]
fn debug_kernel_catches_missing_rcu_read_lock() {
    let result = trigger_with("PLANT_MISSING_RCU_READ_LOCK");
    assert_caught(&result, "RCU usage", "suspicious RCU usage");
}

/// Two locks taken in one order on attach and in the other on trigger. On
/// the default kernel the same module passes `trigger`: without two tasks
/// racing there is no deadlock to see, and nothing records lock order.
#[test]
fn debug_kernel_catches_lock_order_inversion() {
    let result = trigger_with("PLANT_LOCK_ORDER");
    assert_caught(
        &result,
        "lockdep lock order or state",
        "possible circular locking dependency detected",
    );
}
