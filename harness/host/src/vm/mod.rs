//! One VM running the agent: it owns QEMU, virtiofsd, QMP and the run
//! directories, and its Drop kills everything it started. Its life is a few
//! phases: boot (start the daemons and QEMU, and a reader on each channel QEMU
//! connects to), watch (the VM's events as they come, each followed by the
//! same short questions, until one says how the VM ended), finish (turn that
//! ending into a run or a failure with everything needed to debug it).

mod batch;
mod debugger;
mod events;
mod messages;
mod options;
pub(crate) mod restore;
mod stall;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use harness_wire::cli::{AgentCommand, Fault};
use harness_wire::protocol::{ExitReport, Message, ScenarioResult};

use self::events::{Event, Listeners, Process};
use self::messages::{final_message, panic_detail, read_messages};
use self::watch::{Ending, Watch, KVM_WATCHDOG};
use crate::artifacts::Artifacts;
use crate::boot_times::{self, BootDeadline, BootTimes};
use crate::guest_clock;
use crate::qemu::{Accel, Console, QemuProcess, RootShare, VmSpec};
use crate::qmp::QmpClient;
use crate::run_dirs;
use crate::virtiofsd::Virtiofsd;

/// How long QEMU may take to open its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(10);

/// How to run a VM: its size, its time limit, and what to keep or turn on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VmOptions {
    /// The guest's RAM, in MiB (default 512; a scenario may declare its
    /// own, `Scenario::memory`).
    pub memory_mib: u32,
    /// vCPUs (default 2; a scenario's own topology sets it for its VM).
    pub(crate) cpus: u32,
    /// NUMA nodes, the vCPUs and memory shared out evenly (default 1).
    pub(crate) nodes: u32,
    /// The whole VM, boot to power-off.
    pub(crate) timeout: Duration,
    /// Keep the logs even when the scenario passed.
    pub(crate) keep_logs: bool,
    /// A fault for the agent to inject (the harness's own fault tests).
    pub(crate) fault: Option<Fault>,
    /// A counter file (the harness's own flaky-detection test): each VM
    /// that runs scenarios adds one to it, and each that makes it odd fails
    /// its first scenario on purpose (`Fault::FailScenario`), so that a
    /// scenario fails one time in two.
    pub(crate) fail_every_other: Option<PathBuf>,
    /// Names the VM's directories (default: the scenario), so a test can find its processes.
    pub(crate) label: Option<String>,
    /// Share the root over 9p even when a read-only virtiofsd is available.
    pub(crate) force_9p: bool,
    /// Every boot message on the console, not only warnings and worse.
    pub(crate) verbose_console: bool,
    /// The console on the harness's terminal (a shell).
    pub(crate) interactive: bool,
    /// A gdb stub, and QEMU paused for the debugger once the agent is ready.
    pub(crate) gdb: bool,
    /// Restore a scenario's VM from its kernel's saved template instead of
    /// booting it, where it can be (`vm::restore`).
    pub(crate) restore: bool,
}

impl VmOptions {
    /// The same, with the vCPUs, NUMA nodes and RAM a scenario declares.
    pub(crate) fn with_topology(&self, topology: harness_wire::catalogue::Topology) -> Self {
        VmOptions {
            cpus: u32::from(topology.cpus.max(1)),
            nodes: u32::from(topology.nodes.max(1)),
            memory_mib: match topology.memory_mib {
                0 => self.memory_mib,
                declared => declared,
            },
            ..self.clone()
        }
    }
}

impl Default for VmOptions {
    fn default() -> Self {
        VmOptions {
            memory_mib: 512,
            cpus: 2,
            nodes: 1,
            timeout: Duration::from_secs(harness_wire::cli::DEFAULT_VM_TIMEOUT_SECS),
            keep_logs: false,
            fault: None,
            fail_every_other: None,
            label: None,
            force_9p: false,
            verbose_console: crate::settings::get().verbose_console,
            interactive: false,
            gdb: false,
            restore: !crate::settings::get().boot_each,
        }
    }
}

