//! The watch: short questions asked in turn until one says how the VM
//! ended. Each answers one thing: did QEMU exit, is the agent up, is its
//! result in, did the KVM guest stay silent, did virtiofsd go, did the guest
//! panic; and, along the way, the exec'd command's output is passed on and a
//! debugger is let in.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Result;
use harness_wire::markers;
use harness_wire::protocol::Message;

use super::messages::panic_detail;
use super::{RunError, Vm, VmFailure};
use crate::qmp::{GuestEvent, QmpClient};
use harness_wire::wait::{wait_until, Poll};

/// How long a guest on KVM may take to reach the agent before KVM is judged broken.
pub(super) const KVM_WATCHDOG: Duration = Duration::from_secs(20);
/// How long QEMU may outlive its virtiofsd before that counts as a fault.
const VIRTIOFSD_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may take to exit once the agent's result is in.
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);
/// How often the watch asks its questions.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// How often QMP is asked for events (each ask is a round trip).
const QMP_INTERVAL: Duration = Duration::from_millis(250);

/// How a VM's run ended, as the watch saw it.
#[derive(Debug)]
pub(super) enum Ending {
    /// QEMU is gone (it may have been ended by the watch once nothing was left to wait for).
    QemuExited(ExitStatus),
    VirtiofsdDied(String),
    Panicked,
    DeadlinePassed,
    KvmSilent,
    NeverReady,
}

/// What the watch has seen so far.
#[derive(Default)]
pub(super) struct Watch {
    /// When the agent's ready line appeared, after QEMU started.
    pub(crate) ready_after: Option<Duration>,
    /// When the run's last result arrived (every scenario's, or the command's exit).
    result_at: Option<Instant>,
    /// When each scenario's result arrived, in order.
    pub(crate) results_at: Vec<Instant>,
    /// How many scenarios the console says have started (with several a VM).
    scenarios_started: usize,
    virtiofsd_gone_at: Option<Instant>,
    /// virtiofsd's status, when it was seen to fail (not exit cleanly) while
    /// QEMU still ran: QEMU may then exit before the grace is over, and its
    /// exit must still be put down to the daemon.
    virtiofsd_died: Option<String>,
    last_qmp_poll: Option<Instant>,
    panicked: bool,
    debugger_let_in: bool,
    /// How much of the command's stdout and stderr was passed on.
    streamed: (u64, u64),
    /// The console log, read where the last look stopped.
    console: super::messages::Tail,
    /// A panic line was on the console.
    console_panicked: bool,
    /// The agent's result port, read where the last look stopped.
    results: super::messages::Tail,
    /// Every message the agent sent so far, in order.
    messages: Vec<Message>,
}

impl Watch {
    /// Why QEMU exited without the agent's result. A virtiofsd that failed
    /// while QEMU still ran comes first: the guest lost its root, and what
    /// followed (an agent that could not go on, its panic, QEMU giving up)
    /// stems from that. QEMU's own exit is checked first in each round, so
    /// a daemon that went because QEMU did is never seen here.
    pub(super) fn no_result(&self, console: &str, status: ExitStatus) -> VmFailure {
        if let Some(status) = &self.virtiofsd_died {
            VmFailure::VirtiofsdDied {
                status: status.clone(),
            }
        } else if markers::panic_line(console).is_some() {
            VmFailure::GuestPanicked {
                detail: panic_detail(console),
            }
        } else if crashed(status) {
            VmFailure::QemuCrashed {
                status: status.to_string(),
            }
        } else {
            VmFailure::NoResult {
                status: status.to_string(),
            }
        }
    }
}

impl Vm {
    /// Asks the watch's questions until one of them says how the VM ended,
    /// or the VM's time is up: its timeout, counted again from each
    /// scenario's start and each result when it runs several.
    pub(super) fn watch(&mut self) -> Result<Ending, RunError> {
        let mut since = self.started;
        loop {
            let progress = self.progress();
            let deadline = since + self.options.timeout;
            let ending = wait_until(deadline, WATCH_INTERVAL, || match self.poll_once() {
                Ok(Some(ending)) => Poll::Ready(Some(Ok(ending))),
                // The clock starts again.
                Ok(None) if self.progress() > progress => Poll::Ready(None),
                Ok(None) => Poll::Pending,
                Err(err) => Poll::Ready(Some(Err(err))),
            });
            match ending {
                Some(Some(ending)) => return ending.map_err(RunError::Harness),
                Some(None) => since = Instant::now(),
                None => return Ok(Ending::DeadlinePassed),
            }
        }
    }

