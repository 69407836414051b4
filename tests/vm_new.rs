//! `harness new` end to end, as a new user would go: the scaffold in a
//! directory outside this workspace, formatted as `cargo fmt` formats it
//! and clean under clippy (with and without its loader), with a workflow
//! that calls this repository's action; its first `cargo nextest run` (it
//! builds what it needs and fails only because the snapshots are new) and
//! its first `harness run` (which fails the same way), the snapshots
//! accepted, and a second run that is green; then a snapshot edited by
//! hand, restored and deleted, each judged by `harness run`. For each kind
//! of subject: a module that defines its type, a BPF tcp_congestion_ops,
//! and a sched_ext scheduler.

mod common;

use std::path::Path;

use common::repo_root;

/// `cargo ARGS` in `dir` as a user would run it, sharing this repository's
/// target directory and lock file versions so that little is rebuilt;
/// (passed, output).
fn cargo(dir: &Path, args: &[&str]) -> (bool, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo_root().join("target"))
        // This workspace's debug info setting, so that the core crates'
        // builds are shared rather than built again beside them.
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        // What insta does by hand; in CI it would write nothing new.
        .env("INSTA_UPDATE", "new");
    // The outer nextest's own variables are not the inner one's.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NEXTEST") {
            command.env_remove(name);
        }
    }
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// Runs `cargo nextest run` in `dir` as a user would; (passed, output).
fn nextest(dir: &Path) -> (bool, String) {
    cargo(dir, &["nextest", "run", "--no-fail-fast"])
}

/// The new project as its CI would lint it: `cargo fmt --check`, and
/// clippy denying warnings on the host runner's build and on the guest's
/// (the `loader` feature); and its workflow, valid for GitHub, calling this
/// repository's action.
fn lint(dir: &Path) {
    let loader = [
        "clippy",
        "--all-targets",
        "--features",
        "loader",
        "--",
        "-D",
        "warnings",
    ];
    let host = ["clippy", "--all-targets", "--", "-D", "warnings"];
    for args in [&["fmt", "--check"][..], &host, &loader] {
        let (passed, output) = cargo(dir, args);
        assert!(
            passed,
            "`cargo {}` in the new project:\n{output}",
            args.join(" ")
        );
    }
    let workflow = dir.join(".github/workflows/vm-tests.yml");
    let text = std::fs::read_to_string(&workflow).unwrap();
    assert!(
        text.contains("/.github/actions/vmtest@"),
        "the workflow does not call the action:\n{text}"
    );
    common::check_schema("vendor.github-workflows", &workflow);
}

