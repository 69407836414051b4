//! The scenarios: each is declared once, in `SCENARIOS`, beside its steps
//! and expectations. A scheduler is held by the loader in the background
//! while the scenario looks at sched_ext and runs work on it; the kernel's
//! own `sched_ext:` lines (printed from its helper kthreads) join the
//! steps they happened in.

use std::time::Duration;

use anyhow::Result;
use harness::wire::workload::SchedClass;
use harness::{Context, ExitKind, Held, Outcome, Report, Scenario, Signal, StepId, Workload};

use crate::contract::{exit, QmapCounts, Scheduler, SimpleCounts, ATTACHED, QMAP, SIMPLE};

const fn scenario(
    name: &'static str,
    summary: &'static str,
    run: fn(&mut Context) -> Result<()>,
) -> Scenario {
    Scenario::new(name, summary, run)
}

/// What the watchdog says of a task that did not run (the first form), or
/// of its own work starved (the second), both "runnable task stall".
const STALLED: &str = r"failed to run for|watchdog failed to check in for";
/// 7.x's scx_qmap keeps its queues in a BPF arena; on the debug kernel
/// KASAN backs the arena's 4 GiB of kernel address space with 512 MiB of
/// shadow at once, more than a 512 MiB guest has (its loader was
/// OOM-killed in `arena_map_alloc`).
const QMAP_MEMORY_MIB: u32 = 2048;

pub(crate) const SCENARIOS: &[Scenario] = &[
    scenario("scx_simple_attach", "scx_simple attaches (sched_ext enabled, ops \"simple\"), then detaches when its loader stops (disabled, unregistered from user space)", simple_attach),
    scenario("scx_simple_scheduled", "busy threads run on the ext class under scx_simple, and its counters count their dispatches", simple_scheduled),
    scenario("scx_simple_detach", "once scx_simple detaches, threads run on the fair class again", simple_detach),
    scenario("scx_simple_numa", "scx_simple on 4 vCPUs in 2 NUMA nodes: attaches, schedules a thread per CPU, detaches", simple_numa).topology(4, 2),
    scenario("scx_qmap_scheduled", "yielding threads run on the ext class under scx_qmap, which counts its enqueues and dispatches", qmap_scheduled).memory(QMAP_MEMORY_MIB),
    scenario("scx_qmap_stall", "scx_qmap dropping every 2nd enqueue of a user task (its -t 2): the watchdog ejects it as a runnable task stall", qmap_stall).memory(QMAP_MEMORY_MIB).expects_exit(ExitKind::ErrorStall, STALLED),
    scenario("scx_qmap_dispatch_loop", "scx_qmap dispatching only kthreadd after 50 dispatches (its -l 50): the kernel ejects it as a runnable task stall", qmap_dispatch_loop).memory(QMAP_MEMORY_MIB).expects_exit(ExitKind::ErrorStall, STALLED),
    scenario("scx_qmap_error", "scx_qmap calling scx_bpf_error() after 100 enqueues (its -e 100): the kernel ejects it, naming the error", qmap_error).memory(QMAP_MEMORY_MIB).expects_exit(ExitKind::ErrorBpf, "^test triggering error$"),
];

/// Starts `loader hold SCHEDULER ARGS` and waits for it to attach.
fn hold(context: &mut Context, scheduler: Scheduler, args: &[&str]) -> Result<Held> {
    let mut words = vec!["hold", scheduler.name];
    words.extend(args);
    let (held, _) = context.start_until(&words, ATTACHED, 1)?;
    Ok(held)
}

/// Stops the loader with SIGTERM, expecting a clean exit and the report
/// `R` of its counters; the counters vary from run to run, so the step
/// keeps what was checked of them.
fn stop<R: Report>(
    context: &mut Context,
    held: Held,
    checked: &str,
) -> Result<(StepId, Option<R>)> {
    let step = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(step, Outcome::exited(exit::SUCCESS));
    let report = context.expect_report::<R>(step, "the loader printed no counters");
    let exit_line = context
        .step(step)
        .stdout
        .lines()
        .find(|line| line.starts_with("EXIT: "))
        .unwrap_or("(no exit info)")
        .to_owned();
    context.replace_stdout(step, format!("{checked}\n{exit_line}\n"));
    Ok((step, report))
}

