//! Runs repeated to measure flakiness: the selected scenarios in rounds
//! (each run in a VM of its own), a failed run tried again up to a
//! number of retries, and per scenario how many runs passed, which rounds
//! passed only on a retry (flaky, never a pass) and which boots the
//! harness ended and booted again by itself. The exit code follows.

use crate::artifacts::Artifacts;
use crate::suite::{run_many, Row, SuiteOptions};

/// What `harness run` exits with; `--help` prints [`EXIT_CODES`].
pub mod exit {
    /// Every run passed at its first try, and no boot was retried.
    pub const PASSED: u8 = 0;
    /// A scenario failed every try of a round, or the harness could not run.
    pub(crate) const FAILED: u8 = 1;
    /// The command line was wrong: clap's usage error, before anything ran.
    pub const USAGE: u8 = 2;
    /// Nothing failed for good, but a run passed only when tried again (a
    /// retry, or a boot the harness ended and booted again): flaky. Not 2,
    /// which clap gives a usage error: a CI must not read a typo as flaky.
    pub const FLAKY: u8 = 3;
}

/// The exit codes, as `harness run --help` states them.
pub const EXIT_CODES: &str = "Exit codes:\n  \
    0  every run passed at its first try, no boot retried\n  \
    1  a scenario failed (every try of a round), or the harness could not run\n  \
    2  the command line was wrong (nothing ran)\n  \
    3  flaky only: a run passed on a retry (--retries), or after a boot the harness \
    retried (a stalled or panicked boot)";

/// How many rounds to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounds {
    /// This many.
    Fixed(usize),
    /// Until a round is not a clean pass (a scenario failed or was flaky,
    /// or a boot was retried), and at most this many when bounded.
    UntilFail {
        /// The most rounds to run; None: no bound.
        at_most: Option<usize>,
    },
}

impl Rounds {
    /// Whether a round numbered `round` (from 1) is to run, after rounds
    /// that were all clean so far (`clean`).
    fn another(self, round: usize, clean: bool) -> bool {
        match self {
            Rounds::Fixed(count) => round <= count,
            Rounds::UntilFail { at_most } => clean && at_most.is_none_or(|most| round <= most),
        }
    }
}

/// How a run is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// The rounds of every selected scenario.
    pub rounds: Rounds,
    /// How many times a failed run is tried again within its round.
    pub retries: usize,
}

impl Plan {
    /// These rounds, each failed run tried again up to `retries` times.
    pub fn new(rounds: Rounds, retries: usize) -> Self {
        Plan { rounds, retries }
    }

    /// One round, no retry: a plain `harness run`.
    pub(crate) const ONCE: Plan = Plan {
        rounds: Rounds::Fixed(1),
        retries: 0,
    };

    /// Whether it is more than one plain run (the report then counts).
    pub fn repeats(&self) -> bool {
        *self != Plan::ONCE
    }
}

/// Which run of a scenario this is: its round and its try within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RunAt {
    /// From 1.
    pub round: usize,
    /// 0 for the round's first try, then each retry's number.
    pub attempt: usize,
}

/// One run of a scenario.
pub(crate) struct Tried {
    /// Which run.
    pub(crate) at: RunAt,
    /// What the run gave.
    pub(crate) row: Row,
}

/// How a round, a scenario or a whole run came out; ordered from best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Passed at the first try, its boot not retried.
    Passed,
    /// Passed, but only on a retry or after a retried boot.
    Flaky,
    /// No try passed.
    Failed,
}

impl Verdict {
    /// The exit code it makes (see [`exit`]).
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => exit::PASSED,
            Verdict::Flaky => exit::FLAKY,
            Verdict::Failed => exit::FAILED,
        }
    }

    /// `pass`, `FLAKY`, `FAIL`, as the report shows it.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Verdict::Passed => "pass",
            Verdict::Flaky => "FLAKY",
            Verdict::Failed => "FAIL",
        }
    }
}

