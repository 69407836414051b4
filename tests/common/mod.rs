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

/// The library's settings installed from this process's environment, as a
/// subject's test binary installs them (once; later calls do nothing).
pub fn configured() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        harness::config::from_env().unwrap_or_else(|err| panic!("{err:#}"));
    });
}

/// The kernel, modules and this workspace's subjects, prepared once per
/// test process.
pub fn artifacts() -> &'static Artifacts {
    let (options, env) = harness::config::from_env().unwrap_or_else(|err| panic!("{err:#}"));
    let progress = harness::view::stderr_progress(env.ci);
    artifacts::prepared(&options, &progress, |progress| {
        catalogue::discover(repo_root(), progress)
    })
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

/// Checks the file at `path` against one of check-jsonschema's built-in
/// schemas (`vendor.github-workflows`), installed by `harness setup`.
pub fn check_schema(schema: &str, path: &Path) {
    configured();
    harness_host::setup::check().unwrap_or_else(|err| panic!("{err:#}"));
    let checker = harness_host::paths::venv_dir()
        .unwrap()
        .join("bin/check-jsonschema");
    let (status, text) = harness_host::process::combined_output(duct::cmd!(
        checker,
        "--builtin-schema",
        schema,
        path
    ))
    .unwrap();
    assert!(
        status.success(),
        "{} does not match {schema}:\n{text}",
        path.display()
    );
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

/// Writes `text` to `dir/file`, making the directories it needs.
pub fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `cargo test --test vm -- ARGS` in `dir`, sharing this repository's target
/// directory (and its lock file's versions) so that little is rebuilt.
pub fn cargo_test(dir: &Path, args: &[&str]) -> (bool, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut words = vec!["test", "--quiet", "--test", "vm", "--"];
    words.extend(args);
    let output = duct::cmd(cargo, words)
        .dir(dir)
        .env("CARGO_TARGET_DIR", repo_root().join("target"))
        // This workspace's debug info setting, so that the core crates'
        // builds are shared rather than built again beside them.
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        .env("INSTA_UPDATE", "always")
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A subject's crate as a user's repository holds one, outside this
/// workspace: the harness as a path dependency, `[package.metadata.harness]`,
/// the VM test target. `@PACKAGE@` and `@HARNESS@` are filled in.
const SUBJECT_MANIFEST: &str = r#"[package]
name = "@PACKAGE@"
version = "0.1.0"
edition = "2021"
publish = false

[package.metadata.harness]
vm-test = "vm"

[workspace]

[dependencies]
anyhow = "1"
harness = { path = "@HARNESS@" }

[[test]]
name = "vm"
harness = false
"#;

/// Writes the crate `package` into `dir` with `lib` as its `src/lib.rs`
/// (which declares `SUBJECT`), its VM test target and this repository's
/// lock file (its versions, so that little is rebuilt).
pub fn write_subject_crate(dir: &Path, package: &str, lib: &str) {
    let harness = repo_root().join("harness");
    let manifest = SUBJECT_MANIFEST
        .replace("@PACKAGE@", package)
        .replace("@HARNESS@", &harness.display().to_string());
    write(dir, "Cargo.toml", &manifest);
    std::fs::copy(repo_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    write(dir, "src/lib.rs", lib);
    let main = format!("harness::main!({}::SUBJECT);\n", package.replace('-', "_"));
    write(dir, "tests/vm.rs", &main);
}

/// `harness ARGS` in this repository: its exit code, stdout and stderr.
#[allow(dead_code)] // not every test binary runs the harness
pub fn harness(args: &[&str]) -> (i32, String, String) {
    let output = std::process::Command::new(harness_binary())
        .args(args)
        .current_dir(repo_root())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
