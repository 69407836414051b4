//! `harness shell`: an interactive root shell on the console (the serial
//! port the host's terminal is wired to), as the controlling terminal of its
//! own session, so Ctrl-C reaches the guest's foreground program. With a
//! scenario, the shell opens while the scenario's loader is attached.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::rc::Rc;

use anyhow::{Context, Result};

use harness_wire::cli::{RunArgs, ShellArgs};
use harness_wire::protocol::{ExitReport, Message, Outcome};

use super::exec::{load_modules, PATH};
use super::ports::HostLink;
use crate::scenario::Subject;

/// The console the kernel is booted with, where the host's terminal is.
const CONSOLE: &str = "/dev/ttyS0";
const PROMPT: &str = r"[vm \W]# ";

/// A shell on the console, after the scenario `args` names (if any).
pub(crate) fn run(
    subjects: &[&Subject],
    args: &ShellArgs,
    link: &mut HostLink,
) -> Result<ExitReport> {
    let Some(scenario) = &args.scenario else {
        load_modules(&args.module, args.wait_for_debugger, link)?;
        return open(args);
    };
    let run = RunArgs {
        scenario: scenario.clone(),
        then: Vec::new(),
        module: args.module.first().cloned(),
        bpf_dir: args.bpf_dir.clone(),
        json: false,
        vm_timeout: None,
        fault: None,
    };
    let report = Rc::new(RefCell::new(None));
    let pause = {
        let (args, report) = (args.clone(), Rc::clone(&report));
        move |what: &str| {
            console(&format!(
                "guest-agent: {what}; the shell is yours (exit ends the VM)"
            ));
            let outcome = open(&args);
            let described = match &outcome {
                Ok(report) => report.outcome(),
                Err(err) => Outcome::Failed {
                    reason: format!("{err:#}"),
                },
            };
            *report.borrow_mut() = Some(outcome);
            described
        }
    };
    let result = super::run::run_scenario_pausing(subjects, &run, Box::new(pause));
    link.send(&Message::Scenario(result))?;
    let outcome = report.borrow_mut().take();
    outcome.unwrap_or_else(|| {
        Err(anyhow::anyhow!(
            "the scenario ended before the shell opened"
        ))
    })
}

fn console(line: &str) {
    if let Ok(mut tty) = OpenOptions::new().write(true).open(CONSOLE) {
        let _ = std::io::Write::write_all(&mut tty, format!("{line}\r\n").as_bytes());
    }
}

/// bash (or sh) on the console, in a session of its own, until it exits.
fn open(args: &ShellArgs) -> Result<ExitReport> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .open(CONSOLE)
        .with_context(|| format!("opening {CONSOLE}"))?;
    set_window_size(&tty, args.rows, args.cols);
    let bash = Path::new("/bin/bash").is_file();
    let mut command = Command::new(if bash { "/bin/bash" } else { "/bin/sh" });
    if bash {
        command.args(["--norc", "--noprofile", "-i"]);
    }
    command
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("TERM", args.term.as_deref().unwrap_or("linux"))
        .env("PS1", PROMPT)
        .current_dir(args.cwd.as_deref().unwrap_or(Path::new("/")))
        .stdin(Stdio::from(tty.try_clone()?))
        .stdout(Stdio::from(tty.try_clone()?))
        .stderr(Stdio::from(tty));
    // SAFETY: setsid and ioctl are async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            // A session of its own, with the console as its controlling
            // terminal: job control and Ctrl-C then work as on a real one.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = command
        .status()
        .context("starting the shell (/bin/bash or /bin/sh)")?;
    Ok(status.into())
}

/// The host terminal's size, so full-screen programs and line editing fit.
fn set_window_size(tty: &File, rows: Option<u16>, cols: Option<u16>) {
    let (Some(rows), Some(cols)) = (rows, cols) else {
        return;
    };
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we own; a failure only loses the size.
    unsafe {
        libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}
