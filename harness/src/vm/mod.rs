//! One VM running the agent: it owns QEMU, virtiofsd, QMP and the run
//! directories, and its Drop kills everything it started. Its life is a few
//! phases: boot (start the daemons and QEMU), watch (one short question after
//! another until one of them says how the VM ended), finish (turn that ending
//! into a run or a failure with everything needed to debug it).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guest_agent::cli::{AgentCommand, Fault, RunArgs};
use guest_agent::protocol::ScenarioResult;

use crate::artifacts::Artifacts;
use crate::qemu::{Accel, QemuProcess, RootShare, VmSpec};
use crate::qmp::{GuestEvent, QmpClient};
use crate::run_dirs;
use crate::virtiofsd::Virtiofsd;
use crate::wait::{wait_until, Poll};

/// Set to 1 for every boot message on the VM consoles.
pub const VERBOSE_CONSOLE_ENV: &str = "STRUCT_OPS_VERBOSE_CONSOLE";

/// How long a guest on KVM may take to reach the agent before KVM is judged broken.
const KVM_WATCHDOG: Duration = Duration::from_secs(20);
/// How long QEMU may outlive its virtiofsd before that counts as a fault.
const VIRTIOFSD_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may take to exit once the agent's result is in.
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may take to open its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(10);
/// How often the watch asks its questions.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// How often QMP is asked for events (each ask is a round trip).
const QMP_INTERVAL: Duration = Duration::from_millis(250);
/// The line the agent prints once it is up; boot time is measured to it.
const AGENT_READY: &str = "guest-agent: ready";
const PANIC_LINE: &str = "Kernel panic - not syncing";

#[derive(Debug, Clone)]
pub struct VmOptions {
    pub memory_mib: u32,
    pub cpus: u32,
    /// The whole VM, boot to power-off.
    pub timeout: Duration,
    /// Keep the logs even when the scenario passed.
    pub keep_logs: bool,
    /// A fault for the agent to inject (the harness's own fault tests).
    pub fault: Option<Fault>,
    /// Names the VM's directories (default: the scenario), so a test can find its processes.
    pub label: Option<String>,
    /// Share the root over 9p even when a read-only virtiofsd is available.
    pub force_9p: bool,
    /// Every boot message on the console, not only warnings and worse.
    pub verbose_console: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            memory_mib: 512,
            cpus: 2,
            timeout: Duration::from_secs(120),
            keep_logs: false,
            fault: None,
            label: None,
            force_9p: false,
            verbose_console: std::env::var_os(VERBOSE_CONSOLE_ENV)
                .is_some_and(|value| value == "1"),
        }
    }
}

/// Why a VM produced no result. Tests match on these.
#[derive(Debug, thiserror::Error)]
pub enum VmFailure {
    #[error("the guest kernel panicked{detail}")]
    GuestPanicked { detail: String },
    #[error("the VM did not finish within {after:?} and was killed (guest hang?); QEMU reported the VM as {state}")]
    Timeout { after: Duration, state: String },
    #[error("QEMU exited ({status}) without a result from the agent: did the guest panic or the agent crash?")]
    NoResult { status: String },
    #[error("virtiofsd exited mid-run ({status}); the guest lost its root filesystem")]
    VirtiofsdDied { status: String },
    #[error("the agent's result could not be read: {0}")]
    BadResult(String),
    /// Only on a KVM probe: the guest stayed silent, or QEMU blamed KVM.
    #[error("{0}")]
    KvmBroken(String),
}

/// A finished scenario run, passed or not.
#[derive(Debug)]
pub struct ScenarioRun {
    pub result: ScenarioResult,
    pub accel: Accel,
    pub root: &'static str,
    /// QEMU start to the agent's ready line.
    pub boot: Option<Duration>,
    /// QEMU start to the agent's result arriving.
    pub to_result: Duration,
    /// QEMU start to QEMU exit.
    pub total: Duration,
    /// Where the logs were kept (on failure, or when asked).
    pub kept_logs: Option<PathBuf>,
    pub console_tail: String,
    /// The VM's socket directory, gone once the run is over (for leak checks).
    pub run_dir: PathBuf,
}

