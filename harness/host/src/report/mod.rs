//! The main job's report: a table of scenarios, and for each failure what
//! went wrong, where the logs are and how to rerun it alone; a repeated
//! run's is in [`repeat`].

pub mod repeat;

use std::fmt::Write as _;

use serde::Serialize;

use crate::artifacts::Artifacts;
use crate::kernel::source::KernelSpec;
use crate::kernel::Flavour;
use crate::normalise::Normaliser;
use crate::process::harness_command;
use crate::suite::Row;

/// The kernel a report is about: its version and flavour, and the splat
/// classes it cannot report, so that no row implies they were checked.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct KernelInfo {
    /// `6.12.117`.
    pub version: String,
    /// Default or debug.
    pub flavour: Flavour,
    /// The kernel's cache key.
    pub(crate) key: String,
    /// `KASAN memory error (needs CONFIG_KASAN)`, ...
    pub(crate) unchecked_splat_classes: Vec<String>,
}

impl KernelInfo {
    /// Whether the kernel can report data races (KCSAN, the race flavour).
    pub fn checks_races(&self) -> bool {
        let race = harness_wire::splat::RACE_CLASS;
        !(self.unchecked_splat_classes.iter()).any(|class| class.starts_with(race))
    }

    /// The prepared kernel's, its unchecked classes read from its `.config`.
    pub fn of(artifacts: &Artifacts) -> Self {
        let config = artifacts.kernel.build_dir.join(".config");
        let config = std::fs::read_to_string(config).unwrap_or_default();
        let unchecked = harness_wire::splat::unchecked_classes(&config)
            .iter()
            .map(|class| {
                let needs = harness_wire::splat::needs_text(class);
                format!("{} (needs {needs})", class.name)
            })
            .collect();
        KernelInfo {
            version: artifacts.kernel.version.clone(),
            flavour: artifacts.kernel.flavour,
            key: artifacts.kernel.key.clone(),
            unchecked_splat_classes: unchecked,
        }
    }
}

/// What the run was on, and what that kernel could not have seen.
pub fn render_header(info: &KernelInfo) -> String {
    let mut text = format!(
        "kernel {} ({} flavour, {})\n",
        info.version, info.flavour, info.key
    );
    if !info.unchecked_splat_classes.is_empty() {
        let _ = writeln!(
            text,
            "not checked, this kernel cannot report them{}: {}",
            match info.flavour {
                Flavour::Default => " (--debug-kernel or --race-kernel can)",
                Flavour::Debug => " (--race-kernel can see data races)",
                Flavour::Race => " (--debug-kernel can see the others)",
            },
            info.unchecked_splat_classes.join(", ")
        );
    }
    text
}

/// The kernel options a rerun needs to reach the same kernel.
fn kernel_options(artifacts: &Artifacts) -> String {
    let mut options = String::new();
    if artifacts.spec != KernelSpec::default() {
        let _ = write!(options, " --kernel {}", artifacts.spec);
    }
    if let Some(option) = artifacts.kernel.flavour.option() {
        options.push(' ');
        options.push_str(option);
    }
    options
}

/// The commands that rerun `scenario` alone: the harness, a shell in it, vng.
pub(crate) fn rerun_commands(artifacts: &Artifacts, scenario: &str) -> Vec<String> {
    let harness = format!(
        "{} run --scenario {scenario}{}",
        harness_command(),
        kernel_options(artifacts)
    );
    let shell = format!(
        "{} shell --scenario {scenario}{}",
        harness_command(),
        kernel_options(artifacts)
    );
    let vng = crate::vng::vng_command(artifacts, scenario)
        .unwrap_or_else(|err| format!("(no vng command: {err:#})"));
    vec![harness, shell, vng]
}

/// The column a scenario's name takes: the longest name's width, at least 24.
pub fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).max(24)
}

/// A row's result: `pass`, `FAIL` or `ERROR`, and the boot the harness
/// retried before its VM when it did (`pass (boot retried: stalled)`).
pub(crate) fn result_cell(row: &Row) -> String {
    match row.retried_boot() {
        Some(boot) => format!("{} (boot retried: {})", row.verdict(), boot.cause.as_str()),
        None => row.verdict().to_owned(),
    }
}