/// Why a VM produced no result. Tests match on these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmFailure {
    /// The console shows a kernel panic.
    #[error("the guest kernel panicked{detail}")]
    GuestPanicked {
        /// `: ` and the console's panic line, or empty if it has none.
        detail: String,
    },
    /// The VM outlived `VmOptions::timeout` and was killed.
    #[error("the VM did not finish within {after:?} and was killed (guest hang?); QEMU reported the VM as {state}")]
    Timeout {
        /// The timeout it outlived.
        after: Duration,
        /// QMP's run state at that moment (`running`, `paused`, ...), or why it is unknown.
        state: String,
    },
    /// The agent did not say ready within the boot deadline (several times
    /// the slowest recent boot here, see `boot_times`): the guest stalled
    /// while booting.
    #[error("the guest's agent did not say ready within {deadline} of QEMU's start and the VM was killed (a stalled boot); QEMU reported the VM as {state}; its vCPUs: {vcpus} (in the logs: vcpus.txt, the monitor's full output; dmesg.txt, the kernel's own log read from its memory)")]
    NeverReady {
        /// The boot deadline it missed, and what set it.
        deadline: BootDeadline,
        /// QMP's run state at that moment, or why it is unknown.
        state: String,
        /// Where each vCPU was and what its local APIC held, one line.
        vcpus: String,
    },
    /// QEMU itself died of a fault signal (QEMU 7.2's TCG has crashed so,
    /// rarely, early in a boot): nothing of the guest's doing.
    #[error("QEMU crashed ({status}): a fault in QEMU itself, not the guest's; its stderr and the console are below")]
    QemuCrashed {
        /// QEMU's exit status.
        status: String,
    },
    /// QEMU exited, and the agent had sent no final message.
    #[error("QEMU exited ({status}) without a result from the agent: did the guest panic or the agent crash?")]
    NoResult {
        /// QEMU's exit status.
        status: String,
    },
    /// virtiofsd exited while the guest still needed its root.
    #[error("virtiofsd, which serves the guest its root filesystem, failed mid-run ({status}) and the guest lost its root: was it killed or did it crash? Its log, virtiofsd.log, is kept with the others")]
    VirtiofsdDied {
        /// virtiofsd's exit status.
        status: String,
    },
    /// The agent's messages could not be read, or ended with the wrong one.
    #[error("the agent's result could not be read: {0}")]
    BadResult(String),
    /// Only on a KVM probe: the guest stayed silent, or QEMU blamed KVM.
    #[error("{0}")]
    KvmBroken(String),
}

/// A finished scenario run, passed or not.
#[derive(Debug)]
#[non_exhaustive]
pub struct ScenarioRun {
    /// What the agent reported.
    pub result: ScenarioResult,
    /// The accelerator the VM ran on.
    pub accel: Accel,
    /// How the guest's root was shared: `virtiofs` or `9p`.
    pub root: &'static str,
    /// QEMU start to the agent's ready line.
    pub boot: Option<Duration>,
    /// The VM's vCPUs and NUMA nodes.
    pub topology: harness_wire::catalogue::Topology,
    /// QEMU start to the agent's result arriving.
    pub(crate) to_result: Duration,
    /// QEMU start to QEMU exit.
    pub(crate) total: Duration,
    /// Where the logs were kept (on failure, or when asked).
    pub kept_logs: Option<PathBuf>,
    /// The console's last 40 lines.
    pub console_tail: String,
    /// The VM's socket directory, gone once the run is over (for leak checks).
    pub(crate) run_dir: PathBuf,
    /// The boot before this VM's, when the harness ended it and booted
    /// again (see `suite`); on the first scenario of its VM only.
    pub retried_boot: Option<RetriedBoot>,
}

/// A boot the harness ended and booted again by itself: the guest failed
/// before its agent was ready, so before any of the subject ran.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RetriedBoot {
    /// How it failed.
    pub cause: BootFailure,
    /// The failure as the first boot's error said it.
    pub failure: String,
    /// That boot's kept logs (console, QEMU's stderr, vcpus.txt for a stall).
    pub logs: PathBuf,
}

