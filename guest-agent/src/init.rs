//! PID 1: a flat, ordered list of steps. It never panics and always powers
//! off, so the host sees either a result or a clean exit, never a hang.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use guest_agent::protocol::{ScenarioResult, RESULT_PORT_NAME};
use nix::sys::reboot::{reboot, RebootMode};

use crate::{mounts, Fault, RunArgs};

pub fn run_as_init(args: Result<RunArgs, String>) -> ! {
    let outcome = std::panic::catch_unwind(|| init_steps(args));
    let message = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(format!("{err:#}")),
        Err(_) => Some("the agent panicked".to_owned()),
    };
    if let Some(message) = message {
        // The host finds this on the console when no result arrives.
        eprintln!("guest-agent: error: {message}");
    }
    power_off()
}

fn init_steps(args: Result<RunArgs, String>) -> Result<()> {
    mounts::mount_filesystems(true)?;
    quiet_console()?;
    let port = find_result_port()?;
    announce_ready();
    if let Ok(args) = &args {
        match args.fault {
            Some(Fault::ExitInit) => std::process::exit(1),
            Some(Fault::Hang) => loop {
                std::thread::park();
            },
            Some(Fault::NoResult) => return Ok(()),
            Some(Fault::WriteHost) => try_write_host(&args.loader),
            None => {}
        }
    }
    let result = match args {
        Ok(args) => crate::run_scenario(&args),
        Err(usage) => ScenarioResult {
            scenario: "?".to_owned(),
            failures: vec![format!(
                "bad agent arguments on the kernel command line: {usage}"
            )],
            ..ScenarioResult::default()
        },
    };
    send_result(&port, &result)
}

/// The guest must not be able to change the host: its root is shared read-only.
fn try_write_host(beside: &std::path::Path) {
    let target = beside.with_file_name("guest-write-test");
    let outcome = match std::fs::write(&target, "written from the guest") {
        Ok(()) => "succeeded".to_owned(),
        Err(err) => format!("failed: {err}"),
    };
    eprintln!("guest-agent: writing {} {outcome}", target.display());
}

/// Keeps the serial console to warnings and worse: each console byte is slow
/// under emulation, and the full log reaches the host in the result anyway.
fn quiet_console() -> Result<()> {
    std::fs::write("/proc/sys/kernel/printk", "5").context("lowering the console log level")
}

/// The host measures boot time up to this line.
fn announce_ready() {
    eprintln!("guest-agent: ready");
}

fn find_result_port() -> Result<PathBuf> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports")
        .context("listing virtio ports (is virtio-serial missing?)")?;
    for port in ports.flatten() {
        let name = std::fs::read_to_string(port.path().join("name")).unwrap_or_default();
        if name.trim() == RESULT_PORT_NAME {
            return Ok(PathBuf::from("/dev").join(port.file_name()));
        }
    }
    anyhow::bail!("no virtio port named {RESULT_PORT_NAME}")
}

fn send_result(port: &PathBuf, result: &ScenarioResult) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .open(port)
        .with_context(|| format!("opening {}", port.display()))?;
    writeln!(file, "{}", result.to_json())
        .with_context(|| format!("writing {}", port.display()))?;
    file.sync_all().ok();
    Ok(())
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_POWER_OFF);
    // Only reached if power-off itself failed; PID 1 must not exit (that panics the kernel).
    loop {
        std::thread::park();
    }
}