/// Every run of one scenario.
pub(crate) struct ScenarioRuns {
    /// The scenario.
    pub(crate) scenario: String,
    /// Its runs, in the order they ran.
    pub(crate) tries: Vec<Tried>,
}

impl ScenarioRuns {
    /// How many VMs ran it (retries included).
    pub(crate) fn runs(&self) -> usize {
        self.tries.len()
    }

    /// How many of its runs passed.
    pub(crate) fn passed(&self) -> usize {
        self.tries.iter().filter(|tried| tried.row.passed()).count()
    }

    /// How many of its runs failed.
    pub(crate) fn failed(&self) -> usize {
        self.runs() - self.passed()
    }

    /// How many of its runs failed on a data race KCSAN reported in the
    /// subject's module or the BPF core: how often a race kernel's sampling
    /// saw a race this scenario hunts.
    pub fn raced(&self) -> usize {
        self.tries
            .iter()
            .filter(|tried| tried.row.saw_race())
            .count()
    }

    /// How many boots of its VMs the harness ended and booted again.
    pub(crate) fn boot_retries(&self) -> usize {
        let retried = |tried: &&Tried| tried.row.retried_boot().is_some();
        self.tries.iter().filter(retried).count()
    }

    /// Each round's verdict, in order.
    pub(crate) fn rounds(&self) -> Vec<Verdict> {
        let last = self
            .tries
            .iter()
            .map(|tried| tried.at.round)
            .max()
            .unwrap_or(0);
        (1..=last)
            .filter_map(|round| {
                let tries: Vec<&Tried> = self
                    .tries
                    .iter()
                    .filter(|tried| tried.at.round == round)
                    .collect();
                round_verdict(&tries)
            })
            .collect()
    }

    /// How many rounds came out `verdict`.
    pub(crate) fn rounds_that(&self, verdict: Verdict) -> usize {
        self.rounds()
            .into_iter()
            .filter(|&of| of == verdict)
            .count()
    }

    /// Its worst round's.
    pub(crate) fn verdict(&self) -> Verdict {
        self.rounds().into_iter().max().unwrap_or(Verdict::Passed)
    }

    /// Its first run that failed.
    pub(crate) fn first_failure(&self) -> Option<&Tried> {
        self.tries.iter().find(|tried| !tried.row.passed())
    }
}

/// A round of one scenario: passed at its first try with its boot not
/// retried, or passed some other way (flaky), or not at all; None without
/// a try.
fn round_verdict(tries: &[&Tried]) -> Option<Verdict> {
    let first = tries.iter().find(|tried| tried.at.attempt == 0)?;
    let clean = first.row.passed() && first.row.retried_boot().is_none();
    Some(if clean {
        Verdict::Passed
    } else if tries.iter().any(|tried| tried.row.passed()) {
        Verdict::Flaky
    } else {
        Verdict::Failed
    })
}

/// A repeated run's outcome on one kernel.
#[non_exhaustive]
pub struct Repeated {
    /// Each selected scenario's runs, in the order asked.
    pub(crate) scenarios: Vec<ScenarioRuns>,
    /// How many rounds ran.
    pub(crate) rounds: usize,
}

impl Repeated {
    /// The worst scenario's verdict.
    pub fn verdict(&self) -> Verdict {
        let verdicts = self.scenarios.iter().map(ScenarioRuns::verdict);
        verdicts.max().unwrap_or(Verdict::Passed)
    }

    /// The first try of every scenario in the first round: a plain run's rows.
    pub fn first_rows(&self) -> Vec<&Row> {
        (self.scenarios.iter())
            .filter_map(|runs| runs.tries.first().map(|tried| &tried.row))
            .collect()
    }
}