/// One row per scenario: result, time, boot time, accelerator and root share.
pub fn render_table(rows: &[&Row]) -> String {
    let mut text = String::new();
    let width = name_width(rows.iter().map(|row| row.scenario.as_str()));
    let results = rows.iter().map(|row| result_cell(row).len());
    let result_width = results.max().unwrap_or(0).max(6);
    let _ = writeln!(
        text,
        "{:<width$} {:<result_width$} {:>8} {:>8}  {:<9} {:<14} accel/root",
        "scenario", "result", "time", "boot", "snapshot", "vm"
    );
    for row in rows {
        let (boot, vm, how) = match &row.outcome {
            Ok(run) => (
                run.boot
                    .map_or("-".to_owned(), |boot| format!("{:.1}s", boot.as_secs_f64())),
                run.topology.to_string(),
                format!("{}/{}", run.accel, run.root),
            ),
            Err(_) => ("-".to_owned(), "-".to_owned(), String::new()),
        };
        let _ = writeln!(
            text,
            "{:<width$} {:<result_width$} {:>7.1}s {:>8}  {:<9} {vm:<14} {how}",
            row.scenario,
            result_cell(row),
            row.wall.as_secs_f64(),
            boot,
            row.snapshot_word()
        );
    }
    let passed = rows.iter().filter(|row| row.passed()).count();
    let _ = write!(text, "{passed} passed, {} failed", rows.len() - passed);
    let retried = rows
        .iter()
        .filter(|row| row.retried_boot().is_some())
        .count();
    if retried > 0 {
        let _ = write!(text, ", {retried} after a boot the harness retried (flaky)");
    }
    text.push('\n');
    text
}

/// For each row whose VM was booted again: how the first boot failed and
/// where its logs are.
pub fn render_retried_boots(rows: &[&Row]) -> String {
    let mut text = String::new();
    for row in rows {
        if let Some(boot) = row.retried_boot() {
            let _ = writeln!(
                text,
                "\n=== {}: boot retried ({}) ===\n{}\nthat boot's logs: {}",
                row.scenario,
                boot.cause.as_str(),
                boot.failure,
                boot.logs.display()
            );
        }
    }
    text
}

/// For each row that did not pass: what went wrong (the failed
/// expectations, then how the output differs from its snapshot), where its
/// logs are, and the commands that rerun it alone.
pub fn render_failures(rows: &[&Row], artifacts: &Artifacts) -> String {
    let mut text = String::new();
    for row in rows.iter().filter(|row| !row.passed()) {
        let _ = writeln!(text, "\n=== {} ({}) ===", row.scenario, row.verdict());
        render_failure(&mut text, row, artifacts);
    }
    text
}

/// A failed row: what went wrong, where its logs are, how to rerun it.
fn render_failure(text: &mut String, row: &Row, artifacts: &Artifacts) {
    match &row.outcome {
        Ok(run) => render_failed_run(text, row, run, artifacts),
        Err(error) => {
            let _ = writeln!(text, "{error}");
        }
    }
    let commands = rerun_commands(artifacts, &row.scenario);
    let _ = writeln!(
        text,
        "rerun alone, look around inside it, or rerun under vng:\n  {}",
        commands.join("\n  ")
    );
}

/// Where a failed row's logs were kept, if they were.
fn logs_of(row: &Row) -> Option<&std::path::Path> {
    match &row.outcome {
        Ok(run) => run.kept_logs.as_deref(),
        Err(crate::vm::RunError::Vm(error)) => Some(&error.logs),
        Err(crate::vm::RunError::Harness(_)) => None,
    }
}

