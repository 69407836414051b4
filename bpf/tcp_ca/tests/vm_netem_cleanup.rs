//! A scenario that fails midway leaves no netem behind: tcp_ca_loss, made
//! to fail right after its first step (the qdisc put on lo), still ends
//! with the qdisc removed, as a step of its own that tc carried out, so
//! the next scenario in the same VM runs on a plain loopback.

use std::path::Path;

use harness::host::suite::run_scenario;
use harness::host::vm::VmOptions;
use harness::wire::cli::Fault;
use harness::Outcome;

#[test]
fn a_scenario_that_fails_after_setting_netem_still_removes_it() {
    let artifacts = harness::config::package_artifacts(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        env!("CARGO_PKG_NAME"),
        vec![tcp_ca::SUBJECT.info()],
    );
    let vm = VmOptions::default()
        .fault(Fault::FailAfterFirstStep)
        .label(format!("netem-cleanup-{}", std::process::id()));
    let run = run_scenario(&artifacts, "tcp_ca_loss", &vm).unwrap_or_else(|err| panic!("{err:#}"));
    if let Some(logs) = &run.kept_logs {
        let _ = std::fs::remove_dir_all(logs);
    }
    let result = run.result;
    assert!(!result.passed, "the scenario passed its fault: {result:#?}");
    let aborted = result.failures.iter().any(|failure| {
        failure.starts_with("the scenario could not run: the first step failed on purpose")
    });
    assert!(aborted, "it did not fail midway: {:#?}", result.failures);
    let actions: Vec<&str> = result
        .steps
        .iter()
        .map(|step| step.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "tc qdisc replace dev lo root netem delay 5ms reorder 100% gap 13",
            "tc qdisc del dev lo root",
        ],
        "the transfer ran, or the qdisc was not removed: {:#?}",
        result.steps
    );
    assert_eq!(result.steps[0].outcome, Outcome::exited(0));
    assert_eq!(
        result.steps[1].outcome,
        Outcome::exited(0),
        "tc could not remove the qdisc: {}",
        result.steps[1].stderr
    );
}
