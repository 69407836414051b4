//! A repeated run's report (`--repeat`, `--until-fail`, `--retries`): a
//! line per scenario with its runs, passes, failures, flaky rounds and
//! retried boots; for each scenario that did not pass cleanly, its first
//! failure in full, where every failed run's and retried boot's logs are;
//! and the same as JSON, each run's row included.

use std::fmt::Write as _;

use serde::Serialize;

use super::{json_row, logs_of, name_width, render_failure, JsonRow, KernelInfo};
use crate::artifacts::Artifacts;
use crate::repeat::{Plan, Repeated, Rounds, RunAt, ScenarioRuns, Verdict};
use crate::suite::Row;

/// One line per scenario: its verdict, runs, passed and failed runs,
/// flaky rounds and retried boots, and on a kernel that reports data races
/// (`races`) how many runs saw one; then the counts of each verdict.
pub fn render_table(repeated: &Repeated, races: bool) -> String {
    let names = repeated.scenarios.iter().map(|runs| runs.scenario.as_str());
    let width = name_width(names);
    let raced = |count: String| match races {
        true => format!(" {count:>5}"),
        false => String::new(),
    };
    let mut text = format!(
        "{:<width$} {:<6} {:>5} {:>6} {:>6} {:>5} {:>12}{}\n",
        "scenario",
        "result",
        "runs",
        "passed",
        "failed",
        "flaky",
        "boot retries",
        raced("raced".into())
    );
    for runs in &repeated.scenarios {
        let _ = writeln!(
            text,
            "{:<width$} {:<6} {:>5} {:>6} {:>6} {:>5} {:>12}{}",
            runs.scenario,
            runs.verdict().word(),
            runs.runs(),
            runs.passed(),
            runs.failed(),
            runs.rounds_that(Verdict::Flaky),
            runs.boot_retries(),
            raced(runs.raced().to_string())
        );
    }
    let count = |verdict| {
        let of = repeated
            .scenarios
            .iter()
            .filter(|runs| runs.verdict() == verdict);
        of.count()
    };
    let _ = writeln!(
        text,
        "{} passed, {} flaky, {} failed",
        count(Verdict::Passed),
        count(Verdict::Flaky),
        count(Verdict::Failed)
    );
    text
}

/// How many rounds ran, and why no more when `--until-fail` stopped them.
pub fn render_rounds(repeated: &Repeated, plan: Plan) -> String {
    let rounds = repeated.rounds;
    let retries = match plan.retries {
        0 => String::new(),
        count => format!(", a failed run tried again up to {count} times"),
    };
    let stopped = match plan.rounds {
        Rounds::UntilFail { .. } if repeated.verdict() != Verdict::Passed => format!(
            "; --until-fail stopped at round {}, the first that did not pass cleanly",
            repeated.rounds
        ),
        Rounds::UntilFail {
            at_most: Some(most),
        } => {
            format!("; --until-fail: every one of the {most} rounds passed")
        }
        _ => String::new(),
    };
    let rounds = match rounds {
        1 => "1 round".to_owned(),
        count => format!("{count} rounds"),
    };
    format!("{rounds}, each run in a VM of its own{retries}{stopped}\n")
}

/// For each scenario that did not pass cleanly: its first failure in full
/// (failed expectations, snapshot diff, logs, rerun commands), where the
/// other failed runs' logs are kept, and each retried boot's.
pub fn render_failures(repeated: &Repeated, artifacts: &Artifacts) -> String {
    let mut text = String::new();
    for runs in &repeated.scenarios {
        if runs.verdict() == Verdict::Passed {
            continue;
        }
        if let Some(first) = runs.first_failure() {
            let _ = writeln!(
                text,
                "\n=== {}: first failure, {} ({}) ===",
                runs.scenario,
                at_words(first.at),
                first.row.verdict()
            );
            render_failure(&mut text, &first.row, artifacts);
        }
        text.push_str(&kept_logs(runs));
    }
    text
}

/// `round 2` or `round 2, retry 1`.
fn at_words(at: RunAt) -> String {
    match at.attempt {
        0 => format!("round {}", at.round),
        retry => format!("round {}, retry {retry}", at.round),
    }
}