/// How a boot failed before the agent was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BootFailure {
    /// The kernel panicked.
    Panicked,
    /// It missed the boot deadline.
    Stalled,
    /// QEMU crashed before the guest was ready.
    QemuCrashed,
}

impl BootFailure {
    /// `panicked` or `stalled`, as the report shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            BootFailure::Panicked => "panicked",
            BootFailure::Stalled => "stalled",
            BootFailure::QemuCrashed => "qemu crashed",
        }
    }
}

impl VmError {
    /// The boot failure this is, if the guest failed before its agent was
    /// ready: a panic, a stall or QEMU's crash (a boot the harness may try
    /// again).
    pub(crate) fn boot_failure(&self) -> Option<BootFailure> {
        if self.agent_ready {
            return None;
        }
        match self.failure {
            VmFailure::GuestPanicked { .. } => Some(BootFailure::Panicked),
            VmFailure::NeverReady { .. } => Some(BootFailure::Stalled),
            VmFailure::QemuCrashed { .. } => Some(BootFailure::QemuCrashed),
            _ => None,
        }
    }
}

/// A VM that could not produce a result, with what is needed to debug it.
#[derive(Debug, thiserror::Error)]
#[error("{failure}\n--- last lines of the console ---\n{console_tail}\n--- last lines of QEMU's stderr ---\n{stderr_tail}\nlogs kept in {}", logs.display())]
#[non_exhaustive]
pub struct VmError {
    /// What went wrong.
    pub failure: VmFailure,
    /// The console's last 40 lines.
    pub console_tail: String,
    /// The last 20 lines QEMU wrote to stderr.
    pub stderr_tail: String,
    /// The kept log directory: console, QEMU's stderr, the agent's result.
    pub logs: PathBuf,
    /// The VM's socket directory, gone once the run is over (for leak checks).
    pub run_dir: PathBuf,
    /// Whether the agent came up before things went wrong.
    pub agent_ready: bool,
    /// The boot before this one, when the harness ended it and booted again.
    pub retried_boot: Option<RetriedBoot>,
}

/// Why a scenario has no result: the harness could not run the VM, or the VM failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The harness could not start or watch the VM (no socket directory,
    /// QEMU would not start, ...): nothing about the guest.
    #[error("the harness could not run the VM: {0:#}")]
    Harness(anyhow::Error),
    /// The VM ran and failed.
    #[error(transparent)]
    Vm(#[from] Box<VmError>),
}

impl From<VmError> for RunError {
    fn from(error: VmError) -> Self {
        RunError::Vm(Box::new(error))
    }
}

pub use self::batch::{run_batch_on, Batch};

/// Boots a VM on `accel` that runs `scenario`, and returns its result:
/// a batch of one. `probing` puts the KVM watchdog on (the first KVM boot
/// on a host).
pub fn run_scenario_on(
    artifacts: &Artifacts,
    scenario: &str,
    options: &VmOptions,
    accel: Accel,
    probing: bool,
) -> Result<ScenarioRun, RunError> {
    let batch = run_batch_on(artifacts, &[scenario.to_owned()], options, accel, probing)?;
    match (batch.runs.into_iter().next(), batch.ended) {
        // A panic while powering off, say, after the result: still a failure.
        (_, Err(error)) => Err(error),
        (Some(run), Ok(())) => Ok(run),
        // Vm::into_batch ends a batch with no run in an error.
        (None, Ok(())) => Err(RunError::Harness(anyhow::anyhow!(
            "the VM of {scenario} gave no result"
        ))),
    }
}

/// A command run in a VM (exec, shell), ended.
#[derive(Debug)]
pub(crate) struct CommandRun {
    /// How the command ended: its code or signal, or why it did not start.
    pub(crate) exit: ExitReport,
    /// The scenario a shell opened in, when there was one.
    pub(crate) scenario: Option<ScenarioResult>,
}

