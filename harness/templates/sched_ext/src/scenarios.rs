//! The scenarios: each declared once, beside its steps and expectations.
//! The loader holds the scheduler in the background while a scenario looks
//! at sched_ext and runs threads on it; sched_ext's own kernel lines (which
//! its kthreads print) join the steps they happened in.

use std::time::Duration;

use anyhow::Result;
use harness::{Context, ExitKind, Held, Outcome, Scenario, SchedClass, Signal, Workload};

use crate::contract::{exit, Counts, ATTACHED, ERROR_AFTER_DISPATCHES, ERROR_MESSAGE, NAME};
use crate::contract::{REJECTED_REASON, WRITE_RULE};

pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario::new(
        "attach",
        "the scheduler attaches (sched_ext enabled, its ops named), then detaches when its loader stops",
        attach,
    ),
    Scenario::new(
        "scheduled",
        "busy threads run on the ext class under the scheduler, which counts what it queued and dispatched",
        scheduled,
    ),
    Scenario::new(
        "detach",
        "once the scheduler detaches, sched_ext is disabled and threads run on the fair class again",
        detach,
    ),
    Scenario::new(
        "error_exit",
        "the scheduler calling scx_bpf_error() at a dispatch its option names: the kernel ejects it, naming the error",
        error_exit,
    )
    .expects_exit(ExitKind::ErrorBpf, ERROR_MESSAGE),
    Scenario::new(
        "verifier_reject",
        "a scheduler that writes a task's weight is refused, naming the member and sched_ext's rule",
        verifier_reject,
    ),
];

/// Starts `hold ARGS` and waits for the scheduler to attach.
fn hold(context: &mut Context, args: &[&str]) -> Result<Held> {
    let mut words = vec!["hold"];
    words.extend(args);
    let (held, _) = context.start_until(&words, ATTACHED, 1)?;
    Ok(held)
}

/// Stops the loader with SIGTERM, expecting a clean exit and its counters,
/// which vary from run to run: the step keeps what was checked of them and
/// the exit info.
fn stop(context: &mut Context, held: Held) -> Result<Option<Counts>> {
    let step = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(step, Outcome::exited(exit::SUCCESS));
    let counts = context.expect_report::<Counts>(step, "the loader printed no counters");
    let exit_line = exit_line(context.step(step).stdout.as_str());
    context.replace_stdout(step, format!("counters read\n{exit_line}\n"));
    Ok(counts)
}

/// The exit info the loader printed (`EXIT: reason (message)`).
fn exit_line(stdout: &str) -> String {
    let line = stdout.lines().find(|line| line.starts_with("EXIT: "));
    line.unwrap_or("(no exit info)").to_owned()
}

/// Expects sched_ext disabled: no scheduler attached.
fn expect_disabled(context: &mut Context) -> Result<()> {
    let (step, state) = context.sched_ext_state()?;
    let action = context.step(step).action.clone();
    context.expect(
        state.state == "disabled",
        format!(
            "`{action}`: sched_ext should be disabled, it says {}",
            state.describe()
        ),
    );
    Ok(())
}

/// Two busy threads for half a second, expected on the ext class or not.
fn busy(context: &mut Context, on_ext: bool) -> Result<()> {
    let workload = Workload::busy(2).for_duration(Duration::from_millis(500));
    let (step, report) = context.run_workload(&workload)?;
    context.expect_outcome(step, Outcome::exited(0));
    let ran = report.threads.len();
    context.expect(ran == 2, format!("2 threads should have run, {ran} did"));
    let (expected, on) = (if on_ext { 2 } else { 0 }, report.on_class(SchedClass::Ext));
    context.expect(
        on == expected,
        format!("{expected} of the 2 threads should have run on the ext class; {on} did"),
    );
    Ok(())
}

fn attach(context: &mut Context) -> Result<()> {
    let held = hold(context, &[])?;
    context.expect_scheduler(NAME)?;
    stop(context, held)?;
    expect_disabled(context)
}

fn scheduled(context: &mut Context) -> Result<()> {
    let held = hold(context, &[])?;
    busy(context, true)?;
    if let Some(counts) = stop(context, held)? {
        context.expect(
            counts.enqueued > 0 && counts.dispatched > 0,
            format!("the scheduler should have queued and dispatched tasks: {counts:?}"),
        );
    }
    Ok(())
}

fn detach(context: &mut Context) -> Result<()> {
    let held = hold(context, &[])?;
    stop(context, held)?;
    expect_disabled(context)?;
    busy(context, false)
}

fn error_exit(context: &mut Context) -> Result<()> {
    let after = ERROR_AFTER_DISPATCHES.to_string();
    let held = hold(context, &["--error-after-dispatches", &after])?;
    // Every wakeup goes through the queue, so the guest's own tasks (the
    // loader polling, kernel workers) reach the count within seconds.
    let step = context.wait(held)?;
    context.expect_outcome(step, Outcome::exited(exit::EJECTED));
    let exit_line = exit_line(context.step(step).stdout.as_str());
    // The counters vary; the exit info is the kernel's.
    context.replace_stdout(step, format!("{exit_line}\n"));
    expect_disabled(context)
}

fn verifier_reject(context: &mut Context) -> Result<()> {
    let rejected = context.run_loader(&["load-rejected"])?;
    context.expect_outcome(rejected, Outcome::exited(exit::REJECTED_BY_VERIFIER));
    context.expect_stderr_contains(rejected, REJECTED_REASON);
    context.expect_stderr_contains(rejected, WRITE_RULE);
    expect_disabled(context)
}
