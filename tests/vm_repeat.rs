//! `harness run` repeated, as a person runs it: `--repeat N` counts each
//! scenario's passes, `--retries N` calls a scenario that fails and then
//! passes flaky (exit code 3), `--until-fail` stops at the first round that
//! is not clean. A scenario is made to fail one time in two honestly: the
//! harness's hidden `--fail-every-other FILE` counts VMs in a file on the
//! host, and the agent of each VM that makes the count odd fails the
//! scenario after running it (`Fault::FailScenario`). These boot VMs; the
//! harness binary is the one the nextest setup script built.

use std::path::Path;

mod common;

/// `harness run ARGS` in this repository: its exit code, stdout and stderr.
fn harness_run(args: &[&str]) -> (i32, String, String) {
    let mut words = vec!["run"];
    words.extend_from_slice(args);
    common::harness(&words)
}

/// The one scenario of a repeated run's JSON.
fn only_scenario(stdout: &str, stderr: &str) -> serde_json::Value {
    let json: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}):\n{stdout}\n{stderr}"));
    let scenarios = json["scenarios"].as_array().expect("scenarios").clone();
    assert_eq!(scenarios.len(), 1, "{json:#}");
    scenarios.into_iter().next().unwrap()
}

/// The VM count in `counter`.
fn count(counter: &Path) -> u64 {
    std::fs::read_to_string(counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_scenario_failing_one_time_in_two_is_flaky_with_one_retry() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("vms");
    let counter_arg = counter.to_str().unwrap();
    let args = ["--scenario", "no_module", "--repeat", "2", "--retries", "1"];
    let (code, stdout, stderr) =
        harness_run(&[&args[..], &["--json", "--fail-every-other", counter_arg]].concat());
    let scenario = only_scenario(&stdout, &stderr);
    // Each round: its first VM (odd) fails, the retry (even) passes.
    assert_eq!(scenario["verdict"], "flaky", "{scenario:#}\n{stderr}");
    assert_eq!(scenario["flaky"], true);
    assert_eq!(scenario["flaky_rounds"], 2);
    assert_eq!(scenario["failed_rounds"], 0);
    assert_eq!(
        (&scenario["runs"], &scenario["passed"], &scenario["failed"]),
        (&4.into(), &2.into(), &2.into())
    );
    let rows = scenario["rows"].as_array().unwrap();
    let tries: Vec<(u64, u64, bool)> = rows
        .iter()
        .map(|row| {
            let at = |key: &str| row[key].as_u64().unwrap();
            (at("round"), at("attempt"), row["passed"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        tries,
        [(1, 0, false), (1, 1, true), (2, 0, false), (2, 1, true)]
    );
    let failure = rows[0]["result"]["failures"].to_string();
    assert!(failure.contains("failed on purpose"), "{failure}");
    // A failed run's logs are kept; a passing one's are not.
    let logs = rows[0]["logs"].as_str().expect("the failed run's logs");
    assert!(Path::new(logs).join("console.log").is_file(), "{logs}");
    assert!(rows[1]["logs"].is_null(), "{:#}", rows[1]);
    let _ = std::fs::remove_dir_all(rows[2]["logs"].as_str().unwrap());
    let _ = std::fs::remove_dir_all(logs);
    // Flaky only: exit code 3, not a pass, not a failure, not a usage error.
    assert_eq!(code, 3, "{stderr}");
    // Counted once a VM (a boot the harness retried runs the same fault).
    assert_eq!(count(&counter), 4);
}

#[test]
fn a_failure_with_no_retry_left_fails_and_its_first_failure_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("vms");
    let counter_arg = counter.to_str().unwrap();
    let (code, stdout, stderr) = harness_run(&[
        "--scenario",
        "no_module",
        "--retries",
        "0",
        "--repeat",
        "2",
        "--fail-every-other",
        counter_arg,
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    // One line for the scenario: FAIL, 2 runs, 1 passed, 1 failed.
    let line = stdout
        .lines()
        .find(|line| line.starts_with("no_module "))
        .unwrap_or_else(|| panic!("no line for no_module:\n{stdout}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        words,
        ["no_module", "FAIL", "2", "1", "1", "0", "0"],
        "{stdout}"
    );
    assert!(
        stdout.contains("=== no_module: first failure, round 1 (FAIL) ===")
            && stdout.contains("- failed on purpose"),
        "{stdout}"
    );
    assert!(stdout.contains("round 1 failed: "), "{stdout}");
    remove_kept_logs(&stdout);
}

#[test]
fn until_fail_stops_at_the_first_round_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("vms");
    // The next VM is the second: it passes, the third fails.
    std::fs::write(&counter, "1").unwrap();
    let (code, stdout, stderr) = harness_run(&[
        "--scenario",
        "no_module",
        "--repeat",
        "5",
        "--until-fail",
        "--fail-every-other",
        counter.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("2 rounds, each run in a VM of its own; --until-fail stopped at round 2"),
        "{stdout}"
    );
    assert_eq!(count(&counter), 3, "no VM after the failing one");
    remove_kept_logs(&stdout);
}

#[test]
fn repeat_prints_a_pass_count_per_scenario() {
    let (code, stdout, stderr) = harness_run(&[
        "--repeat",
        "3",
        "--scenario",
        "attach",
        "--scenario",
        "no_module",
    ]);
    assert!(
        stdout.contains("scenario ") && stdout.contains(" runs passed failed flaky boot retries"),
        "{stdout}"
    );
    for name in ["attach", "no_module"] {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{stdout}\n{stderr}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, result, runs, passed, failed, flaky, boot_retries] = words[..] else {
            panic!("{line}");
        };
        assert_eq!(
            (runs, passed, failed, flaky),
            ("3", "3", "0", "0"),
            "{stdout}\n{stderr}"
        );
        // A boot the harness retried (a stalled one, say) is flaky, and says so.
        match boot_retries {
            "0" => assert_eq!(result, "pass", "{stdout}"),
            _ => assert_eq!(result, "FLAKY", "{stdout}"),
        }
    }
    assert!(
        stdout.contains("3 rounds, each run in a VM of its own"),
        "{stdout}"
    );
    let expected = match stdout.contains("FLAKY") {
        true => 3,
        false => 0,
    };
    assert_eq!(code, expected, "{stdout}\n{stderr}");
}

/// The failed runs' kept logs a text report names (`round N failed: DIR`),
/// removed: these failures were asked for.
fn remove_kept_logs(stdout: &str) {
    for line in stdout.lines() {
        if let Some((_, dir)) = line.split_once(" failed: ") {
            let _ = std::fs::remove_dir_all(dir.trim());
        }
    }
}