    /// Scenarios started and results in, so far.
    fn progress(&self) -> usize {
        self.watch.scenarios_started + self.watch.results_at.len()
    }

    /// One round of questions; the first that has an answer ends the watch.
    fn poll_once(&mut self) -> Result<Option<Ending>> {
        self.stream_output();
        // QEMU's exit is checked first: it explains more than any timeout.
        if let Some(status) = self.qemu.try_wait()? {
            return Ok(Some(Ending::QemuExited(status)));
        }
        // Only what the console and the result port gained since the last round.
        self.read_console();
        self.read_results();
        self.let_debugger_in()?;
        let ending = self
            .result_is_in()
            .or_else(|| self.kvm_stayed_silent())
            .or_else(|| self.never_ready())
            .or_else(|| self.virtiofsd_is_gone())
            .or_else(|| self.guest_panicked());
        Ok(ending)
    }

    /// The console's new lines: the agent's ready line, each scenario's
    /// start, a panic line.
    fn read_console(&mut self) {
        let Some(log) = self.spec.console.log() else {
            return;
        };
        for line in self.watch.console.new_lines(log) {
            if self.watch.ready_after.is_none() && markers::agent_ready(&line) {
                self.watch.ready_after = Some(self.started.elapsed());
            }
            self.watch.scenarios_started += line.matches(markers::SCENARIO_STARTS).count();
            self.watch.console_panicked |= markers::panic_line(&line).is_some();
        }
    }

    /// The agent's new messages; a line that is not one is left out (the
    /// run's end reads the whole port again, and names it).
    fn read_results(&mut self) {
        for line in self.watch.results.new_lines(&self.spec.result_file) {
            if let Ok(message) = serde_json::from_str::<Message>(&line) {
                self.watch.messages.push(message);
            }
        }
    }

    /// QEMU 7.2 can hang in its vhost-user teardown after the guest powers
    /// off; once the result is in and QEMU had its grace, it is ended.
    fn result_is_in(&mut self) -> Option<Ending> {
        if self.watch.result_at.is_none() && self.result_arrived() {
            self.watch.result_at = Some(Instant::now());
        }
        if self
            .watch
            .result_at
            .is_some_and(|at| at.elapsed() > POWER_OFF_GRACE)
        {
            self.qemu.kill();
        }
        None
    }

    /// The messages that end this kind of run are in: the command's exit,
    /// or every scenario's result (or the agent's word that it stopped).
    fn result_arrived(&mut self) -> bool {
        let messages = &self.watch.messages;
        let results = messages
            .iter()
            .filter(|message| matches!(message, Message::Scenario(_)))
            .count();
        let now = Instant::now();
        let new = results.saturating_sub(self.watch.results_at.len());
        self.watch.results_at.extend(std::iter::repeat_n(now, new));
        let runs_command = self.runs_command;
        messages.iter().any(|message| match message {
            Message::Exited(_) => runs_command,
            Message::Stopped { .. } => !runs_command,
            Message::Scenario(_) | Message::WaitingForDebugger { .. } => false,
        }) || (!runs_command && results >= self.expected_results)
    }

    /// A KVM guest that works reaches the agent in about a second; one that
    /// prints and then stalls must not earn a "KVM works" verdict.
    fn kvm_stayed_silent(&mut self) -> Option<Ending> {
        let silent = self.probing
            && self.watch.ready_after.is_none()
            && self.started.elapsed() > KVM_WATCHDOG;
        silent.then_some(Ending::KvmSilent)
    }

    /// A guest whose agent has not said ready by its boot deadline stalled
    /// in its boot (seen under TCG: the console silent after its last
    /// kernel line). The deadline follows the boots measured here
    /// (`boot_times`: 10 s for the default kernel, against its 1 to 2 s). Nothing of the
    /// subject runs before the ready line, so the caller may boot again.
    /// Only for scenarios: not while a person drives the VM (who may hold
    /// it in a debugger), not for a command (whose `--timeout` covers its
    /// boot), not while probing KVM (the watchdog judges that boot).
    fn never_ready(&self) -> Option<Ending> {
        let exempt =
            self.options.gdb || self.options.interactive || self.runs_command || self.probing;
        let late = self.started.elapsed() > self.boot_deadline.after;
        (!exempt && late && self.watch.ready_after.is_none()).then_some(Ending::NeverReady)
    }

