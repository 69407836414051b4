//! `harness new` end to end, as a new user would go: the scaffold in a
//! directory outside this workspace, its first `cargo nextest run` (it
//! builds what it needs and fails only because the snapshots are new), the
//! snapshots accepted, and a second run that is green. For each kind of
//! subject: a module that defines its type, and a BPF tcp_congestion_ops.

mod common;

use std::path::Path;

use common::repo_root;

/// Runs `cargo nextest run` in `dir` as a user would, sharing this
/// repository's target directory and lock file versions so that little is
/// rebuilt; (passed, output).
fn nextest(dir: &Path) -> (bool, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .args(["nextest", "run", "--no-fail-fast"])
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
    let expected: Vec<String> = scenarios
        .iter()
        .map(|scenario| format!("{scenario}.snap"))
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(accept_snapshots(&dir), expected);
    let (passed, second) = nextest(&dir);
    assert!(passed, "the second run, snapshots accepted:\n{second}");
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