/// A VM that could not produce a result, with what is needed to debug it.
#[derive(Debug, thiserror::Error)]
#[error("{failure}\n--- last lines of the console ---\n{console_tail}\n--- last lines of QEMU's stderr ---\n{stderr_tail}\nlogs kept in {}", logs.display())]
pub struct VmError {
    pub failure: VmFailure,
    pub console_tail: String,
    pub stderr_tail: String,
    pub logs: PathBuf,
    /// The VM's socket directory, gone once the run is over (for leak checks).
    pub run_dir: PathBuf,
    /// Whether the agent came up before things went wrong.
    pub agent_ready: bool,
}

/// Why a scenario has no result: the harness could not run the VM, or the VM failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The harness could not start or watch the VM (no socket directory,
    /// QEMU would not start, ...): nothing about the guest.
    #[error("the harness could not run the VM: {0:#}")]
    Harness(anyhow::Error),
    #[error(transparent)]
    Vm(#[from] Box<VmError>),
}

impl From<VmError> for RunError {
    fn from(error: VmError) -> Self {
        RunError::Vm(Box::new(error))
    }
}

/// How a VM's run ended, as the watch saw it.
#[derive(Debug)]
enum Ending {
    /// QEMU is gone (it may have been ended by the watch once nothing was left to wait for).
    QemuExited(ExitStatus),
    VirtiofsdDied(String),
    Panicked,
    DeadlinePassed,
    KvmSilent,
}

/// Boots a VM on `accel` that runs `scenario`, and returns its result.
/// `probing` puts the KVM watchdog on (the first KVM boot on a host).
pub fn run_scenario_on(
    artifacts: &Artifacts,
    scenario: &str,
    options: &VmOptions,
    accel: Accel,
    probing: bool,
) -> Result<ScenarioRun, RunError> {
    let agent = AgentCommand::Run(RunArgs {
        scenario: scenario.to_owned(),
        loader: artifacts.guest.loader.clone(),
        kmod: artifacts.kmod.clone(),
        json: false,
        fault: options.fault,
    });
    let label = options.label.as_deref().unwrap_or(scenario);
    let vm = Vm::boot(artifacts, &agent, label, options, accel, probing)?;
    vm.finish()
}

struct Vm {
    // Field order is drop order: QEMU dies before the daemon it uses.
    qmp: Option<QmpClient>,
    qemu: QemuProcess,
    virtiofsd: Option<Virtiofsd>,
    /// Sockets, in the temp dir: their paths must stay short.
    sockets: tempfile::TempDir,
    /// Console, QEMU's stderr, the result: deleted on success, kept on failure.
    logs: tempfile::TempDir,
    spec: VmSpec,
    started: Instant,
    options: VmOptions,
    probing: bool,
    watch: Watch,
}

/// What the watch has seen so far.
#[derive(Default)]
struct Watch {
    /// When the agent's ready line appeared, after QEMU started.
    ready_after: Option<Duration>,
    result_at: Option<Instant>,
    virtiofsd_gone_at: Option<Instant>,
    last_qmp_poll: Option<Instant>,
    panicked: bool,
}

impl Vm {
    fn boot(
        artifacts: &Artifacts,
        agent: &AgentCommand,
        label: &str,
        options: &VmOptions,
        accel: Accel,
        probing: bool,
    ) -> Result<Self, RunError> {
        check_cmdline_paths(artifacts).map_err(RunError::Harness)?;
        let sockets = run_dirs::create_socket_dir(label).map_err(RunError::Harness)?;
        let logs = run_dirs::create_log_dir(label).map_err(RunError::Harness)?;
        let virtiofsd = start_virtiofsd(artifacts, options, sockets.path(), logs.path());
        let spec = vm_spec(
            artifacts, agent, options, accel, &virtiofsd, &sockets, &logs,
        )
        .map_err(RunError::Harness)?;
        let cmdline = logs.path().join("qemu.cmdline");
        std::fs::write(&cmdline, crate::qemu::shell_line(&spec))
            .with_context(|| format!("writing {}", cmdline.display()))
            .map_err(RunError::Harness)?;
        let started = Instant::now();
        let qemu = QemuProcess::spawn(&spec, logs.path().join("qemu.stderr"))
            .map_err(RunError::Harness)?;
        let vm = Vm {
            qmp: None,
            qemu,
            virtiofsd,
            sockets,
            logs,
            spec,
            started,
            options: options.clone(),
            probing,
            watch: Watch::default(),
        };
        vm.connect_qmp()
    }