/// A failed row's run: its failed expectations; what it did and the
/// kernel printed, with the console's last lines, when an expectation
/// failed; then its snapshot's difference.
fn render_failed_run(
    text: &mut String,
    row: &Row,
    run: &crate::vm::ScenarioRun,
    artifacts: &Artifacts,
) {
    let normaliser = artifacts
        .catalogue
        .find(&row.scenario)
        .and_then(|(subject, _)| Normaliser::for_subject(&subject.info).ok())
        .unwrap_or_default();
    let normalised = normaliser.result(&run.result);
    for failure in &normalised.failures {
        let _ = writeln!(text, "- {failure}");
    }
    if !run.result.passed {
        let _ = writeln!(
            text,
            "--- what the scenario did and the kernel printed (normalised) ---"
        );
        text.push_str(&harness_wire::render::render_steps(&normalised));
        let _ = writeln!(
            text,
            "--- last lines of the console ---\n{}",
            run.console_tail
        );
    }
    if let Some(explained) =
        (row.snapshot.as_ref()).and_then(|(file, verdict)| verdict.explain(file))
    {
        let _ = writeln!(text, "--- snapshot ---\n{explained}");
    }
    if let Some(logs) = &run.kept_logs {
        let _ = writeln!(text, "full logs: {}", logs.display());
    }
}

#[derive(Serialize)]
struct JsonRow<'a> {
    scenario: &'a str,
    kernel: &'a KernelInfo,
    passed: bool,
    wall_ms: u128,
    boot_ms: Option<u128>,
    accel: Option<String>,
    root: Option<&'a str>,
    topology: Option<harness_wire::catalogue::Topology>,
    logs: Option<String>,
    error: Option<String>,
    /// `matched`, `new`, `differs`, `not_compared`, `unreadable`; null without a result.
    snapshot: Option<&'static str>,
    snapshot_file: Option<String>,
    /// The `.snap.new` written when the snapshot is new or differs.
    pending_snapshot: Option<String>,
    /// The boot the harness ended and booted again before this run's VM.
    retried_boot: Option<&'a crate::vm::RetriedBoot>,
    result: Option<&'a harness_wire::protocol::ScenarioResult>,
}

/// Every row of every kernel, each naming its kernel.
pub fn render_json(kernels: &[(&KernelInfo, &[&Row])]) -> String {
    let rows: Vec<JsonRow> = kernels
        .iter()
        .flat_map(|(kernel, rows)| rows.iter().map(move |row| json_row(kernel, row)))
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"))
}

fn json_row<'a>(kernel: &'a KernelInfo, row: &'a Row) -> JsonRow<'a> {
    let run = row.outcome.as_ref().ok();
    JsonRow {
        scenario: &row.scenario,
        kernel,
        passed: row.passed(),
        wall_ms: row.wall.as_millis(),
        boot_ms: run.and_then(|run| run.boot).map(|boot| boot.as_millis()),
        accel: run.map(|run| run.accel.to_string()),
        root: run.map(|run| run.root),
        topology: run.map(|run| run.topology),
        logs: run
            .and_then(|run| run.kept_logs.as_ref())
            .map(|path| path.display().to_string()),
        error: row.outcome.as_ref().err().map(|err| format!("{err:#}")),
        snapshot: row.snapshot.as_ref().map(|(_, verdict)| verdict.as_str()),
        snapshot_file: (row.snapshot.as_ref()).map(|(file, _)| file.path.display().to_string()),
        pending_snapshot: (row.snapshot.as_ref())
            .and_then(|(_, verdict)| verdict.pending())
            .map(|pending| pending.display().to_string()),
        retried_boot: row.retried_boot(),
        result: run.map(|run| &run.result),
    }
}

/// Scenario by kernel: one line per scenario, one column per kernel.
pub fn render_matrix(kernels: &[(&KernelInfo, &[&Row])]) -> String {
    let scenarios = kernels.first().map_or(&[][..], |(_, rows)| rows);
    let width = name_width(scenarios.iter().map(|row| row.scenario.as_str()));
    let mut text = format!("{:<width$}", "scenario");
    for (kernel, _) in kernels {
        let _ = write!(text, " {:>18}", column_name(kernel));
    }
    text.push('\n');
    for (index, row) in scenarios.iter().enumerate() {
        let _ = write!(text, "{:<width$}", row.scenario);
        for (_, rows) in kernels {
            let cell = rows.get(index).map_or("-".to_owned(), |row| {
                format!("{} {:.1}s", row.verdict(), row.wall.as_secs_f64())
            });
            let _ = write!(text, " {cell:>18}");
        }
        text.push('\n');
    }
    for (kernel, rows) in kernels {
        let passed = rows.iter().filter(|row| row.passed()).count();
        let failed = rows.len() - passed;
        let _ = writeln!(
            text,
            "{}: {passed} passed, {failed} failed",
            column_name(kernel)
        );
    }
    text
}

