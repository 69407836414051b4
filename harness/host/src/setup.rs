//! Host packages: one explicit step. `harness setup` installs what is
//! missing (the project's install-deps.sh: Debian packages as root, the Rust
//! virtiofsd, a virtualenv of Python tools); `harness run`, `harness build`
//! and the nextest setup script call it when [`check`] finds something
//! missing. Preparing a test only checks: a library call never runs apt.

use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

const SCRIPT: &str = include_str!("../install-deps.sh");

/// Whether everything the harness needs is installed; if not, an error that
/// names what is missing and the command that installs it. Checked once per
/// process.
pub fn check() -> Result<()> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = OUTCOME.get_or_init(|| match run_script(true) {
        Ok(()) => Ok(()),
        Err(err) => Err(format!(
            "{err:#}\nInstall what is missing with `harness setup` \
             (in the harness's repository: `cargo run -p harness -- setup`)"
        )),
    });
    match outcome {
        Ok(()) => Ok(()),
        Err(message) => bail!("{message}"),
    }
}

/// Installs what is missing (as root; otherwise fails with the exact
/// command to run), unless [`check`] finds nothing missing.
pub fn ensure() -> Result<()> {
    if run_script(true).is_ok() {
        return Ok(());
    }
    install()
}

/// Runs install-deps.sh: installs every missing package and tool.
pub fn install() -> Result<()> {
    run_script(false)
}

fn run_script(check_only: bool) -> Result<()> {
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
    let args: &[&str] = if check_only { &["--check"] } else { &[] };
    let command = duct::cmd(
        "bash",
        std::iter::once(script.path().as_os_str())
            .chain(args.iter().map(|a| std::ffi::OsStr::new(*a))),
    )
    .stdin_null()
    .env(crate::paths::CACHE_DIR_ENV, &cache)
    .unchecked();
    // Installing takes minutes on a fresh machine: its output goes straight to stderr.
    let command = if check_only {
        command.stdout_capture().stderr_capture()
    } else {
        command.stdout_to_stderr()
    };
    let output = command
        .run()
        .context("running harness/host/install-deps.sh (is bash installed?)")?;
    if output.status.success() {
        return Ok(());
    }
    if check_only {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim_end());
    }
    bail!(
        "harness/host/install-deps.sh could not install what the harness needs ({}); \
         its output above says what is missing and how to install it",
        output.status
    );
}
