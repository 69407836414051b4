//! Every scenario of the catalogue, each in its own VM, with an insta
//! snapshot of what the kernel printed (normalised). These tests boot VMs:
//! select them with `cargo nextest run -E 'binary(vm_scenarios)'`.

use guest_agent::catalogue;
use harness::{artifacts, normalise, suite, vm};

/// Boots a VM for `scenario` and checks it: a failed scenario prints its
/// failed expectations first (they say what went wrong), then the snapshot
/// is compared (its diff shows where), then the test fails.
fn check(scenario: &str) {
    let artifacts = artifacts::prepared().unwrap_or_else(|err| panic!("{err:#}"));
    let run = suite::run_scenario(artifacts, scenario, &vm::VmOptions::default())
        .unwrap_or_else(|err| panic!("scenario {scenario} produced no result:\n{err:#}"));
    let failures = failure_report(scenario, &run);
    if let Some(failures) = &failures {
        // stdout, where insta prints its diff, so the two come in this order.
        println!("{failures}");
    }
    insta::assert_snapshot!(scenario, normalise::snapshot_text(&run.result));
    if let Some(failures) = failures {
        panic!("{failures}");
    }
}

fn failure_report(scenario: &str, run: &vm::ScenarioRun) -> Option<String> {
    if run.result.passed {
        return None;
    }
    let normalised = normalise::normalise(&run.result);
    Some(format!(
        "scenario {scenario} failed:\n- {}\nlogs kept in {}\nconsole tail:\n{}",
        normalised.failures.join("\n- "),
        run.kept_logs
            .as_ref()
            .map_or("(not kept)".to_owned(), |path| path.display().to_string()),
        run.console_tail
    ))
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name));
            }
        )*

        /// A scenario added to the catalogue without a test here fails this.
        #[test]
        fn every_scenario_in_the_catalogue_has_a_test() {
            let tested = [$(stringify!($name)),*];
            let catalogue: Vec<&str> = catalogue::names().collect();
            assert_eq!(catalogue, tested);
        }
    };
}

scenario_tests!(
    attach,
    trigger,
    detach,
    second_attach,
    cycles,
    unload_while_attached,
    sigkill_loader,
    verifier_reject,
    no_module,
    ctx_write_rejected,
    long_message,
    concurrent_attach,
    release_race,
    tutorial_loader,
    stress,
);
