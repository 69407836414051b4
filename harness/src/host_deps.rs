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
    let _lock = crate::paths::lock_exclusive(
        &cache.join("install-deps.lock"),
        "another process is running install-deps.sh",
    )?;
    // From a file, not stdin: the commands in it must not read the script as their input.
    let mut script =
        tempfile::NamedTempFile::new().context("writing install-deps.sh to a temp file")?;
    std::io::Write::write_all(&mut script, SCRIPT.as_bytes())
        .context("writing install-deps.sh to a temp file")?;
    // Its output goes straight to stderr: installing takes minutes on a fresh machine.
    let output = duct::cmd!("bash", script.path())
        .stdin_null()
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