    /// QMP, or why not: QEMU blaming KVM (while probing) makes KVM broken.
    fn connect_qmp(mut self) -> Result<Self, RunError> {
        match QmpClient::connect(&self.spec.qmp_socket, &self.qemu, self.started + QMP_WAIT) {
            Ok(qmp) => {
                self.qmp = Some(qmp);
                Ok(self)
            }
            Err(err) => match self.qemu.kvm_complaint().filter(|_| self.probing) {
                Some(complaint) => {
                    let reason = format!("QEMU could not start a KVM guest: {complaint}");
                    Err(self.fail(VmFailure::KvmBroken(reason)).into())
                }
                None => Err(RunError::Harness(err)),
            },
        }
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.spec.console_log).unwrap_or_default())
            .into_owned()
    }

    /// Asks the watch's questions until one of them says how the VM ended,
    /// or the VM's time is up.
    fn watch(&mut self) -> Result<Ending, RunError> {
        let deadline = self.started + self.options.timeout;
        let ending = wait_until(deadline, WATCH_INTERVAL, || match self.poll_once() {
            Ok(Some(ending)) => Poll::Ready(Ok(ending)),
            Ok(None) => Poll::Pending,
            Err(err) => Poll::Ready(Err(err)),
        });
        ending
            .unwrap_or(Ok(Ending::DeadlinePassed))
            .map_err(RunError::Harness)
    }

    /// One round of questions; the first that has an answer ends the watch.
    fn poll_once(&mut self) -> Result<Option<Ending>> {
        // QEMU's exit is checked first: it explains more than any timeout.
        if let Some(status) = self.qemu.try_wait()? {
            return Ok(Some(Ending::QemuExited(status)));
        }
        self.note_agent_ready();
        let ending = self
            .result_is_in()
            .or_else(|| self.kvm_stayed_silent())
            .or_else(|| self.virtiofsd_is_gone())
            .or_else(|| self.guest_panicked());
        Ok(ending)
    }

    fn note_agent_ready(&mut self) {
        if self.watch.ready_after.is_none() && self.console().contains(AGENT_READY) {
            self.watch.ready_after = Some(self.started.elapsed());
        }
    }

    /// QEMU 7.2 can hang in its vhost-user teardown after the guest powers
    /// off; once the result is in and QEMU had its grace, it is ended.
    fn result_is_in(&mut self) -> Option<Ending> {
        if self.watch.result_at.is_none() && read_result(&self.spec.result_file).is_some() {
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

    /// A KVM guest that works reaches the agent in about a second; one that
    /// prints and then stalls must not earn a "KVM works" verdict.
    fn kvm_stayed_silent(&mut self) -> Option<Ending> {
        let silent = self.probing
            && self.watch.ready_after.is_none()
            && self.started.elapsed() > KVM_WATCHDOG;
        silent.then_some(Ending::KvmSilent)
    }

    /// virtiofsd also exits, cleanly, when a powered-off guest disconnects, a
    /// moment before QEMU does; a clean exit means the guest is gone, so QEMU
    /// is ended and the result, or its absence, speaks. Only a daemon that
    /// died is a fault.
    fn virtiofsd_is_gone(&mut self) -> Option<Ending> {
        let (clean, status) = self.virtiofsd.as_ref()?.has_exited()?;
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
        (self.watch.panicked || self.console().contains(PANIC_LINE)).then_some(Ending::Panicked)
    }

    /// Waits for the VM to end and turns the ending into a run or a failure.
    fn finish(mut self) -> Result<ScenarioRun, RunError> {
        let ending = self.watch()?;
        let failure = match ending {
            Ending::QemuExited(status) => return self.read_run(status),
            Ending::VirtiofsdDied(status) => VmFailure::VirtiofsdDied { status },
            Ending::Panicked => {
                // Let the console finish the panic message before reporting it.
                std::thread::sleep(Duration::from_millis(300));
                VmFailure::GuestPanicked {
                    detail: panic_detail(&self.console()),
                }
            }
            Ending::DeadlinePassed => self.timeout(),
            Ending::KvmSilent => VmFailure::KvmBroken(format!(
                "a KVM guest did not reach its init within {}s",
                KVM_WATCHDOG.as_secs()
            )),
        };
        Err(self.fail(failure).into())
    }

    /// Whether the vCPUs were running, paused or panicked tells a hang from a stall.
    fn timeout(&mut self) -> VmFailure {
        let state = match self.qmp.as_mut().map(QmpClient::status) {
            Some(Ok(state)) => state,
            Some(Err(err)) => format!("unknown (QMP: {err:#})"),
            None => "unknown (no QMP)".to_owned(),
        };
        if let Some(qmp) = self.qmp.as_mut() {
            let _ = qmp.quit();
        }
        VmFailure::Timeout {
            after: self.options.timeout,
            state,
        }
    }

    /// QEMU has exited: the agent's result, or why there is none.
    fn read_run(self, status: ExitStatus) -> Result<ScenarioRun, RunError> {
        let total = self.started.elapsed();
        let console = self.console();
        if self.probing && console.is_empty() {
            if let Some(complaint) = self.qemu.kvm_complaint() {
                let reason = format!(
                    "QEMU exited ({status}) before the KVM guest printed anything: {complaint}"
                );
                return Err(self.fail(VmFailure::KvmBroken(reason)).into());
            }
        }
        let result = match read_result(&self.spec.result_file) {
            Some(Ok(result)) => result,
            Some(Err(err)) => return Err(self.fail(VmFailure::BadResult(err)).into()),
            None if console.contains("Kernel panic") => {
                let detail = panic_detail(&console);
                return Err(self.fail(VmFailure::GuestPanicked { detail }).into());
            }
            None => {
                let status = status.to_string();
                return Err(self.fail(VmFailure::NoResult { status }).into());
            }
        };
        Ok(self.into_run(result, total))
    }

    fn into_run(self, result: ScenarioResult, total: Duration) -> ScenarioRun {
        let console_tail = crate::text::tail(&self.console(), 40);
        let root = match self.spec.root {
            RootShare::Virtiofs { .. } => "virtiofs",
            RootShare::NineP => "9p",
        };
        let keep = self.options.keep_logs || !result.passed;
        if keep {
            let pretty = serde_json::to_string_pretty(&result).unwrap_or_default();
            let _ = std::fs::write(self.logs.path().join("result.pretty.json"), pretty);
        }
        let to_result = self
            .watch
            .result_at
            .map_or(total, |at| at.duration_since(self.started));
        ScenarioRun {
            accel: self.spec.accel,
            root,
            boot: self.watch.ready_after,
            to_result,
            total,
            console_tail,
            run_dir: self.sockets.path().to_owned(),
            kept_logs: keep.then(|| self.keep()),
            result,
        }
    }

    fn fail(self, failure: VmFailure) -> VmError {
        let console_tail = crate::text::tail(&self.console(), 40);
        let stderr_tail = self.qemu.stderr_tail(20);
        let run_dir = self.sockets.path().to_owned();
        let agent_ready = self.watch.ready_after.is_some();
        self.qemu.kill();
        let logs = self.keep();
        VmError {
            failure,
            console_tail,
            stderr_tail,
            logs,
            run_dir,
            agent_ready,
        }
    }

    /// Stops everything, keeps the log directory and says where it is.
    fn keep(self) -> PathBuf {
        let Vm {
            logs,
            sockets,
            qemu,
            virtiofsd,
            qmp,
            ..
        } = self;
        drop(qmp);
        drop(qemu);
        drop(virtiofsd);
        drop(sockets);
        logs.keep()
    }
}

/// The read-only virtiofsd, unless 9p is asked for or the daemon cannot start.
fn start_virtiofsd(
    artifacts: &Artifacts,
    options: &VmOptions,
    sockets: &Path,
    logs: &Path,
) -> Option<Virtiofsd> {
    let binary = artifacts.virtiofsd.as_ref().ok()?;
    if options.force_9p {
        return None;
    }
    let socket = sockets.join("virtiofsd.sock");
    match Virtiofsd::spawn(binary, socket, logs.join("virtiofsd.log")) {
        Ok(daemon) => Some(daemon),
        Err(err) => {
            eprintln!("[harness] note: {err:#}; sharing the root over 9p instead");
            None
        }
    }
}

fn vm_spec(
    artifacts: &Artifacts,
    agent: &AgentCommand,
    options: &VmOptions,
    accel: Accel,
    virtiofsd: &Option<Virtiofsd>,
    sockets: &tempfile::TempDir,
    logs: &tempfile::TempDir,
) -> Result<VmSpec> {
    let root = match virtiofsd {
        Some(daemon) => RootShare::Virtiofs {
            socket: daemon.socket.clone(),
        },
        None => RootShare::NineP,
    };
    Ok(VmSpec {
        accel,
        kernel_image: artifacts.kernel.boot_image()?,
        memory_mib: options.memory_mib,
        cpus: options.cpus,
        root,
        init: artifacts.guest.agent.clone(),
        init_args: agent.argv(),
        console_log: logs.path().join("console.log"),
        result_file: logs.path().join("result.json"),
        qmp_socket: sockets.path().join("qmp.sock"),
        // A probe needs every boot message: a working KVM guest speaks within a second.
        verbose_console: options.verbose_console,
    })
}

/// `: <the panic line>` from the console, when there is one.
fn panic_detail(console: &str) -> String {
    console
        .lines()
        .find(|line| line.contains("Kernel panic"))
        .map(|line| format!(": {}", line.trim()))
        .unwrap_or_default()
}

/// The agent's result, once its line is complete.
fn read_result(path: &Path) -> Option<Result<ScenarioResult, String>> {
    parse_result(&std::fs::read_to_string(path).ok()?)
}

/// The last complete line of what the agent wrote to its port, as a result.
fn parse_result(text: &str) -> Option<Result<ScenarioResult, String>> {
    let (complete, _partial) = text.rsplit_once('\n')?;
    let line = complete
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())?;
    Some(serde_json::from_str(line).map_err(|err| err.to_string()))
}

