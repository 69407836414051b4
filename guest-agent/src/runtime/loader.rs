//! Runs a subject's loader (its own binary, re-executed under the loader
//! role) as a child process, with a deadline, capturing what it prints.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness_wire::cli::DEFAULT_VM_TIMEOUT_SECS;
use harness_wire::protocol::Outcome;
use harness_wire::roles;
use harness_wire::shell::quote_words;
use harness_wire::wait::{wait_until, Poll};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The share of the host's per-VM timeout that any one loader command may
/// take before it is killed, as numerator and denominator: 45 s of the
/// default 120 s, well under it, so a hung step is reported by name before
/// the host ends the VM.
const COMMAND_SHARE: (u32, u32) = (3, 8);

/// What checks every memory access or allocation (the debug and race
/// flavours): under TCG such a kernel verifies and loads a large BPF
/// object (a sched_ext scheduler) several times slower, past the plain
/// share on a loaded host, so its commands get twice the share.
const SLOW_KERNEL_MARKS: &[&str] = &["/sys/kernel/debug/kmemleak", "/sys/kernel/debug/kcsan"];

/// How long one loader command may take, and the words an error names it
/// with: set from the host's per-VM timeout (`run --vm-timeout`), else
/// from [`DEFAULT_VM_TIMEOUT_SECS`] when first needed.
static LIMIT: OnceLock<(Duration, String)> = OnceLock::new();

/// Sets the per-VM timeout the command limit is a share of (once, before
/// any loader runs; later calls change nothing).
pub(crate) fn set_vm_timeout(secs: u64) {
    let _ = LIMIT.set(limit_for(Duration::from_secs(secs), slow_kernel()));
}

/// The command limit, and how an error names it.
fn command_limit() -> &'static (Duration, String) {
    LIMIT.get_or_init(|| {
        let timeout = Duration::from_secs(DEFAULT_VM_TIMEOUT_SECS);
        limit_for(timeout, slow_kernel())
    })
}

fn slow_kernel() -> bool {
    SLOW_KERNEL_MARKS
        .iter()
        .any(|mark| Path::new(mark).exists())
}

/// The command limit within a VM timeout of `timeout`, on a slow kernel or
/// not, and what a command that reached it ran into, with the fix.
fn limit_for(timeout: Duration, slow: bool) -> (Duration, String) {
    let (numerator, denominator) = COMMAND_SHARE;
    let share = timeout * numerator / denominator;
    let (limit, of) = match slow {
        true => (
            share * 2,
            format!(
                "twice {numerator}/{denominator} of the VM's timeout, on a debug or race kernel"
            ),
        ),
        false => (
            share,
            format!("{numerator}/{denominator} of the VM's timeout"),
        ),
    };
    let named = format!(
        "the loaders' command limit, {}s ({of}; a longer --timeout gives it longer)",
        limit.as_secs()
    );
    (limit, named)
}

/// How to start the subject's loader: this very binary, in the loader role.
#[derive(Clone)]
pub(crate) struct LoaderCommand {
    pub(crate) binary: PathBuf,
    /// The subject whose loader it is (a binary may declare several).
    pub(crate) subject: &'static str,
    /// As actions show it (`loader once ...`).
    pub(crate) name: &'static str,
    /// Variables the loader is run with (where the subject's module is, for
    /// the fix it prints when the module is not loaded).
    pub(crate) env: Vec<(String, OsString)>,
}

/// A loader run that has ended.
pub(crate) struct Finished {
    pub(crate) outcome: Outcome,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) duration: Duration,
}

