//! A scenario's verdict knows its kernel type: the scenario that expects
//! scx_qmap's `scx_bpf_error()` ejection passes (its own VM test), and the
//! same scenario run as if it expected nothing fails, naming the exit's
//! kind, reason and message. Without this, an ejected scheduler would be a
//! green scenario.

use std::path::Path;

use harness::host::suite::run_scenario;
use harness::host::vm::VmOptions;
use harness::wire::cli::Fault;

#[test]
fn an_ejection_the_scenario_does_not_expect_fails_it_naming_the_kind_and_reason() {
    let artifacts = harness::config::package_artifacts(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        env!("CARGO_PKG_NAME"),
        vec![scx::SUBJECT.info()],
    );
    let vm = VmOptions::default()
        .fault(Fault::ExpectNoExit)
        .label(format!("expect-no-exit-{}", std::process::id()));
    let run =
        run_scenario(&artifacts, "scx_qmap_error", &vm).unwrap_or_else(|err| panic!("{err:#}"));
    if let Some(logs) = &run.kept_logs {
        let _ = std::fs::remove_dir_all(logs);
    }
    let result = run.result;
    assert!(!result.passed, "an unexpected ejection passed: {result:#?}");
    let named = result.failures.iter().any(|failure| {
        failure.contains("the kernel ejected the BPF scheduler \"qmap\": scx_bpf_error (test triggering error) (ErrorBpf)")
    });
    assert!(
        named,
        "no failure names the ejection: {:#?}",
        result.failures
    );
    let exit = result.exits.iter().find(|exit| exit.name == "qmap");
    let exit = exit.unwrap_or_else(|| panic!("no exit in the result: {:#?}", result.exits));
    assert_eq!(exit.kind, harness::ExitKind::ErrorBpf);
    assert_eq!(exit.message.as_deref(), Some("test triggering error"));
}
