//! The scenario catalogue (see `guest_agent::catalogue`), each as a short
//! list of steps and the expectations that make it fail when the kernel,
//! the module or the BPF program misbehaves.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use guest_agent::catalogue;
use guest_agent::protocol::{ScenarioResult, Source, Source::Bpf, Source::Kernel};
use nix::sys::signal::Signal;

use crate::context::{Context, StepId};
use crate::loader::Loader;

const MESSAGE: &str = "Hello from userspace!";
/// Bound on the wait for the module's last reference after a detach.
const UNLOAD_LIMIT: Duration = Duration::from_secs(10);
const CYCLES: usize = 100;

/// Runs one scenario by name. Never panics: a scenario that cannot run is a failed result.
pub fn run(name: &str, loader: Loader, kmod: PathBuf) -> ScenarioResult {
    let Some(info) = catalogue::find(name) else {
        return ScenarioResult {
            scenario: name.to_owned(),
            failures: vec![format!(
                "no scenario named {name}; the scenarios are: {}",
                catalogue::names().collect::<Vec<_>>().join(", ")
            )],
            ..ScenarioResult::default()
        };
    };
    let mut context = match Context::new(name, loader, kmod) {
        Ok(context) => context,
        Err(err) => {
            return ScenarioResult {
                scenario: name.to_owned(),
                failures: vec![format!("setting up kernel output capture: {err:#}")],
                ..ScenarioResult::default()
            }
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_in(&mut context, info.name, info.needs_module)
    }));
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err),
        Err(_) => Some(anyhow::anyhow!("the scenario panicked")),
    };
    context.finish(error)
}

fn run_in(context: &mut Context, name: &str, needs_module: bool) -> Result<()> {
    if context.module_is_loaded() {
        // Left over from an earlier run under vng; every scenario starts from no module.
        crate::module::rmmod_within(UNLOAD_LIMIT)
            .map_err(|(errno, _)| anyhow::anyhow!("unloading a module left loaded: {errno}"))?;
    }
    if needs_module {
        let insmod = context.insmod()?;
        context.expect_line(insmod, Kernel, "bpf_testmod loaded with struct_ops support");
    }
    match name {
        "attach" => attach(context)?,
        "trigger" => trigger(context)?,
        "detach" => detach(context)?,
        "second_attach" => second_attach(context)?,
        "cycles" => cycles(context)?,
        "unload_while_attached" => unload_while_attached(context)?,
        "sigkill_loader" => sigkill_loader(context)?,
        "verifier_reject" => verifier_reject(context)?,
        "no_module" => no_module(context)?,
        "stress" => stress(context)?,
        other => bail!("scenario {other} is in the catalogue but has no implementation"),
    }
    if context.module_is_loaded() {
        // Every scenario ends with the module unloading cleanly.
        context.rmmod_within(UNLOAD_LIMIT, "the scenario")?;
    }
    Ok(())
}

/// The module's lines and the BPF program's lines for one trigger with `message`.
fn expect_one_trigger(context: &mut Context, step: StepId, message: &str) {
    context.expect_line(step, Kernel, "Calling struct_ops callbacks:");
    context.expect_line(step, Bpf, "BPF test_1 called!");
    context.expect_line(step, Kernel, "test_1() returned: 42");
    context.expect_line(step, Bpf, "BPF test_2 called: 10 + 20 = 30");
    context.expect_line(step, Kernel, "test_2(10, 20) returned: 30");
    let length = format!("BPF test_3 called with buffer length {}", message.len());
    context.expect_line(step, Bpf, &length);
    let first_four: String = message.chars().take(4).collect();
    context.expect_line(step, Bpf, &format!("Buffer content: '{first_four}'"));
    context.expect_line(step, Bpf, &format!("Full buffer: {message}"));
    context.expect_line(step, Kernel, "test_3() called with buffer");
}

