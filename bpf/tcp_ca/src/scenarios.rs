//! The scenarios: each is declared once, in `SCENARIOS`, beside its steps
//! and expectations. They use loopback TCP only (the agent brings `lo` up),
//! through netem's loss and delay where the loss members must run.

mod contract_cases;

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use harness::{Context, Netem, Outcome, Scenario, Signal, Source::Kernel, StepId};

use crate::contract::{
    exit, is_available, ConnectReport, DetachWhileUsedReport, OnceReport, TransferReport,
    ALGORITHM, ATTACHED, AVAILABLE_PATH, REJECTED_PROGRAM, REJECTED_REASON_PREFIX,
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

/// Every member vmtest_reno implements: connections through reordering and
/// loss run them all, the loss members (ssthresh, set_state, undo_cwnd)
/// included.
const EVERY_MEMBER: &[&str] = &[
    "vmtest_reno_init",
    "vmtest_reno_release",
    "vmtest_reno_ssthresh",
    "vmtest_reno_cong_avoid",
    "vmtest_reno_undo_cwnd",
    "vmtest_reno_set_state",
    "vmtest_reno_cwnd_event",
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
    scenario("tcp_ca_loss", "through netem on lo, two connections run every member of vmtest_reno: reordering makes TCP suspect a loss (ssthresh) and undo (undo_cwnd), loss makes it retransmit and halve the window (ssthresh, set_state); the second sender's TCP_INFO shows retransmissions and a lower ssthresh", loss).exercises(EVERY_MEMBER),
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

/// netem on lo: each packet (data or ACK) waits NETEM_DELAY, so the round
/// trip is twice that. First every REORDER_EVERY-th packet leaves at once,
/// ahead of the delayed ones: TCP takes that for a loss (ssthresh), may retransmit, and
/// undoes its reaction when the original arrives (undo_cwnd). Then
/// LOSS_PERCENT of the packets are dropped: vmtest_reno halves its window
/// (ssthresh, set_state), and nothing undoes it. Apart, because undo also
/// reverts real losses' reductions in a connection with both, and a
/// reduced ssthresh is what the second one checks. How many times each
/// member ran is in the scenario's measurements (`harness run --json`).
const NETEM_DELAY: Duration = Duration::from_millis(5);
/// Rare enough that the connection stays smooth. A connection runs in one
/// of two ways for its whole life: smooth (the client paced, 300-500 ACKs
/// for the transfer, TCP taking 3 to 20 reorderings for a loss) or in
/// bursts (the client idle 15-35 times, about 150 ACKs, often no reordering
/// taken for a loss at all: the scenario's failure). Heavy reordering makes
/// the bursts: every 3rd packet, 12 of 16 runs had them; every 7th, 2 to 3
/// runs in 12 (the flake CI saw); every 13th, none in 44 (20 idle, 12 with
/// a boot each, 12 with both cores busy), each run taking 3 or more.
const REORDER_EVERY: u32 = 13;
/// Even so, a connection runs in bursts now and then (1 of 7 race-kernel
/// runs in a later measurement, after those 44), and which way one runs is
/// its own draw: the failing run's next connection, in the same VM, ran
/// smooth. So the reordered transfer runs up to this many connections, one
/// after another, until TCP has taken a reordering for a loss and undone
/// it; how many it took is in the measurements. vmtest_reno's ssthresh or
/// undo_cwnd never called fails every one of them.
const UNTIL_UNDO: u32 = 3;
const LOSS_PERCENT: f32 = 3.0;
/// Bytes each way: segments of TRANSFER_MSS, the sender paced to
/// TRANSFER_PACING bytes a second so that each packet holds two segments
/// (on loopback it would hold 45); enough for dozens of reorderings, and
/// for a loss to hit a dozen segments; a second or two each. A packet
/// netem lets through early may be an ACK rather than data, and a slow
/// kernel sends fewer packets a reordered one can overtake: with 300 kB,
/// one run in five on the 7.3 race kernel saw no reordering TCP took for
/// a loss.
const REORDERED_BYTES: u64 = 1_200_000;
const LOSS_BYTES: u64 = 800_000;
const TRANSFER_MSS: &str = "1448";
const TRANSFER_PACING: &str = "2000000";

fn loss(context: &mut Context) -> Result<()> {
    let reordered = Netem::on("lo")
        .delay(NETEM_DELAY)
        .reorder_every(REORDER_EVERY);
    context.netem(&reordered)?;
    let until_undo = UNTIL_UNDO.to_string();
    if let Some((step, report)) =
        transfer(context, REORDERED_BYTES, &["--until-undo", &until_undo])?
    {
        // Whether the retransmission left before the original's ACK undid
        // the reaction is the pacing's timing: seen both ways (a run with 4
        // undos and total_retrans 0). The suspected loss and its undo are not.
        let suspected = report.calls.ssthresh > 0;
        let undone = report.calls.undo_cwnd > 0;
        let figures = report.info.render();
        context.expect(
            suspected,
            format!("TCP never took the reordering for a loss (no ssthresh): {figures}"),
        );
        context.expect(
            undone,
            format!("undo_cwnd never ran through reordering: {figures}"),
        );
        let checked = format!(
            "taken for a loss (ssthresh ran): {}\nundo_cwnd ran: {}",
            yes(suspected),
            yes(undone)
        );
        checked_transfer(context, step, &report, checked);
    }
    let lossy = Netem::on("lo")
        .delay(NETEM_DELAY)
        .loss_percent(LOSS_PERCENT);
    context.netem(&lossy)?;
    if let Some((step, report)) = transfer(context, LOSS_BYTES, &[])? {
        let reduced = report.info.ssthresh_reduced();
        let reacted = report.calls.ssthresh > 0 && report.calls.set_state > 0;
        let retransmitted = report.info.retransmitted();
        let figures = report.info.render();
        context.expect(
            retransmitted,
            format!("the sender retransmitted nothing: {figures}"),
        );
        context.expect(
            reduced,
            format!("the sender's ssthresh never left its initial value: {figures}"),
        );
        context.expect(
            reacted,
            format!("ssthresh or set_state never ran: {:?}", report.calls),
        );
        let checked = format!(
            "retransmitted: {}\nssthresh and set_state ran: {}\nssthresh below its initial value: {}",
            yes(retransmitted),
            yes(reacted),
            yes(reduced)
        );
        checked_transfer(context, step, &report, checked);
    }
    Ok(())
}

/// `tcp_ca transfer` of `bytes` each way, expected to succeed with its
/// report (a missing one is a failure already recorded).
fn transfer(
    context: &mut Context,
    bytes: u64,
    extra: &[&str],
) -> Result<Option<(StepId, TransferReport)>> {
    let bytes = bytes.to_string();
    let mut args = vec![
        "transfer",
        "--bytes",
        &bytes,
        "--mss",
        TRANSFER_MSS,
        "--pacing",
        TRANSFER_PACING,
    ];
    args.extend(extra);
    let (step, report) = context.run_loader_for_report::<TransferReport>(&args)?;
    Ok(report.map(|report| (step, report)))
}

/// What every transfer must show (init and release once a connection),
/// then `checked` of its own; the counts, the TCP_INFO and how many
/// connections it took follow the network's draws, so they go to the
/// measurements and the step keeps what was checked of them.
fn checked_transfer(context: &mut Context, step: StepId, report: &TransferReport, checked: String) {
    let (calls, connections) = (report.calls, report.connections);
    let once = connections > 0 && calls.init == connections && calls.release == connections;
    context.expect(
        once,
        format!(
            "init and release should run once a connection, {connections} connections: {calls:?}"
        ),
    );
    let stdout = format!(
        "checked: {} bytes each way; init and release once a connection: {}\n{checked}",
        report.bytes,
        yes(once),
    );
    context.replace_stdout(step, stdout);
}

fn yes(holds: bool) -> &'static str {
    if holds {
        "yes"
    } else {
        "no"
    }
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
