//! Runs the project's own package script (install-deps.sh) before any work
//! that needs those packages.

use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

const SCRIPT: &str = include_str!("../install-deps.sh");

/// Installs missing Debian packages (as root) or fails with the exact
/// command to run. Runs the script once per process.
pub fn ensure_installed() -> Result<()> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = OUTCOME.get_or_init(|| run_script().map_err(|err| format!("{err:#}")));
    match outcome {
        Ok(()) => Ok(()),
        Err(message) => bail!("{message}"),
    }
}

fn run_script() -> Result<()> {
    // Another process may be installing right now; apt's own lock would make
    // this one fail instead of wait, so serialise on a lock of ours.
    let lock_path = std::env::temp_dir().join("struct-ops-vmtest-install-deps.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let (status, text) =
        crate::process::combined_output(duct::cmd!("bash", "-s").stdin_bytes(SCRIPT))
            .context("running harness/install-deps.sh (is bash installed?)")?;
    if !status.success() {
        bail!("harness/install-deps.sh could not install the packages the harness needs:\n{text}");
    }
    if !text.trim().is_empty() {
        eprintln!("{}", text.trim_end());
    }
    Ok(())
}
