//! What the harness's own tests share: this repository's root, its subjects
//! prepared once per test process, and the `harness` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use harness_host::artifacts::{self, Artifacts};
use harness_host::catalogue;

/// This repository's root (the root package's directory).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kernel, modules and this workspace's subjects, prepared once per
/// test process.
pub fn artifacts() -> &'static Artifacts {
    artifacts::prepared(|progress| catalogue::discover(repo_root(), progress))
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// The `harness` binary cargo built (debug), for tests that run it as a
/// person would; the nextest setup script builds it.
pub fn harness_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let binary = target.join("debug/harness");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build -p harness` (the nextest setup script does)",
        binary.display()
    );
    binary
}

/// `git status --porcelain` of this repository, untracked files included:
/// (whether git ran, what it printed).
pub fn git_status() -> (bool, String) {
    let output = duct::cmd!("git", "status", "--porcelain")
        .dir(repo_root())
        .stdout_capture()
        .stderr_to_stdout()
        .unchecked()
        .run()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