/// Where each failed run's logs and each retried boot's are.
fn kept_logs(runs: &ScenarioRuns) -> String {
    let mut text = String::new();
    for tried in &runs.tries {
        if !tried.row.passed() {
            let logs = failed_run_words(&tried.row);
            let _ = writeln!(text, "  {} failed: {logs}", at_words(tried.at));
        }
        if let Some(boot) = tried.row.retried_boot() {
            let _ = writeln!(
                text,
                "  {}: boot retried ({}), that boot's logs: {}\n    {}",
                at_words(tried.at),
                boot.cause.as_str(),
                boot.logs.display(),
                boot.failure.lines().next().unwrap_or_default()
            );
        }
    }
    match text.is_empty() {
        true => text,
        false => format!("{} runs that were not clean:\n{text}", runs.scenario),
    }
}

/// Where a failed run's logs are; a run whose VM passed has none, and
/// its snapshot says why it failed.
fn failed_run_words(row: &Row) -> String {
    match (&row.outcome, logs_of(row)) {
        (_, Some(path)) => path.display().to_string(),
        (Ok(_), None) => match row
            .snapshot
            .as_ref()
            .and_then(|(_, verdict)| verdict.pending())
        {
            Some(pending) => format!(
                "its VM passed; the snapshot is {}, the output waits in {}",
                row.snapshot_word(),
                pending.display()
            ),
            None => format!("its VM passed; the snapshot is {}", row.snapshot_word()),
        },
        (Err(_), None) => "not kept (the harness could not run the VM)".to_owned(),
    }
}

#[derive(Serialize)]
struct JsonRun<'a> {
    #[serde(flatten)]
    at: RunAt,
    #[serde(flatten)]
    row: JsonRow<'a>,
}

#[derive(Serialize)]
struct JsonScenario<'a> {
    scenario: &'a str,
    kernel: &'a KernelInfo,
    /// `passed`, `flaky` or `failed`.
    verdict: Verdict,
    runs: usize,
    passed: usize,
    failed: usize,
    /// Whether a round passed only on a retry or after a retried boot.
    flaky: bool,
    flaky_rounds: usize,
    failed_rounds: usize,
    boot_retries: usize,
    /// How many runs failed on a data race KCSAN reported in the subject's
    /// module or the BPF core; null on a kernel without KCSAN.
    raced: Option<usize>,
    rows: Vec<JsonRun<'a>>,
}

#[derive(Serialize)]
struct JsonRepeated<'a> {
    verdict: Verdict,
    exit_code: u8,
    retries: usize,
    /// Each kernel's rounds.
    rounds: Vec<usize>,
    scenarios: Vec<JsonScenario<'a>>,
}

/// Every kernel's scenarios with their figures and each run's row.
pub fn render_json(kernels: &[(&KernelInfo, &Repeated)], plan: Plan) -> String {
    let verdict = (kernels.iter().map(|(_, repeated)| repeated.verdict()))
        .max()
        .unwrap_or(Verdict::Passed);
    let scenarios = kernels.iter().flat_map(|(kernel, repeated)| {
        (repeated.scenarios.iter()).map(move |runs| json_scenario(kernel, runs))
    });
    let json = JsonRepeated {
        verdict,
        exit_code: verdict.exit_code(),
        retries: plan.retries,
        rounds: kernels
            .iter()
            .map(|(_, repeated)| repeated.rounds)
            .collect(),
        scenarios: scenarios.collect(),
    };
    serde_json::to_string_pretty(&json).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}