fn attach(context: &mut Context) -> Result<()> {
    let (held, attached) = context.hold()?;
    context.expect_line(attached, Kernel, "bpf_testmod_ops registered");
    let detached = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(detached, "exit 0");
    context.expect_line(detached, Kernel, "bpf_testmod_ops unregistered");
    Ok(())
}

fn trigger(context: &mut Context) -> Result<()> {
    let once = context.struct_ops(&["once", "--message", MESSAGE])?;
    context.expect_outcome(once, "exit 0");
    context.expect_line(once, Kernel, "bpf_testmod_ops registered");
    expect_one_trigger(context, once, MESSAGE);
    context.expect_line(once, Kernel, "bpf_testmod_ops unregistered");
    Ok(())
}

fn detach(context: &mut Context) -> Result<()> {
    let (held, attached) = context.hold()?;
    context.expect_line(attached, Kernel, "bpf_testmod_ops registered");
    let triggered = context.struct_ops(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(triggered, "exit 0");
    expect_one_trigger(context, triggered, MESSAGE);
    let detached = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(detached, "exit 0");
    context.expect_line(detached, Kernel, "bpf_testmod_ops unregistered");
    let after = context.struct_ops(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(after, "exit 0");
    context.expect_line(after, Kernel, "No struct_ops registered");
    context.expect_lines(after, Bpf, "BPF test_1 called!", 0);
    Ok(())
}

fn second_attach(context: &mut Context) -> Result<()> {
    let (held, attached) = context.hold()?;
    context.expect_line(attached, Kernel, "bpf_testmod_ops registered");
    let second = context.struct_ops(&["once", "--message", MESSAGE])?;
    context.expect_outcome(second, "exit 17");
    context.expect_stderr_contains(second, "EEXIST");
    context.expect_lines(second, Kernel, "bpf_testmod_ops registered", 0);
    let triggered = context.struct_ops(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(triggered, "exit 0");
    expect_one_trigger(context, triggered, MESSAGE);
    let detached = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(detached, "exit 0");
    context.expect_line(detached, Kernel, "bpf_testmod_ops unregistered");
    Ok(())
}

fn cycles(context: &mut Context) -> Result<()> {
    let count = CYCLES.to_string();
    let cycles = context.struct_ops(&["cycles", "--count", &count, "--message", "cycle"])?;
    context.expect_outcome(cycles, "exit 0");
    context.summarise(cycles);
    for (source, line) in [
        (Kernel, "bpf_testmod_ops registered"),
        (Kernel, "Calling struct_ops callbacks:"),
        (Bpf, "BPF test_1 called!"),
        (Kernel, "test_1() returned: 42"),
        (Kernel, "test_2(10, 20) returned: 30"),
        (Bpf, "Full buffer: cycle"),
        (Kernel, "test_3() called with buffer"),
        (Kernel, "bpf_testmod_ops unregistered"),
    ] {
        context.expect_lines(cycles, source, line, CYCLES);
    }
    context.expect_lines(cycles, Kernel, "No struct_ops registered", 0);
    Ok(())
}

fn unload_while_attached(context: &mut Context) -> Result<()> {
    let (held, attached) = context.hold()?;
    context.expect_line(attached, Kernel, "bpf_testmod_ops registered");
    let refused = context.rmmod()?;
    let outcome = context.step(refused).outcome.clone();
    context.expect(
        outcome.starts_with("EAGAIN") || outcome.starts_with("EBUSY"),
        format!("rmmod while attached: expected the module to be in use (EAGAIN or EBUSY), got {outcome}"),
    );
    context.expect(
        context.module_is_loaded(),
        "the module was unloaded although rmmod was refused",
    );
    let detached = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(detached, "exit 0");
    context.expect_line(detached, Kernel, "bpf_testmod_ops unregistered");
    let unloaded = context.rmmod_within(UNLOAD_LIMIT, "detach")?;
    context.expect_line(unloaded, Kernel, "bpf_testmod unloaded");
    Ok(())
}

fn sigkill_loader(context: &mut Context) -> Result<()> {
    let (held, attached) = context.hold()?;
    context.expect_line(attached, Kernel, "bpf_testmod_ops registered");
    let killed = context.stop(held, Signal::SIGKILL)?;
    context.expect_outcome(killed, "killed by SIGKILL");
    // The link is released as the killed process's files close, before it is reaped.
    context.expect_line(killed, Kernel, "bpf_testmod_ops unregistered");
    let unloaded = context.rmmod_within(UNLOAD_LIMIT, "SIGKILL")?;
    context.expect_line(unloaded, Kernel, "bpf_testmod unloaded");
    Ok(())
}

fn verifier_reject(context: &mut Context) -> Result<()> {
    let rejected = context.struct_ops(&["load-rejected"])?;
    context.expect_outcome(rejected, "exit 4");
    context.expect_stderr_contains(
        rejected,
        "program of this type cannot use helper bpf_get_current_comm#16",
    );
    context.expect_lines(rejected, Kernel, "bpf_testmod_ops registered", 0);
    // A rejected load leaves nothing attached: the real program still attaches.
    let once = context.struct_ops(&["once", "--message", MESSAGE])?;
    context.expect_outcome(once, "exit 0");
    expect_one_trigger(context, once, MESSAGE);
    Ok(())
}

fn no_module(context: &mut Context) -> Result<()> {
    let triggered = context.struct_ops(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(triggered, "exit 3");
    context.expect_stderr_contains(triggered, "the bpf_testmod module is not loaded");
    context.expect_stderr_contains(triggered, "Load it with: insmod ");
    let attached = context.struct_ops(&["once", "--message", MESSAGE])?;
    context.expect_outcome(attached, "exit 3");
    context.expect_stderr_contains(attached, "the bpf_testmod module is not loaded");
    context.expect_stderr_contains(attached, "Load it with: insmod ");
    Ok(())
}

fn stress(context: &mut Context) -> Result<()> {
    let stress = context.struct_ops(&["stress", "--threads", "4", "--seconds", "3"])?;
    context.expect_outcome(stress, "exit 0");
    // The trace buffer may overrun under this load, so counts are only
    // required to be non-zero; but every line that did arrive must be one a
    // correct trigger, attach or detach prints. Splats are checked on the
    // full kernel log and the taint flags.
    let registered = context.count_lines(stress, Kernel, "bpf_testmod_ops registered");
    let calls = context.count_lines(stress, Kernel, "test_1() returned: 42");
    context.expect(registered > 0, "stress: no attach reached the module");
    context.expect(calls > 0, "stress: no trigger reached the BPF ops");
    let unexpected = context.lines_outside(stress, &STRESS_LINES);
    context.expect(
        unexpected.is_empty(),
        format!("stress: unexpected kernel output: {unexpected:?}"),
    );
    context.measure(format!(
        "stress: {registered} registrations and {calls} calls into the ops seen in the trace buffer"
    ));
    context.keep_out_of_snapshot(stress);
    Ok(())
}

/// Every line a correct kernel prints while the stress scenario runs.
const STRESS_LINES: [(Source, &str); 12] = [
    (Kernel, "bpf_testmod_ops registered"),
    (Kernel, "bpf_testmod_ops unregistered"),
    (Kernel, "Calling struct_ops callbacks:"),
    (Kernel, "No struct_ops registered"),
    (Bpf, "BPF test_1 called!"),
    (Kernel, "test_1() returned: 42"),
    (Bpf, "BPF test_2 called: 10 + 20 = 30"),
    (Kernel, "test_2(10, 20) returned: 30"),
    (Bpf, "BPF test_3 called with buffer length 6"),
    (Bpf, "Buffer content: 'stre'"),
    (Bpf, "Full buffer: stress"),
    (Kernel, "test_3() called with buffer"),
];
