//! Running one scenario: its subject's module loaded first when it needs
//! one, its steps, the module's clean unload at the end, every failure
//! recorded in the result. Never panics: a scenario that cannot run is a
//! failed result.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context as _, Result};
use harness_wire::cli::RunArgs;
use harness_wire::protocol::ScenarioResult;

use super::context::{Context, Module, Pause};
use super::loader::LoaderCommand;
use super::module;
use super::programs::ProgramChecks;
use crate::scenario::{self, Scenario, Subject};

/// Bound on the wait for a module's last reference after a detach.
pub const UNLOAD_LIMIT: Duration = Duration::from_secs(10);

/// Runs the scenario `args` names, from `subjects`.
pub(crate) fn run_scenario(subjects: &[&Subject], args: &RunArgs) -> ScenarioResult {
    run_with(subjects, args, None)
}

/// The scenario, with `pause` called once: when it first stops a loader it
/// holds (the loader still attached), or else after its steps. `pause` gets
/// where the scenario is and returns what came of it (a shell's exit).
pub(crate) fn run_scenario_pausing(
    subjects: &[&Subject],
    args: &RunArgs,
    pause: Pause,
) -> ScenarioResult {
    run_with(subjects, args, Some(pause))
}

fn run_with(subjects: &[&Subject], args: &RunArgs, pause: Option<Pause>) -> ScenarioResult {
    let failed = |failure: String| ScenarioResult {
        scenario: args.scenario.clone(),
        failures: vec![failure],
        ..ScenarioResult::default()
    };
    let Some((subject, scenario)) = scenario::find(subjects, &args.scenario) else {
        return failed(scenario::unknown(subjects, &args.scenario));
    };
    let module = match (subject.module, &args.module) {
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
    let loader = match loader_of(subject, module.as_ref()) {
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
    let mut context = match Context::new(scenario.name, loader, module, pause, checks) {
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
    context.finish(error)
}

/// The subject's loader: this binary, re-executed in the loader role, told
/// where the module is when the subject says how.
fn loader_of(subject: &Subject, module: Option<&Module>) -> Result<LoaderCommand> {
    let binary = std::env::current_exe().context("finding this binary (/proc/self/exe)")?;
    let env = module
        .and_then(|module| Some((module.spec.path_env?, module.path.clone())))
        .map(|(name, path)| (name.to_owned(), OsString::from(path)))
        .into_iter()
        .collect();
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
    (scenario.run)(context)?;
    context.pause_here("after the scenario's steps")?;
    if context.module_is_loaded() {
        // Every scenario ends with the module unloading cleanly.
        context.rmmod_within(UNLOAD_LIMIT, "the scenario")?;
    }
    Ok(())
}
