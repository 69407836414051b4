//! The GitHub Actions workflow and the action users call are valid: each
//! checked against GitHub's schema with check-jsonschema (installed by
//! `harness setup`), and their helper scripts parse.

mod common;

use harness_host::process::combined_output;

use common::repo_root;

/// Checks `file` of this repository against one of check-jsonschema's built-in schemas.
fn check_schema(schema: &str, file: &str) {
    common::check_schema(schema, &repo_root().join(file));
}

#[test]
fn the_ci_workflow_matches_the_github_workflow_schema() {
    check_schema("vendor.github-workflows", ".github/workflows/ci.yml");
}

#[test]
fn the_action_matches_the_github_action_schema() {
    check_schema("vendor.github-actions", ".github/actions/vmtest/action.yml");
}

#[test]
fn the_actions_scripts_parse() {
    for script in ["container.sh", "harness.sh"] {
        let path = repo_root().join(".github/actions/vmtest").join(script);
        let (status, text) = combined_output(duct::cmd!("bash", "-n", &path)).unwrap();
        assert!(status.success(), "{script}: {text}");
    }
}

#[test]
fn the_workflow_runs_its_subjects_through_the_action_users_call() {
    let read = |file: &str| std::fs::read_to_string(repo_root().join(file)).unwrap();
    let workflow = read(".github/workflows/ci.yml");
    for needle in [
        "cargo run -p harness -- setup",
        "uses: ./.github/actions/vmtest",
        "--partition count:",
        "--profile ci",
        "debug-kernel: \"true\"",
    ] {
        assert!(workflow.contains(needle), "the workflow lacks {needle}");
    }
    let action = read(".github/actions/vmtest/action.yml");
    for needle in [
        "harness.sh setup",
        "harness.sh cache-key",
        "actions/cache@v4",
        "99-kvm4all.rules",
        "actions/upload-artifact@v4",
        "*.snap.new",
    ] {
        assert!(action.contains(needle), "the action lacks {needle}");
    }
    for input in [
        "kernel:",
        "debug-kernel:",
        "working-directory:",
        "nextest-args:",
    ] {
        assert!(
            action.contains(&format!("  {input}\n")),
            "the action lacks the input {input}"
        );
    }
}