    /// virtiofsd also exits, cleanly, when a powered-off guest disconnects, a
    /// moment before QEMU does; a clean exit means the guest is gone, so QEMU
    /// is ended and the result, or its absence, speaks. Only a daemon that
    /// died is a fault.
    fn virtiofsd_is_gone(&mut self) -> Option<Ending> {
        let (clean, status) = self.virtiofsd.as_ref()?.has_exited()?;
        if !clean {
            self.watch
                .virtiofsd_died
                .get_or_insert_with(|| status.clone());
        }
        let since = *self
            .watch
            .virtiofsd_gone_at
            .get_or_insert_with(Instant::now);
        if since.elapsed() <= VIRTIOFSD_GRACE {
            return None;
        }
        if clean {
            self.qemu.kill();
            return None;
        }
        Some(Ending::VirtiofsdDied(status))
    }

    fn guest_panicked(&mut self) -> Option<Ending> {
        let due = self
            .watch
            .last_qmp_poll
            .is_none_or(|at| at.elapsed() > QMP_INTERVAL);
        if due {
            self.watch.last_qmp_poll = Some(Instant::now());
            if let Some(Ok(events)) = self.qmp.as_mut().map(QmpClient::events) {
                self.watch.panicked |= events.contains(&GuestEvent::Panicked);
            }
        }
        (self.watch.panicked || self.watch.console_panicked).then_some(Ending::Panicked)
    }

    /// Passes on what the exec'd command printed since the last look.
    pub(super) fn stream_output(&mut self) {
        let Some((stdout, stderr)) = self.spec.output_files.clone() else {
            return;
        };
        let (out, err) = self.watch.streamed;
        let out = forward(&stdout, out, &mut std::io::stdout());
        let err = forward(&stderr, err, &mut std::io::stderr());
        self.watch.streamed = (out, err);
    }

    /// The agent waits for a debugger: pause QEMU, say how to connect, and
    /// let the agent go on (it does once gdb resumes the VM).
    fn let_debugger_in(&mut self) -> Result<()> {
        if self.watch.debugger_let_in || self.spec.gdb_port.is_none() {
            return Ok(());
        }
        let Some(modules) = self
            .watch
            .messages
            .iter()
            .find_map(|message| match message {
                Message::WaitingForDebugger { modules } => Some(modules.clone()),
                _ => None,
            })
        else {
            return Ok(());
        };
        self.watch.debugger_let_in = true;
        if let Some(qmp) = self.qmp.as_mut() {
            qmp.stop()?;
        }
        self.announce_debugger(&modules);
        self.say_go()
    }
}

/// Whether QEMU died of a fault signal of its own (the harness ends it
/// with SIGKILL or SIGTERM, never these).
fn crashed(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let faults = [
        libc::SIGSEGV,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
    ];
    status
        .signal()
        .is_some_and(|signal| faults.contains(&signal))
}

/// Copies what `path` gained past `from` to `to`; returns the new offset.
fn forward(path: &Path, from: u64, to: &mut impl Write) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return from;
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return from;
    }
    let mut fresh = Vec::new();
    let _ = file.read_to_end(&mut fresh);
    if !fresh.is_empty() {
        let _ = to.write_all(&fresh);
        let _ = to.flush();
    }
    from + fresh.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    const PANIC: &str = "[ 2.0] Kernel panic - not syncing: Attempted to kill init!\n";

    #[test]
    fn qemu_exiting_after_virtiofsd_failed_is_put_down_to_virtiofsd() {
        let killed = ExitStatus::from_raw(9);
        let mut watch = Watch::default();
        assert!(
            matches!(watch.no_result("", killed), VmFailure::NoResult { status } if status.contains("signal: 9")),
        );
        assert!(matches!(
            watch.no_result(PANIC, killed),
            VmFailure::GuestPanicked { .. }
        ));
        assert!(matches!(
            watch.no_result("", ExitStatus::from_raw(libc::SIGSEGV)),
            VmFailure::QemuCrashed { .. }
        ));
        watch.virtiofsd_died = Some("signal: 9 (SIGKILL)".to_owned());
        for console in ["", PANIC] {
            let failure = watch.no_result(console, ExitStatus::from_raw(1 << 8));
            assert!(
                matches!(&failure, VmFailure::VirtiofsdDied { status } if status == "signal: 9 (SIGKILL)"),
                "{failure}"
            );
        }
    }
}