fn json_scenario<'a>(kernel: &'a KernelInfo, runs: &'a ScenarioRuns) -> JsonScenario<'a> {
    let rows = (runs.tries.iter()).map(|tried| JsonRun {
        at: tried.at,
        row: json_row(kernel, &tried.row),
    });
    JsonScenario {
        scenario: &runs.scenario,
        kernel,
        verdict: runs.verdict(),
        runs: runs.runs(),
        passed: runs.passed(),
        failed: runs.failed(),
        flaky: runs.rounds_that(Verdict::Flaky) > 0,
        flaky_rounds: runs.rounds_that(Verdict::Flaky),
        failed_rounds: runs.rounds_that(Verdict::Failed),
        boot_retries: runs.boot_retries(),
        raced: kernel.checks_races().then(|| runs.raced()),
        rows: rows.collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repeat::tests::{runs, tried};

    fn repeated() -> Repeated {
        let clean = runs(vec![tried(1, 0, true, false), tried(2, 0, true, false)]);
        let mut flaky = runs(vec![
            tried(1, 0, false, false),
            tried(1, 1, true, false),
            tried(2, 0, true, true),
        ]);
        flaky.scenario = "second".into();
        Repeated {
            scenarios: vec![clean, flaky],
            rounds: 2,
        }
    }

    #[test]
    fn a_line_per_scenario_counts_its_runs() {
        let table = render_table(&repeated(), false);
        let lines: Vec<Vec<&str>> = (table.lines())
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[1],
            ["attach", "pass", "2", "2", "0", "0", "0"],
            "{table}"
        );
        assert_eq!(
            lines[2],
            ["second", "FLAKY", "3", "2", "1", "2", "1"],
            "{table}"
        );
        assert_eq!(lines[3].join(" "), "1 passed, 1 flaky, 0 failed");
    }

    #[test]
    fn a_race_kernel_table_counts_the_runs_that_saw_a_race() {
        let mut repeated = repeated();
        let first = &mut repeated.scenarios[1].tries[0].row.outcome;
        let Ok(run) = first else {
            panic!("the test's row has a result");
        };
        run.result.failures = vec!["the kernel log holds a splat (data race (KCSAN)):\n\
             BUG: KCSAN: data-race in op_write [my_module] / op_write [my_module]"
            .into()];
        let table = render_table(&repeated, true);
        let lines: Vec<Vec<&str>> = (table.lines())
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0].last(), Some(&"raced"), "{table}");
        assert_eq!(lines[1].last(), Some(&"0"), "{table}");
        assert_eq!(lines[2].last(), Some(&"1"), "{table}");
        // Any other failure is not a race.
        assert_eq!(repeated.scenarios[1].failed(), 1);
        assert!(!render_table(&repeated, false).contains("raced"));
    }

    #[test]
    fn the_rounds_line_says_why_until_fail_stopped() {
        let plan = Plan {
            rounds: Rounds::UntilFail { at_most: Some(5) },
            retries: 1,
        };
        assert_eq!(
            render_rounds(&repeated(), plan),
            "2 rounds, each run in a VM of its own, a failed run tried again up to 1 \
             times; --until-fail stopped at round 2, the first that did not pass cleanly\n"
        );
        let once = Repeated {
            scenarios: Vec::new(),
            rounds: 1,
        };
        assert_eq!(
            render_rounds(&once, Plan::ONCE),
            "1 round, each run in a VM of its own\n"
        );
    }

    #[test]
    fn the_runs_that_were_not_clean_name_their_logs() {
        let kept = kept_logs(&repeated().scenarios[1]);
        assert!(kept.contains("round 1 failed: /logs/1-0"), "{kept}");
        assert!(
            kept.contains("round 2: boot retried (stalled), that boot's logs: /logs/first-boot"),
            "{kept}"
        );
        assert_eq!(kept_logs(&repeated().scenarios[0]), "");
    }

    /// A VM that passed keeps no logs: its run failed on its snapshot,
    /// and the report says so and where the new output is, rather than
    /// blaming the VM.
    #[test]
    fn a_run_that_failed_on_its_new_snapshot_says_so() {
        let mut only_new = tried(1, 0, true, false);
        let file = crate::snapshot::SnapshotFile {
            name: "attach".into(),
            suffix: None,
            description: None,
            path: "/snaps/attach.snap".into(),
        };
        let pending = "/snaps/attach.snap.new".into();
        let verdict = crate::snapshot::SnapshotVerdict::New { pending };
        only_new.row.snapshot = Some((file, verdict));
        let kept = kept_logs(&runs(vec![only_new]));
        assert!(
            kept.contains(
                "round 1 failed: its VM passed; the snapshot is new, the output waits in \
                 /snaps/attach.snap.new"
            ),
            "{kept}"
        );
        assert!(!kept.contains("could not run the VM"), "{kept}");
    }
}
