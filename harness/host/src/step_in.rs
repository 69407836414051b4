//! Stepping into the VM: `harness exec` runs one command in it and exits
//! with the command's code; `harness shell` opens an interactive root shell
//! on the terminal; both can wait for gdb (`--gdb`).

use std::io::IsTerminal;
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Result};
use harness_wire::cli::{AgentCommand, Argv, ExecArgs, ShellArgs};

use crate::accel::{self, Accel, Choice};
use crate::artifacts::Artifacts;
use crate::vm::{self, CommandRun, RunError, VmOptions};

/// What `harness exec` exits with when the VM, not the command, failed (a
/// guest panic, a hang past the timeout): like `docker run`, 125.
pub const VM_FAILED: i32 = 125;
/// A debugging session, or a shell, may last: a day, not the scenario's minutes.
const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How `exec` and `shell` are run.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct StepIn {
    /// Load every subject's module first.
    pub modules: bool,
    /// Wait for gdb once the modules are loaded.
    pub(crate) gdb: bool,
    /// The whole VM (default 120 s); ignored with `gdb`, which allows a day.
    pub(crate) timeout: Option<Duration>,
}

impl StepIn {
    /// Load every subject's module first, or not.
    pub fn modules(mut self, modules: bool) -> Self {
        self.modules = modules;
        self
    }

    /// Wait for gdb once the modules are loaded, or not.
    pub fn gdb(mut self, gdb: bool) -> Self {
        self.gdb = gdb;
        self
    }

    /// The whole VM's time limit (ignored with `gdb`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Runs `command` in the guest, its output streamed here; the exit code to
/// leave with (the command's, or 128 plus its signal, or `VM_FAILED`).
pub fn exec(artifacts: &Artifacts, command: Vec<String>, how: &StepIn) -> Result<Ended> {
    let agent = AgentCommand::Exec(ExecArgs {
        module: modules(artifacts, how.modules),
        cwd: std::env::current_dir().ok(),
        wait_for_debugger: how.gdb,
        command: Argv(command),
    });
    let options = VmOptions {
        // Named after this process, so a test can find the VM of the harness it started.
        label: Some(format!("exec-{}", std::process::id())),
        gdb: how.gdb,
        timeout: timeout(how),
        ..VmOptions::default()
    };
    let binary = artifacts.catalogue.any_binary()?;
    let run = crate::suite::on_decided_accel(&artifacts.cache, |accel, probing| {
        let options = VmOptions {
            // A probe needs every boot message: a working KVM guest speaks within a second.
            verbose_console: options.verbose_console || probing,
            ..options.clone()
        };
        vm::run_command(artifacts, binary, &agent, &options, (accel, probing))
    });
    Ok(ended(run))
}

/// An interactive shell on this terminal, after `scenario` when named.
pub fn shell(artifacts: &Artifacts, scenario: Option<String>, how: &StepIn) -> Result<Ended> {
    if !std::io::stdin().is_terminal() {
        bail!("harness shell needs a terminal to be run in (or use `harness exec -- CMD`)");
    }
    let (rows, cols) = terminal_size();
    let (module, bpf_dir, binary) = match &scenario {
        Some(name) => {
            let run = artifacts.run_args(name, None)?;
            let binary = artifacts.binary_for(name)?;
            (run.module.into_iter().collect(), run.bpf_dir, binary)
        }
        None => (
            modules(artifacts, true),
            None,
            artifacts.catalogue.any_binary()?,
        ),
    };
    let agent = AgentCommand::Shell(ShellArgs {
        module,
        cwd: std::env::current_dir().ok(),
        scenario: scenario.clone(),
        bpf_dir,
        wait_for_debugger: how.gdb,
        rows,
        cols,
        term: std::env::var("TERM").ok(),
    });
    let options = VmOptions {
        label: Some(format!("shell-{}", std::process::id())),
        interactive: true,
        gdb: how.gdb,
        timeout: INTERACTIVE_TIMEOUT,
        ..VmOptions::default()
    };
    // In a scenario's own topology, as it runs under `harness run`.
    let declared = (scenario.as_deref()).and_then(|name| artifacts.catalogue.find(name));
    let options = match declared {
        Some((_, declared)) => options.with_topology(declared.topology),
        None => options,
    };
    let accel = accel(artifacts)?;
    let run = {
        let _terminal = TerminalGuard::save();
        vm::run_command(artifacts, binary, &agent, &options, (accel, false))
    };
    let report = match &run {
        Ok(CommandRun {
            scenario: Some(result),
            ..
        }) => Some(harness_wire::render::render_report(result)),
        _ => None,
    };
    Ok(Ended {
        report,
        ..ended(run)
    })
}

fn modules(artifacts: &Artifacts, wanted: bool) -> Vec<std::path::PathBuf> {
    match wanted {
        true => artifacts.modules.values().cloned().collect(),
        false => Vec::new(),
    }
}

fn timeout(how: &StepIn) -> Duration {
    match how.gdb {
        true => INTERACTIVE_TIMEOUT,
        false => how.timeout.unwrap_or(Duration::from_secs(
            harness_wire::cli::DEFAULT_VM_TIMEOUT_SECS,
        )),
    }
}

/// The accelerator: the host's verdict, probing KVM first if there is none.
fn accel(artifacts: &Artifacts) -> Result<Accel> {
    if let Choice::Decided(accel, _) = accel::choose(&artifacts.cache)? {
        return Ok(accel);
    }
    // A VM that runs `true` settles the verdict once for this host.
    let _ = exec(artifacts, vec!["true".to_owned()], &StepIn::default());
    match accel::choose(&artifacts.cache)? {
        Choice::Decided(accel, _) => Ok(accel),
        Choice::ProbeKvm => Ok(Accel::Tcg),
    }
}

/// How a command run in a VM ended, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Ended {
    /// The command's exit code, 128 plus its signal, or [`VM_FAILED`].
    pub code: i32,
    /// Why it could not run or finish, when it could not.
    pub error: Option<String>,
    /// The report of the scenario a shell was opened in, rendered.
    pub report: Option<String>,
}

/// The command's code, 128 plus its signal, or `VM_FAILED` with the reason.
fn ended(run: Result<CommandRun, RunError>) -> Ended {
    match run {
        Ok(run) => Ended {
            code: match (run.exit.code, run.exit.signal) {
                (Some(code), _) => code,
                (None, Some(signal)) => 128 + signal,
                (None, None) => VM_FAILED,
            },
            error: run.exit.error.clone(),
            report: None,
        },
        Err(err) => Ended {
            code: VM_FAILED,
            error: Some(format!("{err:#}")),
            report: None,
        },
    }
}

/// The terminal's size, for the guest's terminal.
fn terminal_size() -> (Option<u16>, Option<u16>) {
    // SAFETY: TIOCGWINSZ writes into the winsize we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    match ok == 0 && size.ws_row > 0 {
        true => (Some(size.ws_row), Some(size.ws_col)),
        false => (None, None),
    }
}

/// The terminal's settings, put back however the VM ends: QEMU makes the
/// terminal raw and restores it on a clean exit, not when it is killed.
struct TerminalGuard {
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    fn save() -> Self {
        // SAFETY: tcgetattr fills the termios we own.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        let ok = unsafe { libc::tcgetattr(std::io::stdin().as_raw_fd(), &mut termios) } == 0;
        TerminalGuard {
            saved: ok.then_some(termios),
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(termios) = &self.saved {
            // SAFETY: tcsetattr with the settings tcgetattr gave.
            unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, termios) };
        }
    }
}
