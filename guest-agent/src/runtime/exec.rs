//! `harness exec`: one command, run as root with the usual mounts, its
//! stdout and stderr streamed to the host as they come, its end reported.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::ports::{self, HostLink};
use super::{debugger, module};
use harness_wire::cli::ExecArgs;
use harness_wire::protocol::{ExitReport, STDERR_PORT_NAME, STDOUT_PORT_NAME};

/// What a login shell would have: PID 1 starts with almost no environment.
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs the command of `args`, its output streamed to the host.
pub(crate) fn run(args: &ExecArgs, link: &mut HostLink) -> Result<ExitReport> {
    load_modules(&args.module, args.wait_for_debugger, link)?;
    let stdout = ports::open_for_writing(STDOUT_PORT_NAME)?;
    let stderr = ports::open_for_writing(STDERR_PORT_NAME)?;
    let Some((program, words)) = args.command.0.split_first() else {
        return Ok(failed(127, "no command to run".to_owned()));
    };
    let mut command = Command::new(program);
    command
        .args(words)
        .env("PATH", PATH)
        .env("HOME", "/root")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr.try_clone().context("sharing the stderr port")?);
    if let Some(cwd) = &args.cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            // The shell's codes: 127 not found, 126 found but not runnable.
            let (code, why) = match err.kind() {
                std::io::ErrorKind::NotFound => (
                    127,
                    format!(
                        "{program}: no such command in the guest (PATH={PATH}, or a missing --cwd)"
                    ),
                ),
                _ => (126, format!("{program}: {err}")),
            };
            return Ok(failed(code, why));
        }
    };
    let status = child.wait().context("waiting for the command")?;
    Ok(status.into())
}

fn failed(code: i32, why: String) -> ExitReport {
    ExitReport {
        code: Some(code),
        signal: None,
        error: Some(why),
    }
}

/// insmod each module; with a debugger, report where they are and wait.
pub(crate) fn load_modules(paths: &[PathBuf], debugger: bool, link: &mut HostLink) -> Result<()> {
    for path in paths {
        module::insmod(path)
            .map_err(|outcome| anyhow::anyhow!("insmod {}: {outcome}", path.display()))?;
    }
    if debugger {
        debugger::meet(link, paths)?;
    }
    Ok(())
}