fn column_name(kernel: &KernelInfo) -> String {
    match kernel.flavour {
        Flavour::Default => kernel.version.clone(),
        flavour => format!("{} {flavour}", kernel.version),
    }
}

/// `harness cache list`: every kernel entry, least recently used first.
pub fn render_cache(entries: &[crate::cache::Entry], cache: &std::path::Path) -> String {
    let mut text = format!("{:<18} {:>8} {:>12}  kernel\n", "key", "size", "last used");
    let now = std::time::SystemTime::now();
    for entry in entries {
        let age = entry
            .last_used
            .and_then(|used| now.duration_since(used).ok())
            .map_or("never".to_owned(), |age| {
                format!("{} ago", crate::progress::format_duration(age))
            });
        let _ = writeln!(
            text,
            "{:<18} {:>8} {:>12}  {}",
            entry.key,
            crate::paths::human(entry.bytes),
            age,
            entry.describe()
        );
    }
    let total: u64 = entries.iter().map(|entry| entry.bytes).sum();
    let _ = writeln!(
        text,
        "{} entries, {} in {}",
        entries.len(),
        crate::paths::human(total),
        cache.join("kernels").display()
    );
    text
}

/// What the verifier spent on each program (instructions processed), one
/// line per program (`object/name`: two objects may each have a program
/// of one name) and one column per kernel: the most any scenario's loader
/// reported for it there; `-` where no scenario loaded it.
pub fn render_verifier_table(kernels: &[(&KernelInfo, &[&Row])]) -> String {
    let mut programs: std::collections::BTreeMap<String, Vec<Option<u64>>> = Default::default();
    for (column, (_, rows)) in kernels.iter().enumerate() {
        let reported = rows
            .iter()
            .filter_map(|row| row.outcome.as_ref().ok())
            .flat_map(|run| run.result.steps.iter().flat_map(|step| &step.programs));
        for stats in reported {
            let cells = programs
                .entry(stats.qualified_name())
                .or_insert_with(|| vec![None; kernels.len()]);
            let cell = &mut cells[column];
            *cell = Some(cell.unwrap_or(0).max(stats.verified_insns));
        }
    }
    let header = "program (verified instructions)";
    let width = name_width(programs.keys().map(String::as_str)).max(header.len());
    let mut text = format!("{header:<width$}");
    for (kernel, _) in kernels {
        let _ = write!(text, " {:>18}", column_name(kernel));
    }
    text.push('\n');
    for (name, cells) in &programs {
        let _ = write!(text, "{name:<width$}");
        for cell in cells {
            let shown = cell.map_or("-".to_owned(), |insns| insns.to_string());
            let _ = write!(text, " {shown:>18}");
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repeat::tests::tried;

    #[test]
    fn a_run_after_a_retried_boot_says_so_in_the_table() {
        let retried = tried(1, 0, true, true).row;
        let clean = tried(1, 0, true, false).row;
        let table = render_table(&[&retried, &clean]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("scenario"), "{table}");
        assert!(
            lines[1].contains(" pass (boot retried: stalled) "),
            "{table}"
        );
        assert!(lines[2].contains(" pass "), "{table}");
        assert_eq!(
            lines[3],
            "2 passed, 0 failed, 1 after a boot the harness retried (flaky)"
        );
        let said = render_retried_boots(&[&retried, &clean]);
        assert!(
            said.contains("=== attach: boot retried (stalled) ===")
                && said.contains("that boot's logs: /logs/first-boot"),
            "{said}"
        );
        let json = serde_json::to_value(json_row(&info(), &retried)).unwrap();
        assert_eq!(json["retried_boot"]["cause"], "stalled");
        assert_eq!(json["retried_boot"]["logs"], "/logs/first-boot");
    }

    fn info() -> KernelInfo {
        KernelInfo {
            version: "6.12.118".into(),
            flavour: Flavour::Default,
            key: "0123".into(),
            unchecked_splat_classes: Vec::new(),
        }
    }
}
