//! The watch: the VM's events (`events`: console and agent lines, QMP's
//! panic, QEMU's and virtiofsd's exits) taken as they come, each followed
//! by the same short questions, until one says how the VM ended. It sleeps
//! between events, waking early only for its next deadline. Each question
//! answers one thing: did QEMU exit, is the agent up, is its result in, did
//! the KVM guest stay silent, did virtiofsd go, did the guest panic; and,
//! along the way, the exec'd command's output is passed on and a debugger
//! is let in.

use std::io::Write;
use std::process::ExitStatus;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::Result;
use harness_wire::markers;
use harness_wire::protocol::Message;

use super::events::{Event, Process};
use super::messages::panic_detail;
use super::{RunError, Vm, VmFailure, PANIC_END};
use crate::qemu::Channel;

/// How long a guest on KVM may take to reach the agent before KVM is judged broken.
pub(super) const KVM_WATCHDOG: Duration = Duration::from_secs(20);
/// How long QEMU may outlive its virtiofsd before that counts as a fault.
const VIRTIOFSD_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may take to exit once the agent's result is in.
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);
/// How long the readers may take to pass on the last of a channel once
/// QEMU has exited (its sockets close with it; this only bounds the wait).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

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
    /// When QEMU was seen to exit.
    qemu_exited_at: Option<Instant>,
    /// QMP said the guest panicked.
    panicked: bool,
    debugger_let_in: bool,
    /// A panic line was on the console.
    console_panicked: bool,
    /// The console has shown the end of a panic message.
    pub(super) panic_ended: bool,
    /// The channels QEMU has not closed yet.
    pub(super) open: Vec<Channel>,
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
    /// Takes the VM's events until one of them says how the VM ended, or
    /// the VM's time is up: its timeout, counted again from each
    /// scenario's start and each result when it runs several.
    pub(super) fn watch(&mut self) -> Result<Ending, RunError> {
        let mut since = self.started;
        loop {
            if let Some(ending) = self.judge().map_err(RunError::Harness)? {
                return Ok(ending);
            }
            let deadline = since + self.options.timeout;
            if Instant::now() >= deadline {
                return Ok(Ending::DeadlinePassed);
            }
            let progress = self.progress();
            let wake = self.next_deadline().map_or(deadline, |at| at.min(deadline));
            self.take_event_until(wake);
            // The clock starts again.
            if self.progress() > progress {
                since = Instant::now();
            }
        }
    }

    /// The next event, taken in, or nothing by `wake`.
    pub(super) fn take_event_until(&mut self, wake: Instant) {
        let wait = wake.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(wait) {
            Ok(event) => self.take(event),
            Err(RecvTimeoutError::Timeout) => {}
            // Every reader and waiter has ended, so QEMU has exited and the
            // next question ends the watch; the clock is all that is left.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait.min(DRAIN_GRACE)),
        }
    }

    /// Scenarios started and results in, so far.
    fn progress(&self) -> usize {
        self.watch.scenarios_started + self.watch.results_at.len()
    }

    /// The earliest moment still to come when a question may have a new
    /// answer with no event (one that has passed was answered already).
    fn next_deadline(&self) -> Option<Instant> {
        let (watch, now) = (&self.watch, Instant::now());
        let not_ready = watch.ready_after.is_none();
        [
            (self.probing && not_ready).then_some(self.started + KVM_WATCHDOG),
            (!self.boot_exempt() && not_ready).then_some(self.started + self.boot_deadline.after),
            watch.result_at.map(|at| at + POWER_OFF_GRACE),
            watch.virtiofsd_gone_at.map(|at| at + VIRTIOFSD_GRACE),
            watch.qemu_exited_at.map(|at| at + DRAIN_GRACE),
        ]
        .into_iter()
        .flatten()
        .filter(|at| *at > now)
        .min()
        // Just past it, so that it has passed when the question is asked.
        .map(|at| at + Duration::from_millis(1))
    }

    /// What one event tells the watch.
    fn take(&mut self, event: Event) {
        let watch = &mut self.watch;
        match event {
            Event::Line(Channel::Console, line) => {
                if watch.ready_after.is_none() && markers::agent_ready(&line) {
                    watch.ready_after = Some(self.started.elapsed());
                }
                watch.scenarios_started += line.matches(markers::SCENARIO_STARTS).count();
                watch.console_panicked |= markers::panic_line(&line).is_some();
                watch.panic_ended |= line.contains(PANIC_END);
            }
            // A line that is not a message is left out (the run's end
            // reads the whole port again, and names it).
            Event::Line(_, line) => {
                if let Ok(message) = serde_json::from_str::<Message>(&line) {
                    watch.messages.push(message);
                }
            }
            Event::Output(channel, bytes) => pass_on(channel, &bytes),
            Event::GuestPanicked => watch.panicked = true,
            Event::Closed(channel) => watch.open.retain(|open| *open != channel),
            Event::Exited(Process::Qemu) => watch.qemu_exited_at = Some(Instant::now()),
            // virtiofsd_is_gone reads its status.
            Event::Exited(Process::Virtiofsd) => {}
        }
    }

    /// The questions; the first that has an answer ends the watch.
    fn judge(&mut self) -> Result<Option<Ending>> {
        // QEMU's exit comes first: it explains more than any timeout.
        if let Some(status) = self.qemu_exited()? {
            return Ok(Some(Ending::QemuExited(status)));
        }
        self.let_debugger_in()?;
        let ending = self
            .result_is_in()
            .or_else(|| self.kvm_stayed_silent())
            .or_else(|| self.never_ready())
            .or_else(|| self.virtiofsd_is_gone())
            .or_else(|| self.guest_panicked());
        Ok(ending)
    }

    /// QEMU's status, once it has exited and its channels are drained
    /// (what they carried is all passed on), or the drain's grace is over.
    fn qemu_exited(&mut self) -> Result<Option<ExitStatus>> {
        let Some(at) = self.watch.qemu_exited_at else {
            return Ok(None);
        };
        if !self.watch.open.is_empty() && at.elapsed() <= DRAIN_GRACE {
            return Ok(None);
        }
        self.qemu.try_wait()
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

    /// Only for scenarios: not while a person drives the VM (who may hold
    /// it in a debugger), not for a command (whose `--timeout` covers its
    /// boot), not while probing KVM (the watchdog judges that boot).
    fn boot_exempt(&self) -> bool {
        self.options.gdb || self.options.interactive || self.runs_command || self.probing
    }

    /// A guest whose agent has not said ready by its boot deadline stalled
    /// in its boot (seen under TCG: the console silent after its last
    /// kernel line). The deadline follows the boots measured here
    /// (`boot_times`: 10 s for the default kernel, against its 1 to 2 s).
    /// Nothing of the subject runs before the ready line, so the caller may
    /// boot again.
    fn never_ready(&self) -> Option<Ending> {
        let late = self.started.elapsed() > self.boot_deadline.after;
        let stalled = !self.boot_exempt() && late && self.watch.ready_after.is_none();
        stalled.then_some(Ending::NeverReady)
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
        (self.watch.panicked || self.watch.console_panicked).then_some(Ending::Panicked)
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

/// What an exec'd command wrote, on the harness's own stdout or stderr:
/// the command's output is what `harness exec` is for.
fn pass_on(channel: Channel, bytes: &[u8]) {
    let _ = match channel {
        Channel::Stderr => write_flushed(&mut std::io::stderr(), bytes),
        _ => write_flushed(&mut std::io::stdout(), bytes),
    };
}

fn write_flushed(to: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    to.write_all(bytes)?;
    to.flush()
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
