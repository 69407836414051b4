//! Host packages: one explicit step. `harness setup` installs what is
//! missing: Debian's packages as root (the `apt` module, which never removes or
//! downgrades a package the machine has unless told so by name), then the
//! Rust virtiofsd and a virtualenv of Python tools (install-tools.sh).
//! `harness run`, `harness build` and the nextest setup script call it when
//! [`check`] finds something missing. Preparing a test only checks: a
//! library call never runs apt.

mod apt;

use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

pub(crate) use apt::Change;

const SCRIPT: &str = include_str!("../../install-tools.sh");

/// What `harness setup` may do beyond installing.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Consent {
    /// Packages apt may remove or downgrade to install the missing ones.
    pub allow_remove: Vec<String>,
}

impl Consent {
    /// Apt may remove or downgrade these packages, and no others.
    pub fn allow_remove(packages: Vec<String>) -> Self {
        Consent {
            allow_remove: packages,
        }
    }
}

/// Whether everything the harness needs is installed; if not, an error that
/// names what is missing and the command that installs it. Checked once per
/// process.
pub fn check() -> Result<()> {
    static OUTCOME: OnceLock<Result<(), String>> = OnceLock::new();
    let outcome = OUTCOME.get_or_init(|| match missing() {
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

fn missing() -> Result<()> {
    let packages = apt::missing();
    if !packages.is_empty() {
        bail!("missing Debian packages: {}", packages.join(" "));
    }
    run_script(true)
}

/// Installs what is missing, unless [`check`] finds nothing missing; asks
/// for no removal.
pub fn ensure() -> Result<()> {
    if missing().is_ok() {
        return Ok(());
    }
    install(&Consent::default())
}

/// Installs every missing package and tool: as root, after apt's plan shows
/// it removes and downgrades nothing but what `consent` names; otherwise
/// fails with the exact command to run.
pub fn install(consent: &Consent) -> Result<()> {
    let _lock = lock()?;
    install_packages(consent)?;
    run_script(false)
}

fn install_packages(consent: &Consent) -> Result<()> {
    let missing = apt::missing();
    if missing.is_empty() {
        return Ok(());
    }
    let root = nix::unistd::geteuid().is_root();
    if root {
        // The lists a fresh machine lacks: apt plans with them.
        run_apt(&["update", "-qq"])?;
    }
    let plan = apt::simulate(&missing)?;
    let losses: Vec<&Change> = plan.losses(&consent.allow_remove).collect();
    if !losses.is_empty() {
        bail!("{}", apt::refusal(&missing, &plan, &losses));
    }
    if !root {
        bail!(
            "missing Debian packages: {0}\nInstall them with:\n  \
             sudo apt-get update && sudo apt-get install --no-install-recommends {0}",
            missing.join(" ")
        );
    }
    tracing::info!("installing missing Debian packages: {}", missing.join(" "));
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    run_apt(&args)
}

fn run_apt(args: &[&str]) -> Result<()> {
    let status = std::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("running apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "apt-get {} failed ({status}); its output above says why",
            args.join(" ")
        );
    }
    Ok(())
}

/// Another process may be installing right now; apt's own lock would make
/// this one fail instead of wait, so installs serialise on a lock of ours.
fn lock() -> Result<std::fs::File> {
    let cache = crate::paths::cache_dir()?;
    crate::paths::lock_exclusive(
        &cache.join("install-deps.lock"),
        "another process is running harness setup",
    )
}

/// Runs install-tools.sh: the Rust virtiofsd and the Python tools.
fn run_script(check_only: bool) -> Result<()> {
    let cache = crate::paths::cache_dir()?;
    // From a file, not stdin: the commands in it must not read the script as their input.
    let mut script =
        tempfile::NamedTempFile::new().context("writing install-tools.sh to a temp file")?;
    std::io::Write::write_all(&mut script, SCRIPT.as_bytes())
        .context("writing install-tools.sh to a temp file")?;
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
        .context("running harness/host/install-tools.sh (is bash installed?)")?;
    if output.status.success() {
        return Ok(());
    }
    if check_only {
        bail!("{}", String::from_utf8_lossy(&output.stderr).trim_end());
    }
    bail!(
        "harness/host/install-tools.sh could not install what the harness needs ({}); \
         its output above says what is missing and how to install it",
        output.status
    );
}
