//! Runs a subject's loader (its own binary, re-executed under the loader
//! role) as a child process, with a deadline, capturing what it prints.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use harness_wire::protocol::Outcome;
use harness_wire::roles;
use harness_wire::shell::quote_words;
use harness_wire::wait::{wait_until, Poll};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long any one loader command may take before it is killed: well under
/// the harness's per-VM timeout, so a hung step is reported by name.
pub(crate) const COMMAND_LIMIT: Duration = Duration::from_secs(45);

/// What checks every memory access or allocation (the debug and race
/// flavours): under TCG such a kernel verifies and loads a large BPF
/// object (a sched_ext scheduler) several times slower, past
/// [`COMMAND_LIMIT`] on a loaded host.
const SLOW_KERNEL_MARKS: &[&str] = &["/sys/kernel/debug/kmemleak", "/sys/kernel/debug/kcsan"];

/// [`COMMAND_LIMIT`], doubled on a kernel with [`SLOW_KERNEL_MARKS`] (still
/// under the harness's default 120 s a scenario).
fn command_limit() -> Duration {
    static LIMIT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let slow = SLOW_KERNEL_MARKS
            .iter()
            .any(|mark| std::path::Path::new(mark).exists());
        if slow {
            COMMAND_LIMIT * 2
        } else {
            COMMAND_LIMIT
        }
    })
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

    /// Runs the loader with `args` to completion (or to COMMAND_LIMIT, then kills it).
    pub(crate) fn run(&self, args: &[&str]) -> Result<Finished> {
        run_to_end(self.command(args), command_limit())
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
                Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() > command_limit() => {
                    bail!(
                        "{what} did not print {until:?} {times} time(s) within {:?}",
                        command_limit()
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
        let status = wait_with_deadline(&mut child, Instant::now() + command_limit())?;
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
/// and then kills it, capturing what it printed.
pub(crate) fn run_to_end(mut command: Command, limit: Duration) -> Result<Finished> {
    let start = Instant::now();
    let program = command.get_program().to_owned();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", Path::new(&program).display()))?;
    let stdout = read_to_string_in_background(child.stdout.take());
    let stderr = read_to_string_in_background(child.stderr.take());
    let status = wait_with_deadline(&mut child, start + limit)?;
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

fn wait_with_deadline(child: &mut Child, deadline: Instant) -> Result<ExitStatus> {
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
        "did not finish in time and was killed ({}); in the kernel it was at: {}",
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
