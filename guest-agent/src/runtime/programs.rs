//! What a scenario's BPF programs did, as their loaders reported it: each
//! member the scenario says it exercises must have run (with the kernel's
//! BPF stats on for the scenario), and each program's verifier cost must
//! stay within the subject's budget file, if it has one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harness_wire::programs::ProgramStats;
use harness_wire::protocol::Step;

const STATS_KNOB: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// What to check of a scenario's programs.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProgramChecks {
    /// Programs that must have run at least once.
    pub(crate) exercises: &'static [&'static str],
    /// The subject's budget file (`PROGRAM LIMIT` lines), if it has one.
    pub(crate) budget: Option<PathBuf>,
    /// Whether the scenario hunts races (KCSAN samples densely then).
    pub(crate) hunts_races: bool,
}

/// Turns the kernel's BPF stats on (run counts and times), or says why not.
pub(crate) fn enable_stats() -> Result<(), String> {
    std::fs::write(STATS_KNOB, "1").map_err(|err| format!("writing 1 to {STATS_KNOB}: {err}"))
}

/// Turns them off again: they cost a little on every program run.
pub(crate) fn disable_stats() {
    let _ = std::fs::write(STATS_KNOB, "0");
}

/// Each program's highest figures over the steps (a loader reports its
/// programs once, before detaching; several loaders may load the same one).
pub(crate) fn by_program(steps: &[Step]) -> BTreeMap<String, ProgramStats> {
    let mut all: BTreeMap<String, ProgramStats> = BTreeMap::new();
    for stats in steps.iter().flat_map(|step| &step.programs) {
        let entry = all
            .entry(stats.name.clone())
            .or_insert_with(|| ProgramStats {
                name: stats.name.clone(),
                ..ProgramStats::default()
            });
        entry.verified_insns = entry.verified_insns.max(stats.verified_insns);
        entry.run_cnt = entry.run_cnt.max(stats.run_cnt);
    }
    all
}

/// Every way the programs broke the checks, in words.
pub(crate) fn failures(
    steps: &[Step],
    checks: &ProgramChecks,
    stats: &Result<(), String>,
) -> Vec<String> {
    let programs = by_program(steps);
    let mut failures = Vec::new();
    for name in checks.exercises {
        let ran = programs.get(*name).map_or(0, |stats| stats.run_cnt);
        if ran > 0 {
            continue;
        }
        let why = match (programs.get(*name), stats) {
            (_, Err(err)) => format!("the BPF stats could not be turned on ({err})"),
            (None, _) => "no loader reported it (harness::loader::report_programs)".to_owned(),
            (Some(_), _) => "its run count stayed 0".to_owned(),
        };
        failures.push(format!("the program {name} never ran: {why}"));
    }
    if let Some(path) = &checks.budget {
        failures.extend(over_budget(&programs, path));
    }
    failures
}

/// The programs whose verifier cost is over their line of the budget file.
fn over_budget(programs: &BTreeMap<String, ProgramStats>, path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return vec![format!(
                "reading the verifier budget {}: {err}",
                path.display()
            )]
        }
    };
    let budget = match parse_budget(&text) {
        Ok(budget) => budget,
        Err(err) => return vec![format!("{}:{err}", path.display())],
    };
    programs
        .values()
        .filter_map(|stats| {
            let (limit, line) = budget.get(&stats.name)?;
            (stats.verified_insns > *limit).then(|| {
                format!(
                    "the verifier processed {} instructions of {}, over its budget of {limit} \
                     ({}:{line}); if the growth is meant, raise the limit there",
                    stats.verified_insns,
                    stats.name,
                    path.display()
                )
            })
        })
        .collect()
}

/// `PROGRAM LIMIT` per line (`#` starts a comment): program -> (limit, line).
fn parse_budget(text: &str) -> Result<BTreeMap<String, (u64, usize)>, String> {
    let mut budget = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let words: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match words[..] {
            [] => {}
            [name, limit] => {
                let limit = limit.parse().map_err(|_| {
                    format!("{}: {limit:?} is not a count of instructions", index + 1)
                })?;
                budget.insert(name.to_owned(), (limit, index + 1));
            }
            _ => {
                return Err(format!(
                    "{}: expected `PROGRAM LIMIT`, got {line:?}",
                    index + 1
                ))
            }
        }
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(programs: &[(&str, u64, u64)]) -> Step {
        Step {
            programs: programs
                .iter()
                .map(|(name, verified_insns, run_cnt)| ProgramStats {
                    name: (*name).to_owned(),
                    verified_insns: *verified_insns,
                    run_cnt: *run_cnt,
                    ..ProgramStats::default()
                })
                .collect(),
            ..Step::default()
        }
    }

    #[test]
    fn a_member_that_never_ran_is_named() {
        let checks = ProgramChecks {
            exercises: &["op_1", "op_2", "op_3"],
            budget: None,
            hunts_races: false,
        };
        let steps = [step(&[("op_1", 10, 1), ("op_2", 10, 0)])];
        let failures = failures(&steps, &checks, &Ok(()));
        assert_eq!(
            failures,
            [
                "the program op_2 never ran: its run count stayed 0",
                "the program op_3 never ran: no loader reported it (harness::loader::report_programs)"
            ]
        );
    }

    #[test]
    fn a_program_over_its_budget_fails_with_both_figures() {
        let dir = tempfile_dir();
        let budget = dir.join("budget.txt");
        std::fs::write(&budget, "# program  limit\nop_1 100\nop_2 5  # small\n").unwrap();
        let checks = ProgramChecks {
            exercises: &[],
            budget: Some(budget.clone()),
            hunts_races: false,
        };
        let failures = failures(
            &[step(&[("op_1", 90, 1), ("op_2", 7, 1)])],
            &checks,
            &Ok(()),
        );
        assert_eq!(
            failures,
            [format!(
                "the verifier processed 7 instructions of op_2, over its budget of 5 ({}:3); \
                 if the growth is meant, raise the limit there",
                budget.display()
            )]
        );
        assert!(parse_budget("op_1 lots\n")
            .unwrap_err()
            .contains("1: \"lots\" is not a count"));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("budget-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
