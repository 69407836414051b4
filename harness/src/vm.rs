//! One VM running one scenario: it owns QEMU, virtiofsd, QMP and the run
//! directory; its Drop kills everything it started. Every wait checks first
//! whether QEMU has exited, so "QEMU exited: did the guest panic?" is
//! reported at once instead of after a timeout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use guest_agent::protocol::ScenarioResult;

use crate::accel::{self, Accel, Choice};
use crate::artifacts::Artifacts;
use crate::qemu::{QemuProcess, RootShare, VmSpec};
use crate::qmp::{GuestEvent, QmpClient};
use crate::run_dirs;
use crate::virtiofsd::Virtiofsd;

/// Set to 1 for every boot message on the VM consoles.
pub const VERBOSE_CONSOLE_ENV: &str = "STRUCT_OPS_VERBOSE_CONSOLE";

/// How long a guest on KVM may take to reach the agent before KVM is judged broken.
const KVM_WATCHDOG: Duration = Duration::from_secs(20);
/// How long QEMU may outlive its virtiofsd before that counts as a fault.
const VIRTIOFSD_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may take to exit once the agent's result is in.
const POWER_OFF_GRACE: Duration = Duration::from_secs(2);
/// The line the agent prints once it is up; boot time is measured to it.
const AGENT_READY: &str = "guest-agent: ready";

