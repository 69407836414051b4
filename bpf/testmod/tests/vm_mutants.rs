//! Each contract scenario fails on the module mutant it exists to catch:
//! the module built with one `PLANT_*` switch that breaks the contract
//! (kmod/bpf_testmod/bpf_testmod.c), the scenario run on the default
//! kernel, and the failure it must report. A scenario that passed here
//! would be checking nothing.

use std::path::Path;
use std::sync::OnceLock;

use harness::host::artifacts::{self, Artifacts, PrepareOptions};
use harness::host::catalogue;
use harness::host::kmod;
use harness::host::progress::Progress;
use harness::host::suite::run_scenario;
use harness::host::vm::VmOptions;
use harness::wire::protocol::ScenarioResult;

fn default_artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let options = PrepareOptions::from_env().unwrap_or_else(|err| panic!("{err:#}"));
        let progress = Progress::new();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let subjects = vec![bpf_testmod::SUBJECT.info()];
        let catalogue = catalogue::of_package(dir, env!("CARGO_PKG_NAME"), subjects, &progress)
            .unwrap_or_else(|err| panic!("{err:#}"));
        artifacts::prepare(&options, &catalogue, &progress).unwrap_or_else(|err| panic!("{err:#}"))
    })
}

/// `scenario` with the module built with the switch `plant`.
fn run_with(plant: &str, scenario: &str) -> ScenarioResult {
    let base = default_artifacts();
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
    let run = run_scenario(&artifacts, scenario, &options).unwrap_or_else(|err| panic!("{err:#}"));
    // The failure is the expected one; its logs need no reading.
    if let Some(logs) = &run.kept_logs {
        let _ = std::fs::remove_dir_all(logs);
    }
    run.result
}

/// An `.update` that returns 0 and switches nothing: `link_update` must see
/// the old implementation still called where the new one should be.
#[test]
fn link_update_fails_when_update_switches_nothing() {
    let result = run_with("PLANT_UPDATE_NOOP", "link_update");
    assert!(!result.passed, "the no-op .update went unnoticed");
    let expected = "the link updated to ops_b, 2 triggers: ops_a_test_1 ran 2 times, \
                    ops_b_test_1 ran 2 times";
    let named = result.failures.iter().any(|failure| {
        failure.contains(expected)
            && failure.contains("ops_a_test_1 ran 4 times, ops_b_test_1 ran 0 times")
    });
    assert!(
        named,
        "expected a failure naming the runs, got {:#?}",
        result.failures
    );
}
