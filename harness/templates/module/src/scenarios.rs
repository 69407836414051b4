//! The scenarios: each declared once, beside its steps and expectations.

use std::path::Path;

use anyhow::Result;
use harness::exit;
use harness::{Context, Outcome, Scenario, Signal, Source::Bpf, Source::Kernel};

use crate::contract::{HOLD_ATTACHED, REJECTED_REASON, TRIGGER_PATH};

pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario::new(
        "attach_and_trigger",
        "attached, a trigger calls op_1 and op_2 exactly once each",
        attach_and_trigger,
    )
    .with_module()
    .exercises(&["@NAME@_op_1", "@NAME@_op_2"]),
    Scenario::new(
        "verifier_reject",
        "a program calling a helper the ops do not hand out is refused, with the verifier's reason",
        verifier_reject,
    )
    .with_module(),
    Scenario::new(
        "detach",
        "after the loader detaches, a trigger finds no ops and calls nothing",
        detach,
    )
    .with_module(),
];

fn attach_and_trigger(context: &mut Context) -> Result<()> {
    let (held, attached) = context.hold(HOLD_ATTACHED)?;
    context.expect_line(attached, Kernel, "@NAME@_ops registered");
    let trigger = context.write_file(Path::new(TRIGGER_PATH), "go")?;
    context.expect_outcome(trigger, Outcome::Ok);
    context.expect_lines(trigger, Bpf, "@NAME@ op_1 called", 1);
    context.expect_lines(trigger, Kernel, "op_1() returned: 42", 1);
    context.expect_lines(trigger, Bpf, "@NAME@ op_2 called: 10 + 20", 1);
    context.expect_lines(trigger, Kernel, "op_2(10, 20) returned: 30", 1);
    let stopped = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(stopped, Outcome::exited(exit::SUCCESS));
    context.expect_line(stopped, Kernel, "@NAME@_ops unregistered");
    Ok(())
}

fn verifier_reject(context: &mut Context) -> Result<()> {
    let rejected = context.run_loader(&["load-rejected"])?;
    context.expect_outcome(rejected, Outcome::exited(exit::REJECTED_BY_VERIFIER));
    context.expect_stderr_contains(rejected, REJECTED_REASON);
    context.expect_lines(rejected, Kernel, "@NAME@_ops registered", 0);
    Ok(())
}

fn detach(context: &mut Context) -> Result<()> {
    let (held, _) = context.hold(HOLD_ATTACHED)?;
    let stopped = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(stopped, Outcome::exited(exit::SUCCESS));
    context.expect_line(stopped, Kernel, "@NAME@_ops unregistered");
    let trigger = context.write_file(Path::new(TRIGGER_PATH), "go")?;
    context.expect_line(trigger, Kernel, "No @NAME@_ops registered");
    context.expect_lines(trigger, Bpf, "@NAME@ op_1 called", 0);
    Ok(())
}
