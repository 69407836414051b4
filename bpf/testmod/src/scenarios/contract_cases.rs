//! The contract between bpf_testmod_ops and its BPF implementations, each
//! case run by `struct_ops contract CASE` (contract.bpf.c): what the loader
//! printed of each step, and every line the kernel and the programs printed.

use anyhow::Result;
use harness::{case, Context, Outcome, Source, StepId};
use Source::{Bpf, Kernel};

use crate::contract::case as words;
use crate::contract::exit;

/// Runs one case; it must run every step and exit 0.
fn run_case(context: &mut Context, name: &str) -> Result<StepId> {
    let step = context.run_loader(&["contract", name])?;
    context.expect_outcome(step, Outcome::exited(exit::SUCCESS));
    Ok(step)
}

/// The step printed each of `lines`, and the kernel printed `kernel` lines
/// exactly, with the counts given, and nothing else.
fn expect_all(
    context: &mut Context,
    step: StepId,
    lines: &[String],
    kernel: &[(Source, &str, usize)],
) {
    for line in lines {
        context.expect_stdout_line(step, line);
    }
    for (source, text, times) in kernel {
        context.expect_lines(step, *source, text, *times);
    }
    let allowed: Vec<(Source, &str)> = kernel.iter().map(|(s, text, _)| (*s, *text)).collect();
    context.expect_only_lines(step, &allowed);
}

const REGISTERED: &str = "bpf_testmod_ops registered";
const UNREGISTERED: &str = "bpf_testmod_ops unregistered";
const CALLING: &str = "Calling struct_ops callbacks:";
const A_CALLED: &str = "A test_1 called";
const A_RETURNED: &str = "test_1() returned: 1";

/// Attached once, `triggers` triggers, each calling ops_a_test_1 (test_1
/// returns 1), detached: and `more`.
fn attached_a<'a>(
    triggers: usize,
    more: &[(Source, &'a str, usize)],
) -> Vec<(Source, &'a str, usize)> {
    let mut lines = vec![
        (Kernel, REGISTERED, 1),
        (Kernel, UNREGISTERED, 1),
        (Kernel, CALLING, triggers),
        (Bpf, A_CALLED, triggers),
        (Kernel, A_RETURNED, triggers),
    ];
    lines.extend_from_slice(more);
    lines
}

pub(super) fn link_update(context: &mut Context) -> Result<()> {
    let step = run_case(context, "link-update")?;
    let runs = |what, a, b| case::runs(what, &[("ops_a_test_1", a), ("ops_b_test_1", b)]);
    let lines = [
        runs(words::ATTACHED_A, 2, 0),
        runs(words::UPDATED_B, 2, 2),
        case::refused(words::UPDATE_UNLINKED, "EINVAL"),
        runs(words::AFTER_REFUSED, 2, 3),
        case::refused(words::REPLACE_WRONG_OLD, "EPERM"),
        case::done(words::REPLACE_RIGHT_OLD),
        runs(words::REPLACED_A, 3, 3),
    ];
    // test_2, test_3 and the rest are NULL in both: never called.
    let kernel = [
        (Kernel, REGISTERED, 1),
        (Kernel, "bpf_testmod_ops updated", 2),
        (Kernel, UNREGISTERED, 1),
        (Kernel, CALLING, 6),
        (Bpf, A_CALLED, 3),
        (Kernel, A_RETURNED, 3),
        (Bpf, "B test_1 called", 3),
        (Kernel, "test_1() returned: 2", 3),
    ];
    expect_all(context, step, &lines, &kernel);
    Ok(())
}

pub(super) fn reattach(context: &mut Context) -> Result<()> {
    let step = run_case(context, "reattach")?;
    let lines = [
        harness::case::polled(words::ATTACHED_ONCE, false),
        harness::case::polled(words::DETACHED, true),
        case::runs(words::ATTACHED_AGAIN, &[("ops_a_test_1", 2)]),
    ];
    let kernel = [
        (Kernel, REGISTERED, 2),
        (Kernel, UNREGISTERED, 2),
        (Kernel, CALLING, 2),
        (Bpf, A_CALLED, 2),
        (Kernel, A_RETURNED, 2),
        (Kernel, "No struct_ops registered", 1),
    ];
    expect_all(context, step, &lines, &kernel);
    Ok(())
}

pub(super) fn member_rules(context: &mut Context) -> Result<()> {
    let step = run_case(context, "member-rules")?;
    let lines = [
        case::refused(words::ATTACH_INCOMPLETE, "EINVAL"),
        case::refused(
            words::LOAD_RESERVED,
            "attach to unsupported member test_reserved of struct bpf_testmod_ops",
        ),
        case::refused(
            words::LOAD_FUTURE_SET,
            "libbpf: struct_ops init_kern ops_future_set: Cannot find member future_field in kernel BTF",
        ),
        case::runs(words::ATTACHED_FUTURE_ZERO, &[("ops_a_test_1", 1)]),
    ];
    let kernel = attached_a(1, &[(Kernel, "bpf_testmod_ops: test_1 is required", 1)]);
    expect_all(context, step, &lines, &kernel);
    Ok(())
}

pub(super) fn sleepable(context: &mut Context) -> Result<()> {
    let step = run_case(context, "sleepable")?;
    let lines = [
        case::refused(
            words::LOAD_SLEEPABLE_TEST_1,
            "attach to unsupported member test_1 of struct bpf_testmod_ops",
        ),
        case::runs(
            words::ATTACHED_SLEEPABLE,
            &[("sleepable_test_sleepable", 1)],
        ),
    ];
    let kernel = attached_a(
        1,
        &[
            (Bpf, "sleepable test_sleepable called with length 8", 1),
            (Kernel, "test_sleepable(8) returned: 8", 1),
        ],
    );
    expect_all(context, step, &lines, &kernel);
    Ok(())
}

pub(super) fn nullable(context: &mut Context) -> Result<()> {
    let step = run_case(context, "nullable")?;
    // The verifier names the register it refused, which follows the compiler.
    let refused = case::refused(words::LOAD_UNCHECKED, "");
    let said = context
        .step(step)
        .stdout
        .lines()
        .find(|line| line.starts_with(&refused));
    let reason_ok =
        said.is_some_and(|line| line.contains("invalid mem access") && line.contains("or_null_"));
    context.expect(
        reason_ok,
        format!("expected \"{refused}R<n> invalid mem access '..._or_null_'\", got {said:?}"),
    );
    let lines = [case::runs(
        words::ATTACHED_CHECKED,
        &[("checked_test_maybe_null", 2)],
    )];
    let kernel = attached_a(
        2,
        &[
            (Bpf, "test_maybe_null: no message", 1),
            (Kernel, "test_maybe_null(0, NULL) returned: -1", 1),
            (Bpf, "test_maybe_null: a message of 8 bytes", 1),
            (Kernel, "test_maybe_null(8, message) returned: 8", 1),
        ],
    );
    expect_all(context, step, &lines, &kernel);
    Ok(())
}

pub(super) fn kfunc(context: &mut Context) -> Result<()> {
    let step = run_case(context, "kfunc")?;
    let lines = [
        case::refused(
            words::LOAD_KFUNC_SYSCALL,
            "calling kernel function bpf_testmod_double is not allowed",
        ),
        case::runs(words::ATTACHED_KFUNC, &[("kfunc_test_2", 1)]),
    ];
    let kernel = attached_a(
        1,
        &[
            (Kernel, "bpf_testmod_double(30) called", 1),
            (Kernel, "test_2(10, 20) returned: 60", 1),
        ],
    );
    expect_all(context, step, &lines, &kernel);
    Ok(())
}
