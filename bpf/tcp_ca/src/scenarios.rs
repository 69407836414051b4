//! The scenarios: each is declared once, in `SCENARIOS`, beside its steps
//! and expectations. They use loopback TCP only (the agent brings `lo` up).

mod contract_cases;

use std::path::Path;

use anyhow::Result;
use harness::{Context, Outcome, Scenario, Signal, Source::Kernel, StepId};

use crate::contract::{
    exit, is_available, ConnectReport, DetachWhileUsedReport, OnceReport, ALGORITHM, ATTACHED,
    AVAILABLE_PATH, REJECTED_PROGRAM, REJECTED_REASON_PREFIX,
};

const fn scenario(
    name: &'static str,
    summary: &'static str,
    run: fn(&mut Context) -> Result<()>,
) -> Scenario {
    Scenario::new(name, summary, run)
}

/// What one connection with data both ways calls, every time.
const CONNECTION_OPS: &[&str] = &[
    "vmtest_reno_init",
    "vmtest_reno_release",
    "vmtest_reno_cong_avoid",
    "vmtest_reno_in_ack_event",
    "vmtest_reno_pkts_acked",
];

pub(crate) const SCENARIOS: &[Scenario] = &[
    scenario("tcp_ca_register", "attaching registers vmtest_reno in tcp_available_congestion_control; detaching removes it", register),
    scenario("tcp_ca_in_use", "a loopback connection selects vmtest_reno, 100 kB flow both ways, init and release run once, the other callbacks run", in_use).exercises(CONNECTION_OPS),
    scenario("tcp_ca_duplicate", "a second registration under the same name is refused with EEXIST; the first keeps working", duplicate),
    scenario("tcp_ca_detach_while_used", "detached while a socket uses it: the socket keeps working, the name is gone for new sockets", detach_while_used).exercises(CONNECTION_OPS),
    scenario("tcp_ca_link_update", "a link switches vmtest_update between two implementations, counting each one's connections; to a map without a link refused; a replace naming the wrong old map refused, the right one done", contract_cases::link_update).exercises(&["update_1_init", "update_2_init"]),
    scenario("tcp_ca_reattach", "attach, detach through the link (its fd reports POLLHUP, the name is gone), attach the same map again", contract_cases::reattach).exercises(&["update_1_init"]),
    scenario("tcp_ca_member_rules", "no ssthresh and no undo_cwnd: refused at attach, with the kernel's reason; a program for get_info refused at load", contract_cases::member_rules),
    scenario("tcp_ca_verifier_reject", "an implementation that writes a tcp_sock field it may not is refused, with the verifier's reason", verifier_reject),
];

/// 100 kB each way: enough for the congestion callbacks to run.
const BYTES: &str = "100000";

/// Reads the list of registered algorithms, expecting vmtest_reno in it or not.
fn expect_available(context: &mut Context, listed: bool) -> Result<StepId> {
    let step = context.read_file(Path::new(AVAILABLE_PATH))?;
    let found = is_available(&context.step(step).stdout, ALGORITHM);
    context.expect(
        found == listed,
        format!(
            "{AVAILABLE_PATH} should {}list {ALGORITHM}",
            if listed { "" } else { "not " }
        ),
    );
    Ok(step)
}

fn register(context: &mut Context) -> Result<()> {
    expect_available(context, false)?;
    let (held, _) = context.hold(ATTACHED)?;
    expect_available(context, true)?;
    let stopped = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(stopped, Outcome::exited(exit::SUCCESS));
    expect_available(context, false)?;
    Ok(())
}

fn in_use(context: &mut Context) -> Result<()> {
    let (once, report) =
        context.run_loader_for_report::<OnceReport>(&["once", "--bytes", BYTES])?;
    let Some(report) = report else {
        return Ok(());
    };
    let calls = report.calls;
    context.expect(report.bytes == 100_000, "100000 bytes each way");
    // One socket used the algorithm: one init, one release; the rest run as ACKs come.
    context.expect(
        calls.init == 1,
        format!("init ran {} times, not once", calls.init),
    );
    context.expect(
        calls.release == 1,
        format!("release ran {} times, not once", calls.release),
    );
    let traffic = [calls.cong_avoid, calls.pkts_acked, calls.in_ack_event];
    let ran = traffic.iter().all(|count| *count > 0);
    context.expect(
        ran,
        "cong_avoid, pkts_acked or in_ack_event never ran while data flowed",
    );
    // Their counts follow the traffic and vary from run to run; what was checked does not.
    let checked = format!(
        "checked: {} bytes each way; init {}, release {}; cong_avoid, pkts_acked and in_ack_event {}",
        report.bytes,
        calls.init,
        calls.release,
        if ran { "ran" } else { "did not all run" }
    );
    context.replace_stdout(once, checked);
    Ok(())
}

fn duplicate(context: &mut Context) -> Result<()> {
    let (held, _) = context.hold(ATTACHED)?;
    let second = context.run_loader(&["once", "--bytes", BYTES])?;
    context.expect_outcome(second, Outcome::exited(exit::ALREADY_REGISTERED));
    context.expect_stderr_contains(second, "EEXIST");
    context.expect_line(
        second,
        Kernel,
        &format!("TCP: {ALGORITHM} already registered or non-unique key"),
    );
    // The first registration still serves connections.
    context.run_loader_for_report::<ConnectReport>(&["connect", "--bytes", BYTES])?;
    let stopped = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(stopped, Outcome::exited(exit::SUCCESS));
    Ok(())
}

fn detach_while_used(context: &mut Context) -> Result<()> {
    let (used, report) = context.run_loader_for_report::<DetachWhileUsedReport>(&[
        "detach-while-used",
        "--bytes",
        BYTES,
    ])?;
    if let Some(report) = report {
        let went_on = report.pkts_acked_after > report.pkts_acked_at_detach;
        context.expect(
            went_on,
            "the socket's callbacks stopped running at the detach",
        );
        let once = report.init == 1 && report.release == 1;
        context.expect(once, "init and release should run once each");
        let checked = format!(
            "checked: {} bytes each way before and after the detach; pkts_acked {} after it; \
             init {}, release {}",
            report.bytes,
            if went_on { "went on" } else { "stopped" },
            report.init,
            report.release
        );
        context.replace_stdout(used, checked);
    }
    // The name is gone for new sockets.
    let connect = context.run_loader(&["connect", "--bytes", BYTES])?;
    context.expect_outcome(connect, Outcome::exited(exit::NOT_REGISTERED));
    context.expect_stderr_contains(connect, "ENOENT");
    expect_available(context, false)?;
    Ok(())
}

fn verifier_reject(context: &mut Context) -> Result<()> {
    let rejected = context.run_loader(&["load-rejected"])?;
    context.expect_outcome(rejected, Outcome::exited(exit::REJECTED_BY_VERIFIER));
    context.expect_stderr_contains(
        rejected,
        &format!("the verifier rejected {REJECTED_PROGRAM}: {REJECTED_REASON_PREFIX}"),
    );
    expect_available(context, false)?;
    Ok(())
}
