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
    let cache = crate::paths::cache_dir()?;
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock_path = cache.join("install-deps.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    // Its output goes straight to stderr: installing takes minutes on a fresh machine.
    let output = duct::cmd!("bash", "-s")
        .stdin_bytes(SCRIPT)
        .env(crate::paths::CACHE_DIR_ENV, &cache)
        .stdout_to_stderr()
        .unchecked()
        .run()
        .context("running harness/install-deps.sh (is bash installed?)")?;
    if !output.status.success() {
        bail!(
            "harness/install-deps.sh could not install what the harness needs ({}); \
             its output above says what is missing and how to install it",
            output.status
        );
    }
    Ok(())
}