#[derive(Debug, Clone)]
pub struct VmOptions {
    pub memory_mib: u32,
    pub cpus: u32,
    /// The whole VM, boot to power-off.
    pub timeout: Duration,
    /// Keep the logs even when the scenario passed.
    pub keep_logs: bool,
    /// Extra words for the agent (the harness's own fault tests use `--fault`).
    pub extra_agent_args: Vec<String>,
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
            extra_agent_args: Vec::new(),
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

/// Boots a VM that runs `scenario` and returns its result.
pub fn run_scenario(
    artifacts: &Artifacts,
    scenario: &str,
    options: &VmOptions,
) -> Result<ScenarioRun> {
    let accel = match accel::choose(&artifacts.cache)? {
        Choice::Decided(accel, _) => accel,
        Choice::ProbeKvm => {
            let _lock = accel::probe_lock(&artifacts.cache)?;
            match accel::choose(&artifacts.cache)? {
                // Another process probed while we waited for the lock.
                Choice::Decided(accel, _) => accel,
                Choice::ProbeKvm => return run_probing_kvm(artifacts, scenario, options),
            }
        }
    };
    Vm::boot(artifacts, scenario, options, accel, false)?.finish()
}

/// The first KVM boot on this host: a watchdog on the agent's ready line
/// decides whether KVM works, and the verdict is cached.
fn run_probing_kvm(
    artifacts: &Artifacts,
    scenario: &str,
    options: &VmOptions,
) -> Result<ScenarioRun> {
    // Every boot message on the console, so a working KVM guest speaks within a second.
    let probing = VmOptions {
        verbose_console: true,
        ..options.clone()
    };
    match Vm::boot(artifacts, scenario, &probing, Accel::Kvm, true).and_then(Vm::finish) {
        Err(err) if err.downcast_ref::<KvmBroken>().is_some() => {
            let reason = err.to_string();
            accel::write_verdict(&artifacts.cache, false, &reason)?;
            eprintln!(
                "warning: /dev/kvm is present but {reason} (nested virtualisation not working?); \
                 falling back to TCG, which is slower. This verdict is cached in {}; delete it, \
                 or set {}=kvm, to try KVM again.",
                artifacts.cache.join("kvm-verdict.json").display(),
                accel::ACCEL_ENV
            );
            Vm::boot(artifacts, scenario, options, Accel::Tcg, false)?.finish()
        }
        Ok(run) => {
            accel::write_verdict(&artifacts.cache, true, "a KVM guest booted")?;
            Ok(run)
        }
        // The guest reached the agent but the scenario's VM failed: KVM works.
        Err(err)
            if err
                .downcast_ref::<VmError>()
                .is_some_and(|vm| vm.agent_ready) =>
        {
            accel::write_verdict(&artifacts.cache, true, "a KVM guest booted")?;
            Err(err)
        }
        // Failed before any guest ran (no virtiofsd, say): this says nothing about KVM.
        Err(err) => Err(err),
    }
}

/// KVM failed the probe: the guest printed nothing in time, or QEMU could
/// not even start it (`-cpu host` aborts on some nested setups).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct KvmBroken(String);

fn kvm_silent() -> anyhow::Error {
    KvmBroken(format!(
        "a KVM guest did not reach its init within {}s",
        KVM_WATCHDOG.as_secs()
    ))
    .into()
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
    /// When the agent's ready line appeared, after QEMU started.
    ready_after: Option<Duration>,
    options: VmOptions,
    watchdog: bool,
}

impl Vm {
    fn boot(
        artifacts: &Artifacts,
        scenario: &str,
        options: &VmOptions,
        accel: Accel,
        watchdog: bool,
    ) -> Result<Self> {
        check_cmdline_paths(artifacts)?;
        let label = options.label.as_deref().unwrap_or(scenario);
        let sockets = run_dirs::create_socket_dir(label)?;
        let logs = run_dirs::create_log_dir(label)?;
        let socket = |name: &str| sockets.path().join(name);
        let path = |name: &str| logs.path().join(name);
        let virtiofsd = match &artifacts.virtiofsd {
            Ok(_) if options.force_9p => None,
            Ok(binary) => {
                match Virtiofsd::spawn(binary, socket("virtiofsd.sock"), path("virtiofsd.log")) {
                    Ok(daemon) => Some(daemon),
                    Err(err) => {
                        eprintln!("[harness] note: {err:#}; sharing the root over 9p instead");
                        None
                    }
                }
            }
            Err(_) => None,
        };
        let root = match &virtiofsd {
            Some(daemon) => RootShare::Virtiofs {
                socket: daemon.socket.clone(),
            },
            None => RootShare::NineP,
        };
        let spec = VmSpec {
            accel,
            // vmlinux through PVH: no firmware real-mode setup, no decompression.
            kernel_image: artifacts.kernel.pvh_image()?,
            memory_mib: options.memory_mib,
            cpus: options.cpus,
            root,
            init: artifacts.guest.agent.clone(),
            init_args: agent_args(artifacts, scenario, &options.extra_agent_args),
            console_log: path("console.log"),
            result_file: path("result.json"),
            qmp_socket: socket("qmp.sock"),
            verbose_console: options.verbose_console,
        };
        std::fs::write(path("qemu.cmdline"), shell_line(&spec)).context("writing qemu.cmdline")?;
        let started = Instant::now();
        let qemu = QemuProcess::spawn(&spec, path("qemu.stderr"))?;
        let mut vm = Vm {
            qmp: None,
            qemu,
            virtiofsd,
            sockets,
            logs,
            spec,
            started,
            ready_after: None,
            options: options.clone(),
            watchdog,
        };
        match QmpClient::connect(
            &vm.spec.qmp_socket,
            &vm.qemu,
            started + Duration::from_secs(10),
        ) {
            Ok(qmp) => vm.qmp = Some(qmp),
            // Only QEMU's own word that KVM failed makes KVM broken.
            Err(err) => {
                let complaint = if watchdog {
                    vm.qemu.kvm_complaint()
                } else {
                    None
                };
                return Err(match complaint {
                    Some(complaint) => {
                        KvmBroken(format!("QEMU could not start a KVM guest: {complaint}")).into()
                    }
                    None => err,
                });
            }
        }
        Ok(vm)
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.spec.console_log).unwrap_or_default())
            .into_owned()
    }

    fn fail(self, failure: VmFailure) -> anyhow::Error {
        let console_tail = crate::text::tail(&self.console(), 40);
        let stderr_tail = self.qemu.stderr_tail(20);
        let run_dir = self.sockets.path().to_owned();
        let agent_ready = self.ready_after.is_some();
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
        .into()
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

    /// Waits for QEMU to exit and reads the result.
    fn finish(mut self) -> Result<ScenarioRun> {
        let deadline = self.started + self.options.timeout;
        let mut panicked = false;
        let mut last_qmp_poll = Instant::now();
        let mut virtiofsd_gone: Option<Instant> = None;
        let mut result_arrived: Option<Instant> = None;
        let status = loop {
            // QEMU's exit is checked first: it explains more than any timeout.
            if let Some(status) = self.qemu.try_wait()? {
                break status;
            }
            // QEMU 7.2 can hang in its vhost-user teardown after the guest powers
            // off; once the result is in, there is nothing left to wait for.
            if result_arrived.is_none() && read_result(&self.spec.result_file).is_some() {
                result_arrived = Some(Instant::now());
            }
            if result_arrived.is_some_and(|at| at.elapsed() > POWER_OFF_GRACE) {
                self.qemu.kill();
                continue;
            }
            let console = self.console();
            if self.ready_after.is_none() && console.contains(AGENT_READY) {
                self.ready_after = Some(self.started.elapsed());
            }
            // A KVM guest that works reaches the agent in about a second; one
            // that prints and then stalls must not earn a "KVM works" verdict.
            if self.watchdog && self.ready_after.is_none() && self.started.elapsed() > KVM_WATCHDOG
            {
                self.qemu.kill();
                return Err(kvm_silent());
            }
            // virtiofsd also exits, cleanly, when a powered-off guest disconnects,
            // a moment before QEMU does (QEMU 7.2 may then hang in its vhost-user
            // teardown). A clean exit means the guest is gone: end QEMU and let the
            // result, or its absence, speak. Only a daemon that died is a fault.
            if let Some((clean, status)) = self.virtiofsd.as_ref().and_then(Virtiofsd::has_exited) {
                let since = *virtiofsd_gone.get_or_insert_with(Instant::now);
                if since.elapsed() > VIRTIOFSD_GRACE {
                    if clean {
                        self.qemu.kill();
                        continue;
                    }
                    return Err(self.fail(VmFailure::VirtiofsdDied { status }));
                }
            }
            if last_qmp_poll.elapsed() > Duration::from_millis(250) {
                last_qmp_poll = Instant::now();
                let events = self.qmp.as_mut().map(QmpClient::events);
                if let Some(Ok(events)) = events {
                    panicked |= events.contains(&GuestEvent::Panicked);
                }
            }
            if panicked || console.contains("Kernel panic - not syncing") {
                // Let the console finish the panic message before reporting it.
                std::thread::sleep(Duration::from_millis(300));
                let detail = panic_detail(&self.console());
                return Err(self.fail(VmFailure::GuestPanicked { detail }));
            }
            if Instant::now() >= deadline {
                // Whether the vCPUs were running, paused or panicked tells a hang from a stall.
                let state = match self.qmp.as_mut().map(QmpClient::status) {
                    Some(Ok(state)) => state,
                    Some(Err(err)) => format!("unknown (QMP: {err:#})"),
                    None => "unknown (no QMP)".to_owned(),
                };
                if let Some(qmp) = self.qmp.as_mut() {
                    let _ = qmp.quit();
                }
                let after = self.options.timeout;
                return Err(self.fail(VmFailure::Timeout { after, state }));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let total = self.started.elapsed();
        if self.watchdog && self.console().is_empty() {
            if let Some(complaint) = self.qemu.kvm_complaint() {
                return Err(KvmBroken(format!(
                    "QEMU exited ({status}) before the KVM guest printed anything: {complaint}"
                ))
                .into());
            }
        }
        let result = match read_result(&self.spec.result_file) {
            Some(Ok(result)) => result,
            Some(Err(err)) => return Err(self.fail(VmFailure::BadResult(err))),
            None => {
                let console = self.console();
                let failure = if console.contains("Kernel panic") {
                    VmFailure::GuestPanicked {
                        detail: panic_detail(&console),
                    }
                } else {
                    VmFailure::NoResult {
                        status: status.to_string(),
                    }
                };
                return Err(self.fail(failure));
            }
        };
        let console_tail = crate::text::tail(&self.console(), 40);
        let accel = self.spec.accel;
        let root = match self.spec.root {
            RootShare::Virtiofs { .. } => "virtiofs",
            RootShare::NineP => "9p",
        };
        let run_dir = self.sockets.path().to_owned();
        let keep = self.options.keep_logs || !result.passed;
        if keep {
            let pretty = serde_json::to_string_pretty(&result).unwrap_or_default();
            let _ = std::fs::write(self.logs.path().join("result.pretty.json"), pretty);
        }
        let boot = self.ready_after;
        let to_result = result_arrived.map_or(total, |at| at.duration_since(self.started));
        let kept_logs = keep.then(|| self.keep());
        Ok(ScenarioRun {
            result,
            accel,
            root,
            boot,
            to_result,
            total,
            kept_logs,
            console_tail,
            run_dir,
        })
    }
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
    let text = std::fs::read_to_string(path).ok()?;
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

fn agent_args(artifacts: &Artifacts, scenario: &str, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--scenario".to_owned(),
        scenario.to_owned(),
        "--loader".to_owned(),
        artifacts.guest.loader.display().to_string(),
        "--kmod".to_owned(),
        artifacts.kmod.display().to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

fn shell_line(spec: &VmSpec) -> String {
    let mut words = vec![crate::qemu::QEMU_BINARY.to_owned()];
    words.extend(
        crate::qemu::qemu_args(spec)
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    format!("{}\n", guest_agent::shell::quote_words(&words))
}