/// `threads` busy threads for `duration`, expected on the ext class or not.
fn busy(context: &mut Context, threads: usize, on_ext: bool) -> Result<()> {
    let workload = Workload::busy(threads).for_duration(Duration::from_millis(500));
    let (step, report) = context.run_workload(&workload)?;
    context.expect_outcome(step, Outcome::exited(0));
    let ran = report.threads.len();
    let on_ext_count = report.on_class(SchedClass::Ext);
    context.expect(
        ran == threads,
        format!("{threads} threads should have run, {ran} did"),
    );
    let expected = if on_ext { threads } else { 0 };
    context.expect(
        on_ext_count == expected,
        format!("{expected} of the {threads} threads should have run on the ext class; {on_ext_count} did"),
    );
    Ok(())
}

fn simple_attach(context: &mut Context) -> Result<()> {
    let held = hold(context, SIMPLE, &[])?;
    context.expect_scheduler(SIMPLE.name)?;
    stop::<SimpleCounts>(context, held, "simple's counters read")?;
    let (step, state) = context.sched_ext_state()?;
    context.expect(
        state.state == "disabled",
        format!(
            "`{}`: sched_ext should be disabled",
            context.step(step).action
        ),
    );
    Ok(())
}

fn simple_scheduled(context: &mut Context) -> Result<()> {
    let held = hold(context, SIMPLE, &[])?;
    busy(context, 2, true)?;
    let (_, counts) = stop::<SimpleCounts>(context, held, "simple dispatched tasks both ways")?;
    if let Some(counts) = counts {
        context.expect(
            counts.local + counts.global > 0,
            "scx_simple dispatched no task",
        );
    }
    Ok(())
}

fn simple_detach(context: &mut Context) -> Result<()> {
    let held = hold(context, SIMPLE, &[])?;
    stop::<SimpleCounts>(context, held, "simple's counters read")?;
    busy(context, 2, false)?;
    Ok(())
}

fn simple_numa(context: &mut Context) -> Result<()> {
    let nodes = context.read_file(std::path::Path::new("/sys/devices/system/node/online"))?;
    let online = context.step(nodes).stdout.trim().to_owned();
    context.expect(
        online == "0-1",
        format!("the guest should see NUMA nodes 0-1, it sees {online:?}"),
    );
    let held = hold(context, SIMPLE, &[])?;
    context.expect_scheduler(SIMPLE.name)?;
    busy(context, 4, true)?;
    stop::<SimpleCounts>(context, held, "simple's counters read")?;
    Ok(())
}

fn qmap_scheduled(context: &mut Context) -> Result<()> {
    let held = hold(context, QMAP, &[])?;
    context.expect_scheduler(QMAP.name)?;
    let workload = Workload::yielding(2).for_duration(Duration::from_millis(500));
    let (step, report) = context.run_workload(&workload)?;
    context.expect_outcome(step, Outcome::exited(0));
    context.expect(
        report.on_class(SchedClass::Ext) == 2,
        "both yielding threads should have run on the ext class",
    );
    let (_, counts) = stop::<QmapCounts>(context, held, "qmap enqueued and dispatched tasks")?;
    if let Some(counts) = counts {
        context.expect(
            counts.enqueued > 0 && counts.dispatched > 0,
            format!("qmap should count enqueues and dispatches: {counts:?}"),
        );
    }
    Ok(())
}

/// Holds qmap with `args` and waits for the kernel to eject it: the loader
/// notices the exit and ends with its own code, printing the exit info.
fn ejected(context: &mut Context, args: &[&str]) -> Result<()> {
    let held = hold(context, QMAP, args)?;
    let step = context.wait(held)?;
    context.expect_outcome(step, Outcome::exited(exit::EJECTED));
    let exit_line = context
        .step(step)
        .stdout
        .lines()
        .find(|line| line.starts_with("EXIT: "))
        .unwrap_or("(no exit info)")
        .to_owned();
    // The counters vary; the exit info is the kernel's (its task and its
    // time are normalised).
    context.replace_stdout(step, format!("{exit_line}\n"));
    Ok(())
}

fn qmap_stall(context: &mut Context) -> Result<()> {
    ejected(context, &["--stall-user-nth", "2"])
}

fn qmap_dispatch_loop(context: &mut Context) -> Result<()> {
    ejected(context, &["--dispatch-loop-after", "50"])
}

fn qmap_error(context: &mut Context) -> Result<()> {
    ejected(context, &["--error-after", "100"])
}
