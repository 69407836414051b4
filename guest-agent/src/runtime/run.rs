//! Running scenarios: each one's subject's module loaded first when it
//! needs one, its steps, the module's clean unload at the end, every
//! failure recorded in its result. Never panics: a scenario that cannot
//! run is a failed result.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use harness_wire::cli::RunArgs;
use harness_wire::protocol::ScenarioResult;

use super::context::{add_leaks, Context, LeakTurn, Module, Owned, Pause};
use super::kmemleak::{LeakQueue, Settled};
use super::loader::LoaderCommand;
use super::module;
use super::programs::ProgramChecks;
use crate::scenario::{self, Scenario, Subject};

/// Bound on the wait for a module's last reference after a detach.
pub const UNLOAD_LIMIT: Duration = Duration::from_secs(10);

/// Runs the scenarios `args` names (`--scenario`, then each `--then`), one
/// after another in this kernel, handing each result to `send` as soon as
/// its leak check is settled. A scenario that fails ends the run, since the
/// kernel may no longer be clean (lockdep turns itself off at its first
/// report); what is returned then says why, and the host runs the rest in
/// a fresh VM.
pub(crate) fn run_scenarios(
    subjects: &[&Subject],
    args: &RunArgs,
    Reports { starts, send }: Reports,
) -> Option<String> {
    if let Some(secs) = args.vm_timeout {
        super::loader::set_vm_timeout(secs);
    }
    let names: Vec<&str> = std::iter::once(&args.scenario)
        .chain(&args.then)
        .map(String::as_str)
        .collect();
    let mut queue = LeakQueue::default();
    let mut waiting = std::collections::BTreeMap::new();
    for (id, name) in names.iter().enumerate() {
        let last = id + 1 == names.len();
        starts(name);
        let turn = LeakTurn {
            queue: &mut queue,
            id,
            settle: last,
        };
        let (mut result, settled) = run_with(subjects, name, args, None, turn);
        if id == 0 && args.fault == Some(harness_wire::cli::Fault::FailScenario) {
            fail_on_purpose(&mut result);
        }
        let failed = !result.passed;
        waiting.insert(id, result);
        deliver(&mut waiting, settled, &queue, send);
        if failed && !last {
            deliver(&mut waiting, queue.settle_all(), &queue, send);
            return Some(format!(
                "{name} failed, so the kernel may no longer be clean for {}",
                names[id + 1..].join(", ")
            ));
        }
    }
    None
}

/// The failure the host asked for (`--fault fail-scenario`), after the
/// scenario ran as usual: what the harness's own flaky-detection test
/// retries.
fn fail_on_purpose(result: &mut ScenarioResult) {
    result.passed = false;
    result.failures.push(
        "failed on purpose: the host asked for it (--fault fail-scenario, the harness's \
         test that a scenario failing one time in two is reported flaky)"
            .to_owned(),
    );
}

/// Where a run of scenarios says what it does: each scenario as it starts,
/// each result as it is settled.
pub(crate) struct Reports<'a> {
    pub(crate) starts: &'a mut dyn FnMut(&str),
    pub(crate) send: &'a mut dyn FnMut(ScenarioResult),
}

/// Adds what the scans settled to the waiting results, and sends, in order,
/// every result whose leak check no longer waits.
fn deliver(
    waiting: &mut std::collections::BTreeMap<usize, ScenarioResult>,
    settled: Settled,
    queue: &LeakQueue,
    send: &mut dyn FnMut(ScenarioResult),
) {
    for (id, leaks) in settled {
        if let Some(result) = waiting.get_mut(&id) {
            add_leaks(result, leaks);
        }
    }
    while let Some(entry) = waiting.first_entry() {
        if queue.waits_for(*entry.key()) {
            break;
        }
        send(entry.remove());
    }
}

/// The scenario `args` names, with `pause` called once: when it first
/// stops a loader it holds (the loader still attached), or else after its
/// steps. `pause` gets where the scenario is and returns what came of it
/// (a shell's exit).
pub(crate) fn run_scenario_pausing(
    subjects: &[&Subject],
    args: &RunArgs,
    pause: Pause,
) -> ScenarioResult {
    let mut queue = LeakQueue::default();
    let turn = LeakTurn {
        queue: &mut queue,
        id: 0,
        settle: true,
    };
    let (mut result, settled) = run_with(subjects, &args.scenario, args, Some(pause), turn);
    for (_, leaks) in settled {
        add_leaks(&mut result, leaks);
    }
    result
}