/// The kernel splits its command line at spaces, so the paths handed to the
/// agent there must have none.
fn check_cmdline_paths(artifacts: &Artifacts) -> Result<()> {
    for path in [
        &artifacts.guest.agent,
        &artifacts.guest.loader,
        &artifacts.kmod,
    ] {
        if path.to_string_lossy().chars().any(char::is_whitespace) {
            anyhow::bail!(
                "{} has white space in its path, which the kernel command line cannot carry; \
                 move the checkout or the cache (STRUCT_OPS_CACHE_DIR) to a path without spaces",
                path.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_counts_once_its_line_is_complete() {
        let result = ScenarioResult {
            scenario: "trigger".into(),
            passed: true,
            ..ScenarioResult::default()
        };
        let line = result.to_json();
        assert_eq!(parse_result(&line[..line.len() / 2]), None);
        assert_eq!(parse_result(&line), None, "no newline yet");
        assert_eq!(parse_result(&format!("{line}\n")), Some(Ok(result.clone())));
        // Noise before it (a partial earlier write) does not matter.
        assert_eq!(
            parse_result(&format!("garbage\n{line}\n\n")),
            Some(Ok(result))
        );
        assert!(matches!(parse_result("{not json\n"), Some(Err(_))));
    }

    #[test]
    fn the_panic_detail_is_the_panic_line() {
        let console = "[ 1.0] ok\n[ 1.2] Kernel panic - not syncing: Attempted to kill init!\n";
        assert_eq!(
            panic_detail(console),
            ": [ 1.2] Kernel panic - not syncing: Attempted to kill init!"
        );
        assert_eq!(panic_detail("all quiet\n"), "");
    }
}
