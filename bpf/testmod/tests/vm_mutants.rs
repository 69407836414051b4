//! Each contract scenario fails on the module mutant it exists to catch:
//! the module built with one `PLANT_*` switch that breaks the contract
//! (kmod/bpf_testmod/bpf_testmod.c), the scenario run on the default
//! kernel, and the failure it must report. A scenario that passed here
//! would be checking nothing.

mod common;

use harness::host::kernel::Flavour;

/// An `.update` that returns 0 and switches nothing: `link_update` must see
/// the old implementation still called where the new one should be.
#[test]
fn link_update_fails_when_update_switches_nothing() {
    let result = common::run_with(Flavour::Default, "PLANT_UPDATE_NOOP", "link_update");
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
