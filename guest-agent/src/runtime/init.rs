//! PID 1: a flat, ordered list of steps. It never panics and always powers
//! off, so the host sees either a result or a clean exit, never a hang.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};

use harness_wire::cli::{AgentCommand, Fault, RunArgs};
use harness_wire::guest_setup::{PREPARED_FD, PREPARED_NOTE};
use harness_wire::markers::{AGENT_ERROR, AGENT_READY, SCENARIO_STARTS};
use harness_wire::protocol::{ExitReport, Message};

use super::ports::HostLink;
use super::{mounts, net};
use crate::scenario::Subject;

/// PID 1's whole life: never returns, always powers off.
pub(crate) fn run_as_init(subjects: &[&Subject], command: Result<AgentCommand, String>) -> ! {
    let outcome = std::panic::catch_unwind(|| init_steps(subjects, command));
    let message = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(format!("{err:#}")),
        Err(_) => Some("the agent panicked".to_owned()),
    };
    if let Some(message) = message {
        // The host finds this on the console when no result arrives.
        console_line(&format!("{AGENT_ERROR}{message}"));
    }
    power_off()
}

/// PID 1, in order: the filesystems, the loopback interface, the line to
/// the host, the trace events a run captures with, the ready line, then
/// the one command, then power-off.
fn init_steps(subjects: &[&Subject], command: Result<AgentCommand, String>) -> Result<()> {
    let restored = restored();
    mounts::mount_filesystems(!restored)?;
    net::bring_up_loopback()?;
    let mut link = HostLink::open()?;
    if matches!(&command, Ok(AgentCommand::Run(args)) if args.fault == Some(Fault::HangBeforeReady))
    {
        hang();
    }
    if matches!(&command, Ok(AgentCommand::Run(_))) {
        // Its kernel text patches happen here, once, not in a scenario.
        super::kernel_output::arm()?;
    } else if restored {
        super::kernel_output::disarm()?;
    }
    announce_ready();
    let message = match command {
        Ok(AgentCommand::Run(args)) => match inject_fault(&args) {
            Some(Flow::Stop) => return Ok(()),
            None => return run_scenarios(subjects, &args, &mut link),
        },
        Ok(AgentCommand::Exec(args)) => Message::Exited(super::exec::run(&args, &mut link)?),
        Ok(AgentCommand::Shell(args)) => {
            Message::Exited(super::shell::run(subjects, &args, &mut link)?)
        }
        Ok(AgentCommand::List) => bad_arguments("as PID 1 the agent does not list".to_owned()),
        Err(usage) => bad_arguments(usage),
    };
    link.send(&message)
}

/// Whether `stage0` restored this VM from a template it had set up: it
/// leaves [`PREPARED_NOTE`] in a pipe on [`PREPARED_FD`], which a booted
/// PID 1 does not have open. Read and closed first, before anything opens a
/// file, so the agent's descriptors are numbered as after a boot.
fn restored() -> bool {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: `stat` is plain integers, for which zeroes are a value.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only fills `stat` from whatever the number is open on.
    let open = unsafe { libc::fstat(PREPARED_FD, &mut stat) } == 0;
    if !open || stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
        return false;
    }
    // SAFETY: a pipe there is stage0's, left for this read alone.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(PREPARED_FD) };
    let mut note = Vec::new();
    pipe.read_to_end(&mut note).is_ok() && note == PREPARED_NOTE
}

/// Each result goes to the host as it is settled; a run that stops early says why.
fn run_scenarios(subjects: &[&Subject], args: &RunArgs, link: &mut HostLink) -> Result<()> {
    let mut sent = Ok(());
    // With several scenarios, the console says which one a VM that dies was in.
    let several = !args.then.is_empty();
    let mut starts = |name: &str| {
        if several {
            console_line(&format!("{SCENARIO_STARTS}{name}"));
        }
    };
    let mut send = |result| {
        if sent.is_ok() {
            sent = link.send(&Message::Scenario(result));
        }
    };
    let reports = super::run::Reports {
        starts: &mut starts,
        send: &mut send,
    };
    let stopped = super::run::run_scenarios(subjects, args, reports);
    sent?;
    match stopped {
        Some(reason) => link.send(&Message::Stopped { reason }),
        None => Ok(()),
    }
}

/// The host sees a clean exit with the reason rather than a hang.
fn bad_arguments(usage: String) -> Message {
    Message::Exited(ExitReport {
        error: Some(format!(
            "bad agent arguments on the kernel command line: {usage}"
        )),
        ..ExitReport::default()
    })
}

/// Whether to stop before the scenario (the fault is what the host tests).
enum Flow {
    Stop,
}

/// Misbehaves as asked, so the harness's fault tests have a fault to detect.
fn inject_fault(args: &RunArgs) -> Option<Flow> {
    match args.fault? {
        Fault::ExitInit => std::process::exit(1),
        Fault::Hang => hang(),
        // Hung before the ready line, in init_steps.
        Fault::HangBeforeReady => None,
        // The scenario's run drops its expected exit, fails after its first
        // step, or fails (see run.rs).
        Fault::ExpectNoExit | Fault::FailAfterFirstStep | Fault::FailScenario => None,
        Fault::NoResult => Some(Flow::Stop),
        Fault::WriteHost => {
            let binary = std::env::current_exe().unwrap_or_default();
            try_write_host(binary.parent().unwrap_or(Path::new("/")));
            None
        }
    }
}

/// What the fault tests need from a guest that stops answering.
fn hang() -> ! {
    loop {
        std::thread::park();
    }
}

/// A line on the console; PID 1 must not panic if even that fails.
fn console_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The host measures boot time up to this line.
fn announce_ready() {
    console_line(AGENT_READY);
}

/// The guest must not be able to change the host. The root is mounted `ro`,
/// but a root guest can remount it read-write, so that is tried first: only
/// the host side (virtiofsd --readonly, 9p readonly=on) can then refuse.
fn try_write_host(dir: &Path) {
    let remount = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT,
        None::<&str>,
    );
    console_line(&format!(
        "guest-agent: remounting / read-write {}",
        match remount {
            Ok(()) => "succeeded".to_owned(),
            Err(errno) => format!("failed: {errno}"),
        }
    ));
    let target = dir.join("guest-write-test");
    let outcome = match std::fs::write(&target, "written from the guest") {
        Ok(()) => "succeeded".to_owned(),
        Err(err) => format!("failed: {err}"),
    };
    console_line(&format!(
        "guest-agent: writing {} {outcome}",
        target.display()
    ));
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Only reached if power-off itself failed; PID 1 must not exit (that panics the kernel).
    loop {
        std::thread::park();
    }
}
