//! One VM that runs several scenarios of one subject, one after another
//! (`run --scenario A --then B ...`): the boot is paid once. The agent
//! sends each result as it is settled and stops after a scenario fails,
//! so a scenario runs only in a kernel every scenario before it left clean.

use std::path::Path;
use std::time::{Duration, Instant};

use harness_wire::cli::AgentCommand;
use harness_wire::markers;
use harness_wire::protocol::{Message, ScenarioResult};

use super::messages::read_messages;
use super::{Boot, RunError, ScenarioRun, Vm, VmFailure, VmOptions};
use crate::artifacts::Artifacts;
use crate::qemu::{Accel, RootShare};

/// What a VM that ran several scenarios gives back.
#[derive(Debug)]
#[non_exhaustive]
pub struct Batch {
    /// A run for each scenario that reported, in the order asked.
    pub runs: Vec<ScenarioRun>,
    /// Why it ran no more: `Ok` when it ran them all or the agent stopped
    /// after a failure; else the VM's failure.
    pub ended: Result<(), RunError>,
    /// The scenario the console last said had started, when the VM failed:
    /// the one it failed in (those before it may still have been waiting
    /// for their leak checks, and lost their results with the VM).
    pub(crate) failed_in: Option<String>,
}

/// Boots a VM on `accel` that runs `scenarios` (all of one subject) in
/// turn. An error only when the VM failed before any result or any
/// scenario's start (so a KVM probe can judge it); a later failure is in
/// [`Batch::ended`].
pub fn run_batch_on(
    artifacts: &Artifacts,
    scenarios: &[String],
    options: &VmOptions,
    accel: Accel,
    probing: bool,
) -> Result<Batch, RunError> {
    let (first, rest) = scenarios
        .split_first()
        .ok_or_else(|| RunError::Harness(anyhow::anyhow!("a batch of no scenarios")))?;
    let mut args = artifacts
        .run_args(first, options.fault)
        .map_err(RunError::Harness)?;
    args.then = rest.to_vec();
    args.vm_timeout = Some(options.timeout.as_secs());
    let agent = AgentCommand::Run(args);
    let binary = artifacts.binary_for(first).map_err(RunError::Harness)?;
    // A batch is of one topology (the suite groups them so): the first's.
    let topology =
        (artifacts.catalogue.find(first)).map_or_else(Default::default, |(_, s)| s.topology);
    let options = &options.with_topology(topology);
    let boot = Boot {
        binary,
        agent: &agent,
        label: options.label.as_deref().unwrap_or(first),
        accel,
        probing,
    };
    let vm = Vm::boot(artifacts, &boot, options)?;
    let shared = Shared::of(&vm);
    let batch = match vm.finish() {
        Ok((vm, messages, total)) => vm.into_batch(&messages, scenarios.len(), total),
        Err(RunError::Vm(error)) => salvage(&shared, error),
        Err(error) => Batch {
            runs: Vec::new(),
            ended: Err(error),
            failed_in: None,
        },
    };
    match batch {
        Batch {
            runs,
            ended: Err(error),
            failed_in: None,
        } if runs.is_empty() => Err(error),
        batch => Ok(batch),
    }
}

/// What every run of one VM shares, taken before the VM is gone.
struct Shared {
    accel: Accel,
    root: &'static str,
    topology: harness_wire::catalogue::Topology,
    started: Instant,
}

impl Shared {
    fn of(vm: &Vm) -> Self {
        Shared {
            accel: vm.spec.accel,
            root: match (&vm.spec.start, &vm.spec.root) {
                (crate::qemu::Start::Restore { .. }, _) => "restored",
                (_, RootShare::Virtiofs { .. }) => "virtiofs",
                (_, RootShare::NineP) => "9p",
            },
            topology: harness_wire::catalogue::Topology {
                cpus: vm.spec.cpus as u16,
                nodes: vm.spec.nodes as u16,
                // Shown only when it is not the default.
                memory_mib: match vm.spec.memory_mib {
                    memory if memory == super::VmOptions::default().memory_mib => 0,
                    memory => memory,
                },
            },
            started: vm.started,
        }
    }

    /// The run of a result that arrived at `at`.
    fn run(&self, result: ScenarioResult, at: Instant, boot: Option<Duration>) -> ScenarioRun {
        ScenarioRun {
            accel: self.accel,
            root: self.root,
            boot,
            topology: self.topology,
            to_result: at.duration_since(self.started),
            total: at.duration_since(self.started),
            console_tail: String::new(),
            run_dir: std::path::PathBuf::new(),
            kept_logs: None,
            retried_boot: None,
            result,
        }
    }
}

