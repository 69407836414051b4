//! Building blocks for a struct_ops subject's loader, so that a loader is
//! its own subcommands and little else: libbpf's log captured into a
//! verifier reason ([`Capture`], [`LoadFailure`]), the errno of a libbpf
//! error ([`errno_of`]), a [`Failure`] that carries its exit code (the codes
//! shared with the agent are [`exit`]), the wait of `hold` and the lines
//! of a program the verifier must refuse, and a congestion control's
//! loopback transfer with the sender's `TCP_INFO` ([`tcp`]), and KCSAN
//! watching every access while a rare side runs ([`race`]). It prints
//! nothing: it returns the lines, and `harness::loader` (this crate with
//! the printing helpers a loader's `main` calls) prints them.
//!
//! ```no_run
//! use harness_loader::{stop_requested, wait_for_stop, Failure};
//! fn run_hold() -> Result<(), Failure> {
//!     // open, load and attach the skeleton here; then, the handlers
//!     // installed before the line the scenario waits for is printed:
//!     let stop = stop_requested()?;
//!     // (print "attached")
//!     wait_for_stop(&stop);
//!     Ok(())
//! }
//! ```
#![deny(missing_docs)]

mod libbpf_log;
pub mod object;
pub mod race;
pub mod sched_ext;
pub mod struct_ops;
pub mod tcp;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use harness_wire::exit;
use harness_wire::programs::ProgramStats;
pub use libbpf_log::{bare_refusal, verifier_reason, BareRefusal, Capture, LoadFailure};
/// The libbpf-rs these helpers are built on: a loader that names its types
/// (`libbpf_rs::Error`, `Link`, `Object`) through this re-export uses the
/// same version.
pub use libbpf_rs;

/// An error that knows which exit code it deserves (see [`exit`]).
#[derive(Debug)]
pub struct Failure {
    /// The loader's exit code.
    pub code: u8,
    /// What went wrong, for stderr.
    pub message: String,
}

impl Failure {
    /// `message`, with the code `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// `message`, with [`exit::FAILURE`].
    pub fn other(message: impl Into<String>) -> Self {
        Failure::new(exit::FAILURE, message)
    }

    /// The same failure, its message prefixed with `context`.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Failure {
            code: self.code,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl From<LoadFailure> for Failure {
    fn from(err: LoadFailure) -> Self {
        let code = match err {
            LoadFailure::Rejected { .. } => exit::REJECTED_BY_VERIFIER,
            LoadFailure::Other { .. } => exit::FAILURE,
        };
        Failure::new(code, format!("Failed to load BPF skeleton: {err}"))
    }
}

impl From<anyhow::Error> for Failure {
    /// Anything else that went wrong, with [`exit::FAILURE`].
    fn from(err: anyhow::Error) -> Self {
        Failure::other(format!("{err:#}"))
    }
}

/// A loader's exit code for `outcome` (`harness::loader::finish` also
/// prints the failure's message on stderr).
pub fn exit_code(outcome: &Result<(), Failure>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(failure) => ExitCode::from(failure.code),
    }
}

/// The OS error a libbpf-rs error carries, if any (EEXIST for a second attach, say).
pub fn errno_of(err: &libbpf_rs::Error) -> Option<i32> {
    // libbpf-rs keeps its io::Error out of the source chain; std renders
    // one made from an errno as "... (os error N)", which the alternate
    // Display (the whole chain) keeps.
    let text = format!("{err:#}");
    let (_, after) = text.rsplit_once("(os error ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A flag that SIGINT or SIGTERM sets: the loader's way to stop cleanly.
pub fn stop_requested() -> Result<Arc<AtomicBool>, Failure> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag)).map_err(|err| {
            Failure::other(format!("installing the handler for signal {signal}: {err}"))
        })?;
    }
    Ok(flag)
}

/// Sleeps up to `total`, returning early (true) once a stop was requested.
pub fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) -> bool {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.load(Ordering::Relaxed)
}

/// Returns once SIGINT or SIGTERM arrives (`harness::loader::hold` prints
/// the line a scenario waits for first). The handlers are installed by
/// `stop`, a [`stop_requested`] made before the line was printed, so a
/// signal sent as soon as the line is read is not missed.
pub fn wait_for_stop(stop: &AtomicBool) {
    while !sleep_unless_stopped(stop, Duration::from_secs(3600)) {}
}

/// A program the verifier must refuse: `load` loads it. Its refusal is
/// the expected failure (with [`exit::REJECTED_BY_VERIFIER`] and the
/// reason); a load that succeeds is a failure of its own.
pub fn load_rejected(load: impl FnOnce() -> Result<(), Failure>) -> Result<(), Failure> {
    load()?;
    Err(Failure::other(
        "the verifier accepted a program it must reject",
    ))
}

/// This binary again, in the loader role for `subject`: for a loader that
/// runs helpers of its own (several processes racing, say). Add the words.
pub fn reexec(subject: &str) -> std::io::Result<std::process::Command> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.arg(harness_wire::roles::LOADER).arg(subject);
    Ok(command)
}

/// Every loaded program of `object`: its verifier cost and, BPF stats
/// being on in a scenario, how often it ran (`harness::loader::report_programs`
/// prints them for the agent). Read it before detaching, when the runs are in.
pub fn program_stats(object: &libbpf_rs::Object) -> Vec<ProgramStats> {
    use std::os::fd::{AsFd, AsRawFd};
    let mut all = Vec::new();
    for program in object.progs() {
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: the kernel fills at most `len` bytes of the info we own.
        let got = unsafe {
            libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(
                program.as_fd().as_raw_fd(),
                std::ptr::addr_of_mut!(info).cast(),
                &mut len,
            )
        };
        if got != 0 {
            // Not loaded (autoload off): nothing to say of it.
            continue;
        }
        let stats = ProgramStats {
            name: program.name().to_string_lossy().into_owned(),
            verified_insns: u64::from(info.verified_insns),
            run_cnt: info.run_cnt,
            object: (object.name())
                .map_or(String::new(), |name| name.to_string_lossy().into_owned()),
        };
        all.push(stats);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_errno_survives_libbpf_rs_context() {
        use libbpf_rs::ErrorExt as _;
        let plain = libbpf_rs::Error::from_raw_os_error(libc::EINVAL);
        assert_eq!(errno_of(&plain), Some(libc::EINVAL));
        let wrapped: libbpf_rs::Result<()> = Err(libbpf_rs::Error::from_raw_os_error(libc::EPERM));
        let wrapped = wrapped.context("failed to attach struct_ops").unwrap_err();
        assert_eq!(errno_of(&wrapped), Some(libc::EPERM));
        let none = libbpf_rs::Error::from(std::io::Error::other("no errno here"));
        assert_eq!(errno_of(&none), None);
    }
}