/// Runs `names` in rounds as `plan` says, each run in a fresh VM (a round
/// is one `run_many`, so the debug kernel's VMs of several scenarios hold
/// one round's, never two of one scenario), a failed run tried again up to
/// `plan.retries` times, and calls `on_done` as each run finishes, with
/// which run it was.
pub fn run_repeated(
    artifacts: &Artifacts,
    names: &[String],
    suite: &SuiteOptions,
    plan: Plan,
    on_done: impl Fn(RunAt, &Row) + Sync,
) -> Repeated {
    let mut scenarios: Vec<ScenarioRuns> = (names.iter())
        .map(|name| ScenarioRuns {
            scenario: name.clone(),
            tries: Vec::new(),
        })
        .collect();
    let mut round = 1;
    while plan.rounds.another(round, true) {
        let clean = run_round(
            artifacts,
            suite,
            plan.retries,
            round,
            &mut scenarios,
            &on_done,
        );
        round += 1;
        if !plan.rounds.another(round, clean) {
            break;
        }
    }
    Repeated {
        scenarios,
        rounds: round - 1,
    }
}

/// One round: every scenario once, then the failed ones again up to
/// `retries` times; whether every scenario's round was a clean pass.
fn run_round(
    artifacts: &Artifacts,
    suite: &SuiteOptions,
    retries: usize,
    round: usize,
    scenarios: &mut [ScenarioRuns],
    on_done: &(impl Fn(RunAt, &Row) + Sync),
) -> bool {
    let mut to_run: Vec<usize> = (0..scenarios.len()).collect();
    for attempt in 0..=retries {
        if to_run.is_empty() {
            break;
        }
        let names: Vec<String> = (to_run.iter())
            .map(|&index| scenarios[index].scenario.clone())
            .collect();
        let at = RunAt { round, attempt };
        let rows = run_many(artifacts, &names, suite, |row| on_done(at, row));
        let mut failed = Vec::new();
        for (&index, row) in to_run.iter().zip(rows) {
            if !row.passed() {
                failed.push(index);
            }
            scenarios[index].tries.push(Tried { at, row });
        }
        to_run = failed;
    }
    scenarios.iter().all(|runs| {
        let tries: Vec<&Tried> = runs
            .tries
            .iter()
            .filter(|tried| tried.at.round == round)
            .collect();
        round_verdict(&tries) == Some(Verdict::Passed)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vm::{BootFailure, RetriedBoot, RunError, ScenarioRun};
    use std::time::Duration;

    /// A run of `attach` that passed or failed, its boot retried or not.
    pub(crate) fn tried(round: usize, attempt: usize, passed: bool, boot_retried: bool) -> Tried {
        let retried_boot = boot_retried.then(|| RetriedBoot {
            cause: BootFailure::Stalled,
            failure: "the guest's agent did not say ready".into(),
            logs: "/logs/first-boot".into(),
        });
        let run = ScenarioRun {
            result: harness_wire::protocol::ScenarioResult {
                scenario: "attach".into(),
                passed,
                ..Default::default()
            },
            accel: crate::qemu::Accel::Tcg,
            root: "virtiofs",
            boot: Some(Duration::from_secs(1)),
            topology: Default::default(),
            to_result: Duration::from_secs(2),
            total: Duration::from_secs(2),
            kept_logs: (!passed).then(|| format!("/logs/{round}-{attempt}").into()),
            console_tail: String::new(),
            run_dir: Default::default(),
            retried_boot,
        };
        let row = Row {
            scenario: "attach".into(),
            outcome: Ok(run),
            wall: Duration::from_secs(2),
            snapshot: None,
        };
        Tried {
            at: RunAt { round, attempt },
            row,
        }
    }

    pub(crate) fn runs(tries: Vec<Tried>) -> ScenarioRuns {
        ScenarioRuns {
            scenario: "attach".into(),
            tries,
        }
    }

    #[test]
    fn a_run_that_passes_on_its_retry_is_flaky_never_a_pass() {
        let flaky = runs(vec![tried(1, 0, false, false), tried(1, 1, true, false)]);
        assert_eq!((flaky.runs(), flaky.passed(), flaky.failed()), (2, 1, 1));
        assert_eq!(flaky.rounds(), [Verdict::Flaky]);
        assert_eq!(flaky.verdict(), Verdict::Flaky);
        assert_eq!(
            flaky.first_failure().map(|tried| tried.at),
            Some(RunAt {
                round: 1,
                attempt: 0
            })
        );
        // Failing every try of one round fails the scenario, whatever the others did.
        let failed = runs(vec![
            tried(1, 0, true, false),
            tried(2, 0, false, false),
            tried(2, 1, false, false),
            tried(3, 0, false, false),
            tried(3, 1, true, false),
        ]);
        assert_eq!(
            failed.rounds(),
            [Verdict::Passed, Verdict::Failed, Verdict::Flaky]
        );
        assert_eq!(failed.verdict(), Verdict::Failed);
        assert_eq!(failed.rounds_that(Verdict::Flaky), 1);
        assert_eq!(failed.passed(), 2);
        assert_eq!(failed.first_failure().map(|tried| tried.at.round), Some(2));
    }

    #[test]
    fn a_pass_after_a_retried_boot_is_flaky_and_counted() {
        let scenario = runs(vec![
            tried(1, 0, true, false),
            tried(2, 0, true, true),
            tried(3, 0, true, false),
        ]);
        assert_eq!((scenario.passed(), scenario.failed()), (3, 0));
        assert_eq!(scenario.boot_retries(), 1);
        assert_eq!(scenario.verdict(), Verdict::Flaky);
        assert!(scenario.first_failure().is_none());
        let clean = runs(vec![tried(1, 0, true, false), tried(2, 0, true, false)]);
        assert_eq!(clean.verdict(), Verdict::Passed);
        let repeated = Repeated {
            scenarios: vec![clean, scenario],
            rounds: 3,
        };
        assert_eq!(repeated.verdict(), Verdict::Flaky);
        assert_eq!(repeated.first_rows().len(), 2);
    }

    #[test]
    fn a_vm_that_gave_no_result_is_a_failed_run() {
        let mut error = tried(1, 0, true, false);
        error.row.outcome = Err(RunError::Harness(anyhow::anyhow!("no QEMU")));
        let scenario = runs(vec![error, tried(1, 1, true, false)]);
        assert_eq!(scenario.failed(), 1);
        assert_eq!(scenario.verdict(), Verdict::Flaky);
    }

    #[test]
    fn until_fail_stops_after_the_first_round_that_is_not_clean() {
        let bounded = Rounds::UntilFail { at_most: Some(3) };
        assert!(bounded.another(3, true));
        assert!(!bounded.another(4, true));
        assert!(!bounded.another(2, false));
        let unbounded = Rounds::UntilFail { at_most: None };
        assert!(unbounded.another(10_000, true));
        assert!(!unbounded.another(2, false));
        // Fixed rounds run whatever happened.
        assert!(Rounds::Fixed(3).another(3, false));
        assert!(!Rounds::Fixed(3).another(4, true));
    }

    #[test]
    fn the_worst_verdict_sets_the_exit_code() {
        assert!(Verdict::Passed < Verdict::Flaky && Verdict::Flaky < Verdict::Failed);
        assert_eq!(Verdict::Passed.exit_code(), 0);
        assert_eq!(Verdict::Failed.exit_code(), 1);
        assert_eq!(Verdict::Flaky.exit_code(), 3);
        for code in [exit::PASSED, exit::FAILED, exit::USAGE, exit::FLAKY] {
            assert!(
                EXIT_CODES.contains(&format!("  {code}  ")),
                "{code} undocumented"
            );
        }
        assert!(!Plan::ONCE.repeats());
        let retried = Plan {
            retries: 1,
            ..Plan::ONCE
        };
        assert!(retried.repeats());
    }
}