/// Boots a VM on `accel` whose agent, `binary`, runs `agent` (exec or
/// shell); `probing` puts the KVM watchdog on.
pub(crate) fn run_command(
    artifacts: &Artifacts,
    binary: &Path,
    agent: &AgentCommand,
    options: &VmOptions,
    (accel, probing): (Accel, bool),
) -> Result<CommandRun, RunError> {
    let label = options.label.clone().unwrap_or_else(|| "exec".to_owned());
    let boot = Boot {
        binary,
        agent,
        label: &label,
        accel,
        probing,
    };
    let vm = Vm::boot(artifacts, &boot, options)?;
    let (vm, messages, _total) = vm.finish()?;
    let scenario = messages.iter().find_map(|message| match message {
        Message::Scenario(result) => Some(result.clone()),
        _ => None,
    });
    match final_message(&messages) {
        Some(Message::Exited(exit)) => {
            if vm.options.keep_logs {
                vm.keep();
            }
            Ok(CommandRun {
                exit: exit.clone(),
                scenario,
            })
        }
        other => {
            let said = format!("the agent ended with {other:?}, not the command's exit");
            Err(vm.fail(VmFailure::BadResult(said)).into())
        }
    }
}

/// The line that ends the kernel's panic message.
pub(super) const PANIC_END: &str = "---[ end Kernel panic";
/// How long the console may take to finish a panic message.
const PANIC_END_GRACE: Duration = Duration::from_secs(2);

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
    /// The agent runs a command (exec, shell), not a scenario: its run ends
    /// with the command's exit.
    runs_command: bool,
    /// How many scenario results end the run (`run --then` asks for several).
    expected_results: usize,
    /// QEMU's exit status, once it has exited by itself.
    exit_status: Option<ExitStatus>,
    watch: Watch,
    /// The unstripped vmlinux and its build directory, for gdb.
    kernel_for_gdb: (PathBuf, PathBuf),
    /// The host's end of the control port, once it has said something.
    control: Option<std::os::unix::net::UnixStream>,
    /// When a guest that has not said ready has stalled.
    boot_deadline: BootDeadline,
    /// What the readers and the exit waiters saw (`events`).
    events: Receiver<Event>,
    /// The channels' sockets until QEMU's connections are taken, and the
    /// sending end their readers get (the VM keeps none after, so the
    /// stream ends when they do).
    listening: Option<(Listeners, Sender<Event>)>,
    /// The cache its boot time is recorded in, and under which kind.
    boot_record: (PathBuf, String),
    /// A clone's start port, held open while it runs.
    start_port: Option<std::os::unix::net::UnixStream>,
    /// A clone's hold on its template, until it has loaded it.
    template_lease: Option<restore::Lease>,
}

/// What one VM boots: the binary that is its init, what that agent is to
/// do, the VM's label, and on which accelerator.
struct Boot<'a> {
    binary: &'a Path,
    agent: &'a AgentCommand,
    label: &'a str,
    accel: Accel,
    /// The first KVM boot on a host: the watchdog is on.
    probing: bool,
}

impl Vm {
    /// A VM restored from its template where it can be, booted otherwise:
    /// a restore that fails falls back to a boot, with a warning naming why.
    fn boot(artifacts: &Artifacts, boot: &Boot, options: &VmOptions) -> Result<Self, RunError> {
        if restorable(boot, options) {
            match Vm::launch(artifacts, boot, options, true) {
                Err(RunError::Harness(err)) => warn_once(&format!(
                    "booting {}, not restoring it: {err:#}",
                    boot.label
                )),
                launched => return launched,
            }
        }
        Vm::launch(artifacts, boot, options, false)
    }

