//! The GitHub Actions workflow is valid: checked against GitHub's workflow
//! schema with check-jsonschema (installed by install-deps.sh), and its
//! helper script parses.

mod common;

use harness_host::process::combined_output;
use harness_host::{paths, setup};

use common::repo_root;

#[test]
fn the_ci_workflow_matches_the_github_workflow_schema() {
    setup::check().unwrap_or_else(|err| panic!("{err:#}"));
    let checker = paths::venv_dir().unwrap().join("bin/check-jsonschema");
    let workflow = repo_root().join(".github/workflows/ci.yml");
    let (status, text) = combined_output(duct::cmd!(
        checker,
        "--builtin-schema",
        "vendor.github-workflows",
        &workflow
    ))
    .unwrap();
    assert!(
        status.success(),
        "{} is not a valid workflow:\n{text}",
        workflow.display()
    );
}

#[test]
fn the_container_helper_script_parses() {
    let script = repo_root().join(".github/debian-container.sh");
    let (status, text) = combined_output(duct::cmd!("bash", "-n", &script)).unwrap();
    assert!(status.success(), "{text}");
}

#[test]
fn the_workflow_uses_the_projects_own_package_script_and_cache_key() {
    let workflow = std::fs::read_to_string(repo_root().join(".github/workflows/ci.yml")).unwrap();
    for needle in [
        "harness/host/install-deps.sh",
        "-- cache-key",
        "--partition count:",
        "--profile ci",
        "99-kvm4all.rules",
    ] {
        assert!(workflow.contains(needle), "the workflow lacks {needle}");
    }
}