fn run_with(
    subjects: &[&Subject],
    name: &str,
    args: &RunArgs,
    pause: Option<Pause>,
    turn: LeakTurn,
) -> (ScenarioResult, Settled) {
    let module_path = args.module.as_ref();
    let mut failed = |failure: String| {
        let result = ScenarioResult {
            scenario: name.to_owned(),
            failures: vec![failure],
            ..ScenarioResult::default()
        };
        (result, turn.queue.settle_all())
    };
    let Some((subject, scenario)) = scenario::find(subjects, name) else {
        return failed(scenario::unknown(subjects, name));
    };
    let module = match (subject.module, module_path) {
        (Some(spec), Some(path)) => Some(Module {
            spec,
            path: path.clone(),
        }),
        (Some(spec), None) if scenario.needs_module => {
            return failed(format!(
                "{} needs the module {}, and the agent was given none (--module)",
                scenario.name, spec.name
            ))
        }
        _ => None,
    };
    let loader = match loader_of(subject, module.as_ref(), args.bpf_dir.as_ref()) {
        Ok(loader) => loader,
        Err(err) => return failed(format!("{err:#}")),
    };
    let checks = ProgramChecks {
        exercises: scenario.exercises,
        budget: subject
            .verifier_budget
            .map(|path| std::path::Path::new(subject.manifest_dir).join(path)),
        hunts_races: scenario.hunts_races,
    };
    let info = subject.info();
    let owned = Owned {
        kernel_type: subject.kernel_type,
        log_prefixes: info.all_log_prefixes(),
        // The harness's own test that an ejection fails a scenario that
        // does not expect it runs one that does, without its expectation.
        expected_exit: match args.fault {
            Some(harness_wire::cli::Fault::ExpectNoExit) => None,
            _ => scenario.expected_exit,
        },
        fail_after_first_step: args.fault == Some(harness_wire::cli::Fault::FailAfterFirstStep),
    };
    let mut context = match Context::new(scenario.name, loader, module, pause, (checks, owned)) {
        Ok(context) => context,
        Err(err) => return failed(format!("setting up kernel output capture: {err:#}")),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_in(&mut context, scenario)
    }));
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err),
        Err(_) => Some(anyhow::anyhow!("the scenario panicked")),
    };
    context.finish(error, turn)
}

/// The subject's loader: this binary, re-executed in the loader role, told
/// where the module is when the subject says how, and where its BPF
/// objects built against this kernel are.
fn loader_of(
    subject: &Subject,
    module: Option<&Module>,
    bpf_dir: Option<&PathBuf>,
) -> Result<LoaderCommand> {
    let binary = std::env::current_exe().context("finding this binary (/proc/self/exe)")?;
    let module_env = module
        .and_then(|module| Some((module.spec.path_env?, module.path.clone())))
        .map(|(name, path)| (name.to_owned(), OsString::from(path)));
    let bpf_env = bpf_dir.map(|dir| {
        let name = harness_wire::catalogue::BPF_DIR_ENV.to_owned();
        (name, OsString::from(dir))
    });
    let env = module_env.into_iter().chain(bpf_env).collect();
    Ok(LoaderCommand {
        binary,
        subject: subject.name,
        name: subject.loader.name,
        env,
    })
}

fn run_in(context: &mut Context, scenario: &Scenario) -> Result<()> {
    if context.module_is_loaded() {
        // Left over from an earlier run under vng; every scenario starts from no module.
        let name = context.module_name().unwrap_or_default();
        module::rmmod_within(name, UNLOAD_LIMIT)
            .map_err(|(errno, _)| anyhow::anyhow!("unloading {name}, left loaded: {errno}"))?;
    }
    if scenario.needs_module {
        context.insmod()?;
    }
    context.sample_races(true)?;
    let ran = (scenario.run)(context);
    context.sample_races(false)?;
    ran?;
    context.pause_here("after the scenario's steps")?;
    context.check_type_released()?;
    if context.module_is_loaded() {
        // Every scenario ends with the module unloading cleanly.
        context.rmmod_within(UNLOAD_LIMIT, "the scenario")?;
    }
    Ok(())
}