    fn launch(
        artifacts: &Artifacts,
        boot: &Boot,
        options: &VmOptions,
        restoring: bool,
    ) -> Result<Self, RunError> {
        check_cmdline_paths(artifacts, boot.binary).map_err(RunError::Harness)?;
        let sockets = run_dirs::create_socket_dir(boot.label).map_err(RunError::Harness)?;
        let logs = run_dirs::create_log_dir(boot.label, boot.binary).map_err(RunError::Harness)?;
        let virtiofsd = match restoring {
            // A clone's memory is private: no vhost-user daemon can map it.
            true => None,
            false => start_virtiofsd(artifacts, options, sockets.path(), logs.path()),
        };
        let dirs = (&sockets, &logs);
        let mut spec =
            vm_spec(artifacts, boot, options, &virtiofsd, dirs).map_err(RunError::Harness)?;
        let lease = match restoring {
            true => Some(clone_of_template(artifacts, boot, options, &mut spec)?),
            false => None,
        };
        let cmdline = logs.path().join("qemu.cmdline");
        std::fs::write(&cmdline, crate::qemu::shell_line(&spec))
            .with_context(|| format!("writing {}", cmdline.display()))
            .map_err(RunError::Harness)?;
        let mut boot_kind =
            boot_times::kind(&boot.accel.to_string(), artifacts.kernel.flavour.name());
        if restoring {
            boot_kind.push_str("/restore");
        }
        let boot_deadline = BootTimes::load(&artifacts.cache).deadline(&boot_kind, options.timeout);
        let listeners = Listeners::bind(sockets.path(), &crate::qemu::channels(&spec))
            .map_err(RunError::Harness)?;
        let start_port = match restoring {
            true => Some(restore::StartPort::bind(sockets.path()).map_err(RunError::Harness)?),
            false => None,
        };
        let (sender, events) = mpsc::channel();
        let started = Instant::now();
        let qemu = QemuProcess::spawn(&spec, logs.path().join("qemu.stderr"))
            .map_err(RunError::Harness)?;
        // Before anything reaps them: a pid names the process only until then.
        watch_exits(&qemu, virtiofsd.as_ref(), &sender).map_err(RunError::Harness)?;
        let vm = Vm {
            qmp: None,
            qemu,
            virtiofsd,
            sockets,
            logs,
            spec,
            started,
            options: options.clone(),
            probing: boot.probing,
            runs_command: !matches!(boot.agent, AgentCommand::Run(_)),
            exit_status: None,
            expected_results: match boot.agent {
                AgentCommand::Run(args) => 1 + args.then.len(),
                _ => 0,
            },
            watch: Watch::default(),
            kernel_for_gdb: (
                artifacts.kernel.vmlinux.clone(),
                artifacts.kernel.build_dir.clone(),
            ),
            control: None,
            boot_deadline,
            boot_record: (artifacts.cache.clone(), boot_kind),
            events,
            listening: Some((listeners, sender)),
            start_port: None,
            template_lease: lease,
        };
        let vm = vm.connect_qmp()?;
        match start_port {
            Some(port) => vm.resume_clone(port, boot).map_err(RunError::Harness),
            None => Ok(vm),
        }
    }

    /// A clone, QEMU up: its state loaded, then its start line sent. A
    /// template QEMU could not load is thrown away (the next VM saves a
    /// new one); a load that only took too long leaves it.
    fn resume_clone(mut self, port: restore::StartPort, boot: &Boot) -> Result<Self> {
        let crate::qemu::Start::Restore {
            initramfs,
            memory,
            state,
        } = self.spec.start.clone()
        else {
            anyhow::bail!("resuming a VM that is no clone");
        };
        let mut port = port.accept()?;
        let qmp = self.qmp.as_mut().context("no QMP")?;
        // A load is the restored VM's boot, and has its deadline: 5x the
        // slowest recent restore here, at least 10 s, at most half the
        // timeout (half of it before any restore was recorded).
        let loaded = qmp.load_state(&state, self.started + self.boot_deadline.after);
        let lease = self
            .template_lease
            .take()
            .context("a clone holds its template")?;
        if let Err(err) = loaded {
            let refused = self.qemu.stderr_tail(5);
            if refused.contains("load of migration failed") {
                let template = restore::Template {
                    initramfs,
                    memory,
                    state,
                };
                restore::discard(&template, lease);
                let err = err.context(format!("QEMU refused the template: {}", refused.trim()));
                return Err(err.context("it is thrown away; the next VM saves a new one"));
            }
            let deadline = self.boot_deadline;
            return Err(err.context(format!("restoring the VM by its boot deadline, {deadline}")));
        }
        drop(lease);
        restore::send_start(&mut port, boot.binary, boot.agent.argv())?;
        self.start_port = Some(port);
        Ok(self)
    }