/// Runs `harness run ARGS` in `dir` as a user would, sharing this
/// repository's target directory; (passed, output).
fn harness_run(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(common::harness_binary())
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", repo_root().join("target"))
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// `cargo insta accept`, which is what a person does after reading them.
fn accept_snapshots(dir: &Path) -> Vec<String> {
    let snapshots = dir.join("tests/snapshots");
    let mut accepted = Vec::new();
    for entry in std::fs::read_dir(&snapshots).unwrap().flatten() {
        let path = entry.path();
        if let Some(name) = path.to_str().and_then(|path| path.strip_suffix(".new")) {
            std::fs::rename(&path, name).unwrap();
            accepted.push(
                Path::new(name)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    accepted.sort();
    accepted
}

/// Each project its own crate name: two crates of one name and version,
/// each the root of its own workspace, share their build outputs in one
/// target directory.
fn scaffold_and_run(crate_name: &str, args: &[&str], scenarios: &[&str]) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join(crate_name);
    let harness = common::harness_binary();
    let mut words = vec!["new", dir.to_str().unwrap()];
    words.extend(args);
    let harness_dir = repo_root().join("harness");
    words.extend(["--harness-path", harness_dir.to_str().unwrap()]);
    let output = std::process::Command::new(harness)
        .args(&words)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::copy(repo_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    lint(&dir);
    let (passed, first) = nextest(&dir);
    assert!(!passed, "the first run passed without snapshots:\n{first}");
    for scenario in scenarios {
        let stored = format!(
            "stored new snapshot {}",
            dir.join(format!("tests/snapshots/{scenario}.snap.new"))
                .display()
        );
        assert!(
            first.contains(&stored),
            "{scenario}: no new snapshot in:\n{first}"
        );
        let said = format!("the snapshot of {scenario} is new (");
        assert!(
            first.contains(&said),
            "{scenario}: no word of the new snapshot in:\n{first}"
        );
        // The scenario itself passed: its only failure is the new snapshot.
        assert!(
            !first.contains(&format!("scenario {scenario} failed")),
            "{first}"
        );
    }
    // The main command judges snapshots too: none is accepted yet.
    let (passed, run) = harness_run(&dir, &[]);
    assert!(!passed, "harness run passed without snapshots:\n{run}");
    for scenario in scenarios {
        let said = format!("the snapshot of {scenario} is new (");
        assert!(run.contains(&said), "{scenario}: not new in:\n{run}");
    }
    let expected: Vec<String> = scenarios
        .iter()
        .map(|scenario| format!("{scenario}.snap"))
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(accept_snapshots(&dir), expected);
    let (passed, second) = nextest(&dir);
    assert!(passed, "the second run, snapshots accepted:\n{second}");
    snapshot_edited_restored_and_deleted(&dir, scenarios[scenarios.len() - 1]);
}

/// `harness run --scenario NAME` fails with the diff when NAME's snapshot
/// says what the kernel never printed, passes once it is restored (leaving
/// no pending snapshot), and fails as new, leaving a pending one, when it
/// is deleted.
fn snapshot_edited_restored_and_deleted(dir: &Path, scenario: &str) {
    let stored = dir.join(format!("tests/snapshots/{scenario}.snap"));
    let pending = stored.with_extension("snap.new");
    let original = std::fs::read_to_string(&stored).unwrap();
    let edited = format!("{original}  [kernel] a line the kernel never printed\n");
    std::fs::write(&stored, edited).unwrap();
    let (passed, run) = harness_run(dir, &["--scenario", scenario]);
    assert!(!passed, "an edited snapshot passed:\n{run}");
    assert!(
        run.contains("-  [kernel] a line the kernel never printed"),
        "no diff in:\n{run}"
    );
    assert!(pending.is_file(), "no pending snapshot after:\n{run}");
    std::fs::write(&stored, &original).unwrap();
    let (passed, run) = harness_run(dir, &["--scenario", scenario]);
    assert!(passed, "the restored snapshot failed:\n{run}");
    assert!(!pending.exists(), "a stale pending snapshot is left");
    std::fs::remove_file(&stored).unwrap();
    let (passed, run) = harness_run(dir, &["--scenario", scenario, "--json"]);
    assert!(!passed, "a deleted snapshot passed:\n{run}");
    assert!(run.contains("\"snapshot\": \"new\""), "{run}");
    assert!(pending.is_file(), "no pending snapshot after:\n{run}");
}

#[test]
fn a_new_module_subject_passes_once_its_snapshots_are_accepted() {
    scaffold_and_run(
        "new-module-subject",
        &["--module", "hello"],
        &["attach_and_trigger", "verifier_reject", "detach"],
    );
}

#[test]
fn a_new_tcp_congestion_ops_subject_passes_once_its_snapshots_are_accepted() {
    scaffold_and_run(
        "new-cc-subject",
        &["--kernel-type", "tcp_congestion_ops", "--name", "my_cc"],
        &["register", "connect", "verifier_reject"],
    );
}

#[test]
fn a_new_sched_ext_subject_passes_once_its_snapshots_are_accepted() {
    scaffold_and_run(
        "new-sched-subject",
        &["--kernel-type", "sched_ext_ops", "--name", "my_sched"],
        &[
            "attach",
            "scheduled",
            "detach",
            "error_exit",
            "verifier_reject",
        ],
    );
}
