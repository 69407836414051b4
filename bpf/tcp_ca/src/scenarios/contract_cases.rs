//! The contract between tcp_congestion_ops and BPF implementations of it,
//! each case run by `tcp_ca contract CASE` (contract.bpf.c): what the
//! loader printed of each step, and what the kernel printed.

use anyhow::Result;
use harness::{case, Context, Outcome, Source::Kernel, StepId};

use crate::contract::case as words;
use crate::contract::exit;

/// Runs one case; it must run every step and exit 0, printing each of `lines`.
fn run_case(context: &mut Context, name: &str, lines: &[String]) -> Result<StepId> {
    let step = context.run_loader(&["contract", name])?;
    context.expect_outcome(step, Outcome::exited(exit::SUCCESS));
    for line in lines {
        context.expect_stdout_line(step, line);
    }
    Ok(step)
}

/// The kernel printed nothing but `allowed` during the step.
fn expect_only(context: &mut Context, step: StepId, allowed: &[&str]) {
    let allowed: Vec<_> = allowed.iter().map(|text| (Kernel, *text)).collect();
    context.expect_only_lines(step, &allowed);
}

fn inits(what: &str, first: u64, second: u64) -> String {
    case::runs(what, &[("update_1_init", first), ("update_2_init", second)])
}

pub(super) fn link_update(context: &mut Context) -> Result<()> {
    let lines = [
        inits(words::ATTACHED_1, 1, 0),
        inits(words::UPDATED_2, 1, 1),
        case::refused(words::UPDATE_UNLINKED, "EINVAL"),
        inits(words::AFTER_REFUSED, 1, 2),
        case::refused(words::REPLACE_WRONG_OLD, "EPERM"),
        case::done(words::REPLACE_RIGHT_OLD),
        inits(words::REPLACED_1, 2, 2),
    ];
    let step = run_case(context, "link-update", &lines)?;
    expect_only(context, step, &[]);
    Ok(())
}

pub(super) fn reattach(context: &mut Context) -> Result<()> {
    let lines = [
        case::polled(words::ATTACHED_1, false),
        case::polled(words::DETACHED, true),
        case::refused(words::CONNECT_DETACHED, "ENOENT"),
        case::runs(words::ATTACHED_AGAIN, &[("update_1_init", 2)]),
    ];
    let step = run_case(context, "reattach", &lines)?;
    expect_only(context, step, &[]);
    Ok(())
}

pub(super) fn member_rules(context: &mut Context) -> Result<()> {
    let lines = [
        case::refused(words::ATTACH_INCOMPLETE, "EINVAL"),
        case::refused(
            words::LOAD_UNSUPPORTED,
            "attach to unsupported member get_info of struct tcp_congestion_ops",
        ),
    ];
    let step = run_case(context, "member-rules", &lines)?;
    let reason = "TCP: vmtest_incompl does not implement required ops";
    context.expect_line(step, Kernel, reason);
    expect_only(context, step, &[reason]);
    Ok(())
}