    /// QMP, or why not: QEMU blaming KVM (while probing) makes KVM broken.
    fn connect_qmp(mut self) -> Result<Self, RunError> {
        match QmpClient::connect(&self.spec.qmp_socket, &self.qemu, self.started + QMP_WAIT) {
            Ok(qmp) => {
                self.qmp = Some(qmp);
                // QEMU opens its sockets together: the control one is up
                // too, and it has connected its channels.
                self.connect_control().map_err(RunError::Harness)?;
                if let Some((listeners, sender)) = self.listening.take() {
                    self.watch.open = listeners.accept(&sender).map_err(RunError::Harness)?;
                }
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

    /// The console so far (nothing when it is the terminal).
    fn console(&self) -> String {
        let Some(log) = self.spec.console.log() else {
            return String::new();
        };
        String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
    }

    /// Lets the console finish the panic message before it is reported: its
    /// `---[ end Kernel panic` line, the console's close (QEMU's exit), or
    /// two seconds.
    fn wait_for_panic_end(&mut self) {
        let deadline = Instant::now() + PANIC_END_GRACE;
        let console_open = |vm: &Vm| vm.watch.open.contains(&crate::qemu::Channel::Console);
        while !self.watch.panic_ended && console_open(self) && Instant::now() < deadline {
            self.take_event_until(deadline);
        }
    }

    /// Waits for the VM to end: the agent's messages, or a failure with
    /// everything needed to debug it.
    fn finish(mut self) -> Result<(Self, Vec<Message>, Duration), RunError> {
        let ending = self.watch()?;
        self.record_boot_time();
        let failure = match ending {
            Ending::QemuExited(status) => return self.read_messages(status),
            Ending::VirtiofsdDied(status) => VmFailure::VirtiofsdDied { status },
            Ending::Panicked => {
                self.wait_for_panic_end();
                VmFailure::GuestPanicked {
                    detail: panic_detail(&self.console()),
                }
            }
            Ending::DeadlinePassed => self.timeout(),
            Ending::NeverReady => {
                let vcpus = self.describe_stall();
                VmFailure::NeverReady {
                    deadline: self.boot_deadline,
                    state: self.last_run_state(),
                    vcpus,
                }
            }
            Ending::KvmSilent => VmFailure::KvmBroken(format!(
                "a KVM guest did not reach its init within {}s",
                KVM_WATCHDOG.as_secs()
            )),
        };
        Err(self.fail(failure).into())
    }

    /// Each vCPU's state, in one line; the monitor's full output goes to
    /// `vcpus.txt` in the logs. Asked before QEMU is told to quit.
    fn describe_stall(&mut self) -> String {
        let Some(qmp) = self.qmp.as_mut() else {
            return "unknown (no QMP)".to_owned();
        };
        let system_map = self.kernel_for_gdb.1.join("System.map");
        let (summary, detail) = stall::describe(qmp, self.qemu.pid(), &system_map);
        // Best effort: the summary is in the failure either way, and a
        // kernel log that cannot be read says why in its place.
        let _ = std::fs::write(self.logs.path().join("vcpus.txt"), detail);
        if let Err(err) = stall::save_kernel_log(qmp, &system_map, self.logs.path()) {
            let _ = std::fs::write(self.logs.path().join("dmesg.txt"), format!("{err:#}\n"));
        }
        summary
    }

    /// This boot's time, for the next boots' deadline (`boot_times`): only
    /// a scenario's, whose boot no person or debugger held up, and only
    /// once its agent said ready. Best effort: a lost record leaves the
    /// deadline to the boots recorded before.
    fn record_boot_time(&self) {
        let held = self.options.gdb || self.options.interactive || self.runs_command;
        if let (false, Some(boot)) = (held, self.watch.ready_after) {
            let (cache, kind) = &self.boot_record;
            let _ = BootTimes::record(cache, kind, boot);
        }
    }

    /// Whether the vCPUs were running, paused or panicked tells a hang from a stall.
    fn timeout(&mut self) -> VmFailure {
        VmFailure::Timeout {
            after: self.options.timeout,
            state: self.last_run_state(),
        }
    }

    /// QMP's run state, asked as the VM is ended (then QEMU is told to quit).
    fn last_run_state(&mut self) -> String {
        let state = match self.qmp.as_mut().map(QmpClient::status) {
            Some(Ok(state)) => state,
            Some(Err(err)) => format!("unknown (QMP: {err:#})"),
            None => "unknown (no QMP)".to_owned(),
        };
        if let Some(qmp) = self.qmp.as_mut() {
            let _ = qmp.quit();
        }
        state
    }

    /// QEMU has exited: the agent's messages, or why there are none.
    fn read_messages(
        mut self,
        status: ExitStatus,
    ) -> Result<(Self, Vec<Message>, Duration), RunError> {
        let total = self.started.elapsed();
        self.exit_status = Some(status);
        let console = self.console();
        if self.probing && console.is_empty() {
            if let Some(complaint) = self.qemu.kvm_complaint() {
                let reason = format!(
                    "QEMU exited ({status}) before the KVM guest printed anything: {complaint}"
                );
                return Err(self.fail(VmFailure::KvmBroken(reason)).into());
            }
        }
        let messages = match read_messages(&self.spec.result_file) {
            Ok(messages) => messages,
            Err(err) => return Err(self.fail(VmFailure::BadResult(err)).into()),
        };
        if final_message(&messages).is_some() {
            return Ok((self, messages, total));
        }
        let failure = self.watch.no_result(&console, status);
        Err(self.fail(failure).into())
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
            retried_boot: None,
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

/// An `Exited` event for QEMU and for virtiofsd, each when it exits.
fn watch_exits(
    qemu: &QemuProcess,
    virtiofsd: Option<&Virtiofsd>,
    sender: &Sender<Event>,
) -> Result<()> {
    let qemu_pid = qemu.pid().context("QEMU has no pid")?;
    events::watch_exit(qemu_pid, Process::Qemu, sender)?;
    if let Some(daemon) = virtiofsd {
        let pid = daemon.pid().context("virtiofsd has no pid")?;
        events::watch_exit(pid, Process::Virtiofsd, sender)?;
    }
    Ok(())
}

/// Whether this VM may be a clone of a template: a scenario or an exec
/// asked to restore, in a VM that no person or debugger holds, on one NUMA
/// node (a template has one memory backend), and not the first KVM boot
/// (a KVM that fails silently is told by that boot's watchdog).
fn restorable(boot: &Boot, options: &VmOptions) -> bool {
    options.restore
        && !boot.probing
        && matches!(boot.agent, AgentCommand::Run(_) | AgentCommand::Exec(_))
        && !options.interactive
        && !options.gdb
        && options.nodes <= 1
}

/// `warning`, unless this process said it already (a template that failed
/// fails each VM of a run the same way).
fn warn_once(warning: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let reason = warning
        .split_once(": ")
        .map_or(warning, |(_, reason)| reason);
    if let Ok(mut said) = SAID.lock() {
        if !said.iter().any(|earlier| earlier == reason) {
            said.push(reason.to_owned());
            tracing::warn!("{warning}");
        }
    }
}

/// Makes `spec` a clone of its kernel's template (saved now if it is not
/// yet), with its template's devices, which include an exec's ports; the
/// hold on the template, until the clone has loaded it.
fn clone_of_template(
    artifacts: &Artifacts,
    boot: &Boot,
    options: &VmOptions,
    spec: &mut VmSpec,
) -> Result<restore::Lease, RunError> {
    let logs = spec
        .result_file
        .parent()
        .unwrap_or(Path::new("/"))
        .to_owned();
    spec.output_files = Some((logs.join("stdout"), logs.join("stderr")));
    let entry = artifacts.cache.join("kernels").join(&artifacts.kernel.key);
    // The template's boot stalls by the booted VMs' deadline.
    let kind = boot_times::kind(&boot.accel.to_string(), artifacts.kernel.flavour.name());
    let stalled = BootTimes::load(&artifacts.cache).deadline(&kind, options.timeout);
    let (template, lease) = restore::template_for(&artifacts.cache, &entry, spec, stalled)
        .map_err(RunError::Harness)?;
    spec.start = template.start();
    Ok(lease)
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
            tracing::info!("note: {err:#}; sharing the root over 9p instead");
            None
        }
    }
}

fn vm_spec(
    artifacts: &Artifacts,
    boot: &Boot,
    options: &VmOptions,
    virtiofsd: &Option<Virtiofsd>,
    (sockets, logs): (&tempfile::TempDir, &tempfile::TempDir),
) -> Result<VmSpec> {
    let (agent, accel) = (boot.agent, boot.accel);
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
        nodes: options.nodes,
        root,
        init: boot.binary.to_owned(),
        init_args: agent.argv(),
        console: match options.interactive {
            true => Console::Terminal,
            false => Console::File(logs.path().join("console.log")),
        },
        result_file: logs.path().join("result.json"),
        output_files: matches!(agent, AgentCommand::Exec(_))
            .then(|| (logs.path().join("stdout"), logs.path().join("stderr"))),
        control_socket: options.gdb.then(|| sockets.path().join("control.sock")),
        gdb_port: match options.gdb {
            true => Some(debugger::free_port()?),
            false => None,
        },
        qmp_socket: sockets.path().join("qmp.sock"),
        sockets: sockets.path().to_owned(),
        verbose_console: options.verbose_console,
        preset_lpj: match accel {
            Accel::Tcg => guest_clock::preset_lpj(&artifacts.kernel.build_dir.join(".config")),
            // KVM guests have an invariant TSC and skip the calibration anyway.
            Accel::Kvm => None,
        },
        start: crate::qemu::Start::Boot,
    })
}

/// `options` for one VM: with a counter file (`fail_every_other`), this
/// VM counted in it, and its fault `FailScenario` when its count is odd.
pub(crate) fn with_counted_fault(options: &VmOptions) -> Result<VmOptions> {
    let Some(counter) = &options.fail_every_other else {
        return Ok(options.clone());
    };
    let lock_path = counter.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let count: u64 = match std::fs::read_to_string(counter) {
        Ok(text) => text.trim().parse().with_context(|| {
            format!(
                "{} holds no count of VMs; remove it to count from 0",
                counter.display()
            )
        })?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => Err(err).with_context(|| format!("reading {}", counter.display()))?,
    };
    let count = count + 1;
    std::fs::write(counter, count.to_string())
        .with_context(|| format!("writing {}", counter.display()))?;
    Ok(VmOptions {
        fault: match count % 2 {
            1 => Some(Fault::FailScenario),
            _ => options.fault,
        },
        fail_every_other: None,
        ..options.clone()
    })
}

/// The kernel splits its command line at spaces, so the paths handed to the
/// agent there must have none.
fn check_cmdline_paths(artifacts: &Artifacts, binary: &Path) -> Result<()> {
    let paths = std::iter::once(binary).chain(artifacts.modules.values().map(PathBuf::as_path));
    for path in paths {
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
    fn every_other_vm_fails_its_scenario_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("vms");
        let options = VmOptions {
            fail_every_other: Some(counter.clone()),
            fault: Some(Fault::WriteHost),
            ..VmOptions::default()
        };
        let faults: Vec<Option<Fault>> = (0..4)
            .map(|_| with_counted_fault(&options).unwrap().fault)
            .collect();
        let odd = Some(Fault::FailScenario);
        // The even ones keep the fault they were given.
        let even = Some(Fault::WriteHost);
        assert_eq!(faults, [odd, even, odd, even]);
        assert_eq!(std::fs::read_to_string(&counter).unwrap(), "4");
        assert_eq!(with_counted_fault(&options).unwrap().fail_every_other, None);
        std::fs::write(&counter, "many").unwrap();
        let error = format!("{:#}", with_counted_fault(&options).unwrap_err());
        assert!(error.contains("holds no count of VMs"), "{error}");
        let plain = VmOptions::default();
        assert_eq!(with_counted_fault(&plain).unwrap().fault, None);
    }
}