impl LoaderCommand {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg(roles::LOADER)
            .arg(self.subject)
            .args(args)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs the loader with `args` to completion (or to its command limit,
    /// then kills it).
    pub(crate) fn run(&self, args: &[&str]) -> Result<Finished> {
        let (limit, named) = command_limit();
        run_to_end(self.command(args), *limit, named)
    }

    /// Starts the loader with `args` and returns once it has printed the
    /// line `until` `times` times (`hold` prints `attached` once attached).
    pub(crate) fn start_until(&self, args: &[&str], until: &str, times: usize) -> Result<Held> {
        let start = Instant::now();
        let what = std::iter::once(self.name)
            .chain(args.iter().copied())
            .collect::<Vec<_>>();
        let what = quote_words(&what);
        let mut child = self
            .command(args)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stderr = read_to_string_in_background(child.stderr.take());
        let (lines_tx, lines_rx) = mpsc::channel();
        let stdout = child.stdout.take();
        let stdout = thread::spawn(move || {
            let mut all = String::new();
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    all.push_str(&line);
                    all.push('\n');
                    let _ = lines_tx.send(line);
                }
            }
            all
        });
        let mut held = Held {
            what: what.clone(),
            child: Some(child),
            stdout: Some(stdout),
            stderr: Some(stderr),
            start,
        };
        let mut seen = 0;
        loop {
            match lines_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line == until => {
                    seen += 1;
                    if seen == times {
                        return Ok(held);
                    }
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let ended = held.wait_for_exit()?;
                    bail!(
                        "{what} ended before printing {until:?} {times} time(s) ({}): {}",
                        ended.outcome,
                        ended.stderr.trim()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() > command_limit().0 => {
                    bail!(
                        "{what} did not print {until:?} {times} time(s) within {}",
                        command_limit().1
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

/// A loader process still running. Dropping it kills it.
pub struct Held {
    /// The command, as a person would type it.
    pub(crate) what: String,
    child: Option<Child>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
    start: Instant,
}

impl Held {
    /// The loader's process id, while it runs.
    pub(crate) fn pid(&self) -> Option<Pid> {
        self.child
            .as_ref()
            .map(|child| Pid::from_raw(child.id() as i32))
    }

    /// Sends `signal` and waits for the process to end.
    pub(crate) fn stop(mut self, signal: Signal) -> Result<Finished> {
        // The step is the signal and the exit it causes, not the whole hold.
        self.start = Instant::now();
        if let Some(pid) = self.pid() {
            kill(pid, signal).with_context(|| format!("sending {signal} to {}", self.what))?;
        }
        self.wait_for_exit()
    }

    /// Waits for the process to end by itself (a scheduler's loader exits
    /// when the kernel ejects its scheduler, say).
    pub(crate) fn wait(mut self) -> Result<Finished> {
        self.start = Instant::now();
        self.wait_for_exit()
    }

    fn wait_for_exit(&mut self) -> Result<Finished> {
        let mut child = self
            .child
            .take()
            .with_context(|| format!("{} was already reaped", self.what))?;
        let (limit, named) = command_limit();
        let status = wait_with_deadline(&mut child, Instant::now() + *limit, named)?;
        let stdout = self.stdout.take().context("stdout reader already joined")?;
        let stderr = self.stderr.take().context("stderr reader already joined")?;
        Ok(finished(status, stdout, stderr, self.start))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            reap_briefly(&mut child);
        }
    }
}

/// Runs `command` (stdout and stderr piped) to completion, or for `limit`
/// (which an error calls `named`) and then kills it, capturing what it
/// printed.
pub(crate) fn run_to_end(mut command: Command, limit: Duration, named: &str) -> Result<Finished> {
    let start = Instant::now();
    let program = command.get_program().to_owned();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", Path::new(&program).display()))?;
    let stdout = read_to_string_in_background(child.stdout.take());
    let stderr = read_to_string_in_background(child.stderr.take());
    let status = wait_with_deadline(&mut child, start + limit, named)?;
    Ok(finished(status, stdout, stderr, start))
}

fn read_to_string_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

fn wait_with_deadline(child: &mut Child, deadline: Instant, limit: &str) -> Result<ExitStatus> {
    let exited = wait_until(deadline, Duration::from_millis(10), || {
        match child.try_wait().context("waiting for the child process") {
            Ok(Some(status)) => Poll::Ready(Ok(status)),
            Ok(None) => Poll::Pending,
            Err(err) => Poll::Ready(Err(err)),
        }
    });
    if let Some(exited) = exited {
        return exited;
    }
    let _ = child.kill();
    bail!(
        "did not finish within {limit} and was killed ({}); in the kernel it was at: {}",
        reap_briefly(child),
        kernel_wait_point(child.id())
    );
}

/// SIGKILL does not end a task stuck in the kernel (D state): wait a
/// little, then leave it rather than hang PID 1 with it.
fn reap_briefly(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    let reaped = wait_until(deadline, Duration::from_millis(10), || {
        match child.try_wait() {
            Ok(Some(status)) => Poll::Ready(status.to_string()),
            _ => Poll::Pending,
        }
    });
    reaped.unwrap_or_else(|| "still alive after SIGKILL: stuck in the kernel".to_owned())
}

/// Where a task waits in the kernel: /proc/PID/wchan, and its stack when readable.
fn kernel_wait_point(pid: u32) -> String {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    let stack = std::fs::read_to_string(format!("/proc/{pid}/stack")).unwrap_or_default();
    match (wchan.trim(), stack.trim()) {
        ("", "") => "unknown (the task is gone)".to_owned(),
        (wchan, "") => wchan.to_owned(),
        (wchan, stack) => format!("{wchan}\n{stack}"),
    }
}

fn finished(
    status: ExitStatus,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
    start: Instant,
) -> Finished {
    Finished {
        outcome: Outcome::from(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        duration: start.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_limit_is_a_share_of_the_vm_timeout() {
        let secs = |timeout: u64, slow: bool| limit_for(Duration::from_secs(timeout), slow).0;
        // The default timeout's limits, as they were when fixed.
        assert_eq!(
            secs(DEFAULT_VM_TIMEOUT_SECS, false),
            Duration::from_secs(45)
        );
        assert_eq!(secs(DEFAULT_VM_TIMEOUT_SECS, true), Duration::from_secs(90));
        // A longer --timeout gives a slow loader longer, still under it.
        assert_eq!(secs(300, false), Duration::from_millis(112_500));
        assert_eq!(secs(300, true), Duration::from_secs(225));
        let (_, named) = limit_for(Duration::from_secs(24), false);
        assert_eq!(
            named,
            "the loaders' command limit, 9s (3/8 of the VM's timeout; a longer --timeout gives it longer)"
        );
    }

    #[test]
    fn a_command_past_its_limit_is_killed_and_the_error_names_the_limit() {
        let mut command = Command::new("sleep");
        command
            .arg("30")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let err = run_to_end(command, Duration::from_millis(200), "the test's limit")
            .err()
            .expect("sleep 30 outlived a 0.2 s limit");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        let message = format!("{err:#}");
        assert!(
            message.contains("within the test's limit and was killed"),
            "{message}"
        );
    }
}
