//! Every scenario every subject declares, each in its own VM, with an insta
//! snapshot of what the kernel printed (normalised). The tests are made from
//! the declarations (`guest_agent::scenario::all()`), so a scenario declared
//! is a scenario tested, and one without a snapshot fails. These tests boot
//! VMs: select them with `cargo nextest run -E 'binary(vm_scenarios)'`.

use guest_agent::scenario::Scenario;
use harness::kernel::Series;
use harness::{artifacts, normalise, suite, vm};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    // Named by the scenario alone (names are unique across subjects), so
    // `-E 'test(=trigger)'` selects one.
    let trials = guest_agent::scenario::all()
        .map(|(_, scenario)| Trial::test(scenario.name, move || check(scenario)))
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}

/// Boots a VM for `scenario` and checks it: a failed scenario prints its
/// failed expectations first (they say what went wrong), then the snapshot
/// is compared (its diff shows where), then the test fails.
fn check(declared: &Scenario) -> Result<(), Failed> {
    let scenario = declared.name;
    let artifacts = artifacts::prepared().map_err(|err| format!("{err:#}"))?;
    let run = suite::run_scenario(artifacts, scenario, &vm::VmOptions::default())
        .map_err(|err| format!("scenario {scenario} produced no result:\n{err:#}"))?;
    let failures = failure_report(scenario, &run);
    if let Some(failures) = &failures {
        // stdout, where insta prints its diff, so the two come in this order.
        println!("{failures}");
    }
    let snapshot = normalise::snapshot_text(&run.result);
    // Named after this binary and the scenario: vm_scenarios__<scenario>.snap,
    // shared by every kernel but those on which the scenario's declaration
    // says the kernel's output differs (vm_scenarios__<scenario>@<series>.snap).
    let mut settings = insta::Settings::clone_current();
    if let Some(series) = Series::parse(&artifacts.kernel.version).map(|s| s.to_string()) {
        if let Some(why) = declared.difference_on(&series) {
            settings.set_snapshot_suffix(series);
            settings.set_description(why);
        }
    }
    settings.bind(|| insta::assert_snapshot!(scenario, snapshot));
    match failures {
        Some(failures) => Err(failures.into()),
        None => Ok(()),
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
