//! PID 1: a flat, ordered list of steps. It never panics and always powers
//! off, so the host sees either a result or a clean exit, never a hang.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guest_agent::protocol::{ScenarioResult, RESULT_PORT_NAME};
use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};

use guest_agent::cli::{Fault, RunArgs};

use crate::mounts;

/// How long the virtio port may take to get its name (set asynchronously).
const PORT_WAIT: Duration = Duration::from_secs(5);

pub fn run_as_init(args: Result<RunArgs, String>) -> ! {
    let outcome = std::panic::catch_unwind(|| init_steps(args));
    let message = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(format!("{err:#}")),
        Err(_) => Some("the agent panicked".to_owned()),
    };
    if let Some(message) = message {
        // The host finds this on the console when no result arrives.
        console_line(&format!("guest-agent: error: {message}"));
    }
    power_off()
}

fn init_steps(args: Result<RunArgs, String>) -> Result<()> {
    mounts::mount_filesystems(true)?;
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

/// A line on the console; PID 1 must not panic if even that fails.
fn console_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The host measures boot time up to this line.
fn announce_ready() {
    console_line("guest-agent: ready");
}

/// The guest must not be able to change the host. The root is mounted `ro`,
/// but a root guest can remount it read-write, so that is tried first: only
/// the host side (virtiofsd --readonly, 9p readonly=on) can then refuse.
fn try_write_host(beside: &Path) {
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
    let target = beside.with_file_name("guest-write-test");
    let outcome = match std::fs::write(&target, "written from the guest") {
        Ok(()) => "succeeded".to_owned(),
        Err(err) => format!("failed: {err}"),
    };
    console_line(&format!(
        "guest-agent: writing {} {outcome}",
        target.display()
    ));
}

fn find_result_port() -> Result<PathBuf> {
    let deadline = Instant::now() + PORT_WAIT;
    loop {
        if let Some(port) = named_port(RESULT_PORT_NAME) {
            return Ok(port);
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no virtio port named {RESULT_PORT_NAME} after {PORT_WAIT:?} (is virtio-serial missing?)"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn named_port(wanted: &str) -> Option<PathBuf> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    ports.flatten().find_map(|port| {
        let name = std::fs::read_to_string(port.path().join("name")).ok()?;
        (name.trim() == wanted).then(|| PathBuf::from("/dev").join(port.file_name()))
    })
}

fn send_result(port: &Path, result: &ScenarioResult) -> Result<()> {
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