/// The scenario results among `messages`, and the agent's word that it stopped.
fn results_of(messages: &[Message]) -> (Vec<ScenarioResult>, bool) {
    let results = messages
        .iter()
        .filter_map(|message| match message {
            Message::Scenario(result) => Some(result.clone()),
            _ => None,
        })
        .collect();
    let stopped = messages
        .iter()
        .any(|message| matches!(message, Message::Stopped { .. }));
    (results, stopped)
}

/// The results a failed VM sent before it failed, from its kept logs.
fn salvage(shared: &Shared, error: Box<super::VmError>) -> Batch {
    let messages = read_messages(&error.logs.join("result.json")).unwrap_or_default();
    let (results, _) = results_of(&messages);
    let now = Instant::now();
    let runs = results
        .into_iter()
        .map(|result| {
            let mut run = shared.run(result, now, None);
            run.kept_logs = Some(error.logs.clone());
            run.console_tail.clone_from(&error.console_tail);
            run
        })
        .collect();
    let console = std::fs::read_to_string(error.logs.join("console.log")).unwrap_or_default();
    Batch {
        runs,
        failed_in: markers::last_scenario_started(&console).map(str::to_owned),
        ended: Err(RunError::Vm(error)),
    }
}

impl Vm {
    /// The VM has ended: a run for each result, the logs kept when one
    /// failed (or when asked), and a failure if the agent went quiet early.
    fn into_batch(self, messages: &[Message], asked: usize, total: Duration) -> Batch {
        let shared = Shared::of(&self);
        let (results, stopped) = results_of(messages);
        let keep = self.options.keep_logs || results.iter().any(|result| !result.passed);
        let kept = keep.then(|| self.logs.path().to_owned());
        let console_tail = crate::text::tail(&self.console(), 40);
        let arrived = |index: usize| {
            let at = self.watch.results_at.get(index).copied();
            at.unwrap_or(self.started + total)
        };
        let runs: Vec<ScenarioRun> = (results.into_iter().enumerate())
            .map(|(index, result)| {
                let boot = self.watch.ready_after.filter(|_| index == 0);
                let mut run = shared.run(result, arrived(index), boot);
                run.total = total;
                run.kept_logs.clone_from(&kept);
                run.console_tail.clone_from(&console_tail);
                run.run_dir = self.sockets.path().to_owned();
                run
            })
            .collect();
        // No result at all is a failure even if the agent said it stopped.
        if runs.is_empty() || (runs.len() < asked && !stopped) {
            let console = self.console();
            let failed_in = markers::last_scenario_started(&console).map(str::to_owned);
            let last = match super::messages::final_message(messages) {
                Some(Message::Scenario(_)) | None => String::new(),
                Some(other) => format!("; the agent's last message: {other:?}"),
            };
            let how = match stopped {
                true => "the agent saying it stopped before any result",
                false => "without the agent saying it stopped",
            };
            let said = format!(
                "the VM ended (QEMU: {}) after {} of its {asked} scenarios' results, {how}; \
                 the last scenario started: {}{last}; the console says more (a guest reset, \
                 a triple fault say, prints nothing there)",
                self.exit_status
                    .map_or("still running".to_owned(), |status| status.to_string()),
                runs.len(),
                failed_in.as_deref().unwrap_or("none"),
            );
            let error = self.fail(VmFailure::BadResult(said));
            return Batch {
                runs,
                ended: Err(error.into()),
                failed_in,
            };
        }
        if let Some(logs) = &kept {
            write_pretty(logs, &runs);
            self.keep();
        }
        Batch {
            runs,
            ended: Ok(()),
            failed_in: None,
        }
    }
}

/// Each result, readable, beside the raw messages: `result.pretty.json`
/// for a VM's only scenario, `<scenario>.result.pretty.json` for several.
fn write_pretty(logs: &Path, runs: &[ScenarioRun]) {
    for run in runs {
        let pretty = serde_json::to_string_pretty(&run.result).unwrap_or_default();
        let name = match runs.len() {
            1 => "result.pretty.json".to_owned(),
            _ => format!("{}.result.pretty.json", run.result.scenario),
        };
        let _ = std::fs::write(logs.join(name), pretty);
    }
}
