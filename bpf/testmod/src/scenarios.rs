//! The scenarios: each is declared once, in `SCENARIOS`, beside the steps
//! and expectations below that make it fail when the kernel, the module or
//! the BPF program misbehaves.

mod contract_cases;

use anyhow::Result;
use harness::{Context, Errno, Held, Outcome, Scenario, Signal, Source, StepId, UNLOAD_LIMIT};
use Source::{Bpf, Kernel};

use crate::contract::{
    self, exit, ConcurrentAttachReport, MemberStormReport, ReleaseRaceReport, Report, StressReport,
    TriggerStormReport, UpdateRaceReport,
};

/// One of this subject's scenarios: they all start with the module loaded.
const fn scenario(
    name: &'static str,
    summary: &'static str,
    run: fn(&mut Context) -> Result<()>,
) -> Scenario {
    Scenario::new(name, summary, run).with_module()
}

/// Every op of the implementation: a scenario that triggers it calls each.
const ALL_OPS: &[&str] = &[
    "bpf_testmod_test_1",
    "bpf_testmod_test_2",
    "bpf_testmod_test_3",
];

pub(crate) const SCENARIOS: &[Scenario] = &[
    scenario("attach", "load and attach the BPF implementation; the module logs its registration", attach),
    scenario("trigger", "write to the proc file: test_1 returns 42, test_2(10, 20) returns 30, test_3 sees the buffer", trigger).exercises(ALL_OPS),
    scenario("detach", "attach, trigger, detach; the module logs unregistration and a later trigger finds no ops", detach).exercises(ALL_OPS),
    scenario("second_attach", "a second attach while one is attached is refused with EEXIST; the first keeps working", second_attach).exercises(ALL_OPS),
    scenario("cycles", "100 attach/trigger/detach cycles, every one checked", cycles),
    scenario("unload_while_attached", "unloading the module while attached is refused; after detach it unloads", unload_while_attached),
    scenario("sigkill_loader", "the loader killed with SIGKILL while attached: the link goes and the module unloads", sigkill_loader),
    scenario("verifier_reject", "a program calling a helper the ops do not hand out fails to load, with the verifier's reason", verifier_reject).exercises(ALL_OPS),
    Scenario::new(
        "no_module",
        "trigger and attach with no module loaded: the loader says so and how to fix it",
        no_module,
    ),
    scenario("ctx_write_rejected", "a program that writes its context (the kernel's arguments) fails to load, with the verifier's reason", ctx_write_rejected),
    scenario("long_message", "a 100-byte write: one call of each op, the message cut to the module's 63 bytes", long_message).exercises(ALL_OPS),
    scenario("concurrent_attach", "4 loader processes attach at once, each a fresh map, 20 rounds: each round exactly one registers, the rest get EEXIST", concurrent_attach).hunts_races(),
    scenario("release_race", "triggers race fresh skeletons loaded, attached, detached and freed; rmmod attempts race them and are refused", release_race).hunts_races(),
    scenario("tutorial_loader", "the tutorial's loader: attach, a trigger, two periodic triggers, Ctrl-C, a clean detach", tutorial_loader).exercises(ALL_OPS),
    scenario("stress", "triggers from many threads while attach/detach loops run: no oops, no splat, every call complete", stress).hunts_races(),
    scenario("update_race", "triggers from 2 threads while a link is attached, switched between two implementations (one calls the kfunc) 4 times and detached, in a loop: every call complete", update_race).hunts_races(),
    scenario("trigger_storm", "4 threads trigger for 2 s with nothing attached: every trigger finds no ops, nothing else is printed", trigger_storm).hunts_races(),
    scenario("member_storm", "4 threads trigger for 2 s while an implementation of every member is attached and detached in a loop: each trigger that finds it calls every member once (the kfunc too; the sleepable one after the RCU section, if it is still attached), each attach registers and unregisters once", member_storm).hunts_races().exercises(EVERY_MEMBER_PROGRAMS),
    scenario("link_update", "a link switches A to B with exact call counts; to a map without a link refused (B still called); a replace naming the wrong old map refused, the right one done", contract_cases::link_update).exercises(&["ops_a_test_1", "ops_b_test_1"]),
    scenario("reattach", "attach, detach through the link (its fd reports POLLHUP), attach the same map again", contract_cases::reattach).exercises(&["ops_a_test_1"]),
    scenario("member_rules", "no test_1: refused at attach by .validate; a program for the reserved member refused; a nonzero unknown field refused; NULL members never called", contract_cases::member_rules).exercises(&["ops_a_test_1"]),
    scenario("sleepable_member", "a sleepable program for test_1 refused; for test_sleepable it loads and runs", contract_cases::sleepable).exercises(&["sleepable_test_sleepable"]),
    scenario("nullable_argument", "test_maybe_null's __nullable argument read unchecked is refused; checked, it runs with NULL and with a message", contract_cases::nullable).exercises(&["checked_test_maybe_null"]),
    scenario("kfunc", "an op calls the module's kfunc; a syscall program calling it is refused", contract_cases::kfunc).exercises(&["kfunc_test_2"]),
];

const MESSAGE: &str = contract::DEFAULT_MESSAGE;
const UNLOADED_LINE: &str = crate::UNLOADED_LINE;
const CYCLES: usize = 100;

/// `struct_ops hold &`, which the module logs as a registration.
fn attach_and_hold(context: &mut Context) -> Result<Held> {
    let (held, attached) = context.hold(contract::HOLD_ATTACHED)?;
    context.expect_line(attached, Kernel, "bpf_testmod_ops registered");
    Ok(held)
}

/// SIGTERM to a held loader: it detaches and exits 0; the module logs it.
fn detach_held(context: &mut Context, held: Held) -> Result<StepId> {
    let detached = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(detached, Outcome::exited(exit::SUCCESS));
    context.expect_line(detached, Kernel, "bpf_testmod_ops unregistered");
    Ok(detached)
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
    let held = attach_and_hold(context)?;
    detach_held(context, held)?;
    Ok(())
}

fn trigger(context: &mut Context) -> Result<()> {
    let once = context.run_loader(&["once", "--message", MESSAGE])?;
    context.expect_outcome(once, Outcome::exited(exit::SUCCESS));
    context.expect_line(once, Kernel, "bpf_testmod_ops registered");
    expect_one_trigger(context, once, MESSAGE);
    context.expect_line(once, Kernel, "bpf_testmod_ops unregistered");
    Ok(())
}

fn detach(context: &mut Context) -> Result<()> {
    let held = attach_and_hold(context)?;
    let triggered = context.run_loader(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(triggered, Outcome::exited(exit::SUCCESS));
    expect_one_trigger(context, triggered, MESSAGE);
    detach_held(context, held)?;
    let after = context.run_loader(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(after, Outcome::exited(exit::SUCCESS));
    context.expect_line(after, Kernel, "No struct_ops registered");
    context.expect_lines(after, Bpf, "BPF test_1 called!", 0);
    Ok(())
}

fn second_attach(context: &mut Context) -> Result<()> {
    let held = attach_and_hold(context)?;
    let second = context.run_loader(&["once", "--message", MESSAGE])?;
    context.expect_outcome(second, Outcome::exited(exit::ALREADY_ATTACHED));
    context.expect_stderr_contains(second, "EEXIST");
    context.expect_lines(second, Kernel, "bpf_testmod_ops registered", 0);
    let triggered = context.run_loader(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(triggered, Outcome::exited(exit::SUCCESS));
    expect_one_trigger(context, triggered, MESSAGE);
    detach_held(context, held)?;
    Ok(())
}

fn cycles(context: &mut Context) -> Result<()> {
    let count = CYCLES.to_string();
    let cycles = context.run_loader(&["cycles", "--count", &count, "--message", "cycle"])?;
    context.expect_outcome(cycles, Outcome::exited(exit::SUCCESS));
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
    let held = attach_and_hold(context)?;
    let refused = context.rmmod()?;
    let outcome = &context.step(refused).outcome;
    let in_use = outcome.is_errno(Errno::EAGAIN) || outcome.is_errno(Errno::EBUSY);
    let what = format!(
        "rmmod while attached: expected the module to be in use (EAGAIN or EBUSY), got {outcome}"
    );
    context.expect(in_use, what);
    context.expect(
        context.module_is_loaded(),
        "the module was unloaded although rmmod was refused",
    );
    detach_held(context, held)?;
    let unloaded = context.rmmod_within(UNLOAD_LIMIT, "detach")?;
    context.expect_line(unloaded, Kernel, UNLOADED_LINE);
    Ok(())
}

fn sigkill_loader(context: &mut Context) -> Result<()> {
    let held = attach_and_hold(context)?;
    let killed = context.stop(held, Signal::SIGKILL)?;
    context.expect_outcome(
        killed,
        Outcome::Killed {
            signal: Signal::SIGKILL as i32,
        },
    );
    // The link is released as the killed process's files close, before it is reaped.
    context.expect_line(killed, Kernel, "bpf_testmod_ops unregistered");
    let unloaded = context.rmmod_within(UNLOAD_LIMIT, "SIGKILL")?;
    context.expect_line(unloaded, Kernel, UNLOADED_LINE);
    Ok(())
}

fn verifier_reject(context: &mut Context) -> Result<()> {
    let rejected = context.run_loader(&["load-rejected", "--program", "foreign-helper"])?;
    context.expect_outcome(rejected, Outcome::exited(exit::REJECTED_BY_VERIFIER));
    context.expect_stderr_contains(
        rejected,
        "program of this type cannot use helper bpf_skb_load_bytes#26",
    );
    context.expect_lines(rejected, Kernel, "bpf_testmod_ops registered", 0);
    // A rejected load leaves nothing attached: the real program still attaches.
    let once = context.run_loader(&["once", "--message", MESSAGE])?;
    context.expect_outcome(once, Outcome::exited(exit::SUCCESS));
    expect_one_trigger(context, once, MESSAGE);
    Ok(())
}

fn ctx_write_rejected(context: &mut Context) -> Result<()> {
    let rejected = context.run_loader(&["load-rejected", "--program", "ctx-write"])?;
    context.expect_outcome(rejected, Outcome::exited(exit::REJECTED_BY_VERIFIER));
    context.expect_stderr_contains(rejected, "invalid bpf_context access off=0 size=8");
    context.expect_lines(rejected, Kernel, "bpf_testmod_ops registered", 0);
    Ok(())
}

/// 100 bytes, more than the module's 64-byte buffer takes.
fn long_text() -> String {
    (0..100)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

fn long_message(context: &mut Context) -> Result<()> {
    let message = long_text();
    let once = context.run_loader(&["once", "--message", &message])?;
    context.expect_outcome(once, Outcome::exited(exit::SUCCESS));
    // One write, one call of each op: the message is cut, not sent twice.
    context.expect_line(once, Kernel, "trigger: message of 100 bytes cut to 63");
    context.expect_line(once, Kernel, "Calling struct_ops callbacks:");
    context.expect_line(once, Kernel, "test_1() returned: 42");
    context.expect_line(once, Kernel, "test_2(10, 20) returned: 30");
    context.expect_line(once, Bpf, "BPF test_3 called with buffer length 63");
    context.expect_line(once, Bpf, &format!("Full buffer: {}", &message[..63]));
    context.expect_line(once, Kernel, "test_3() called with buffer");
    Ok(())
}

fn no_module(context: &mut Context) -> Result<()> {
    let triggered = context.run_loader(&["trigger", "--message", MESSAGE])?;
    context.expect_outcome(triggered, Outcome::exited(exit::MODULE_NOT_LOADED));
    context.expect_stderr_contains(triggered, "the bpf_testmod module is not loaded");
    context.expect_stderr_contains(triggered, "Load it with: insmod ");
    let attached = context.run_loader(&["once", "--message", MESSAGE])?;
    context.expect_outcome(attached, Outcome::exited(exit::MODULE_NOT_LOADED));
    context.expect_stderr_contains(attached, "the bpf_testmod module is not loaded");
    context.expect_stderr_contains(attached, "Load it with: insmod ");
    Ok(())
}

fn stress(context: &mut Context) -> Result<()> {
    let (stress, report) = context.run_loader_for_report::<StressReport>(&[
        "stress",
        "--threads",
        "4",
        "--seconds",
        "3",
    ])?;
    if let Some(report) = report {
        expect_every_call_complete(context, stress, report.cycles, report.triggers);
    }
    context.keep_out_of_snapshot(stress);
    Ok(())
}

fn trigger_storm(context: &mut Context) -> Result<()> {
    let args = ["trigger-storm", "--threads", "4", "--seconds", "2"];
    let (storm, report) = context.run_loader_for_report::<TriggerStormReport>(&args)?;
    if let Some(report) = report {
        let (source, text) = NO_OPS;
        let no_ops = context.count_lines(storm, source, text) as u64;
        context.expect(
            report.triggers > 0 && no_ops == report.triggers,
            format!("{} triggers, but {no_ops} \"{text}\"", report.triggers),
        );
        context.expect_only_lines(storm, &[NO_OPS]);
        context.measure(format!("{} triggers, none found ops", report.triggers));
    }
    context.keep_out_of_snapshot(storm);
    Ok(())
}

fn member_storm(context: &mut Context) -> Result<()> {
    let args = ["member-storm", "--threads", "4", "--seconds", "2"];
    let (storm, report) = context.run_loader_for_report::<MemberStormReport>(&args)?;
    if let Some(report) = report {
        expect_every_member_complete(context, storm, report);
    }
    context.keep_out_of_snapshot(storm);
    Ok(())
}

/// `member_storm`'s lines add up ([`expect_calls_add_up`]), with every
/// member in the RCU section; the sleepable member, called after that
/// section, prints its two lines together.
fn expect_every_member_complete(context: &mut Context, step: StepId, report: MemberStormReport) {
    let MemberStormReport {
        cycles, triggers, ..
    } = report;
    let (calls, no_ops) =
        expect_calls_add_up(context, step, (cycles, triggers), &EVERY_MEMBER_CALL);
    let count = |(source, text): &(Source, &str)| context.count_lines(step, *source, text) as u64;
    let (sleepable, returned) = (count(&SLEEPABLE_CALL[0]), count(&SLEEPABLE_CALL[1]));
    context.expect(
        sleepable > 0 && sleepable == returned && sleepable <= triggers,
        format!(
            "{triggers} triggers, {sleepable} calls of the sleepable member and {returned} \
             of its returns"
        ),
    );
    let allowed = [
        &ONCE_PER_CYCLE[..],
        &EVERY_MEMBER_CALL,
        &[NO_OPS],
        &SLEEPABLE_CALL,
    ]
    .concat();
    context.expect_only_lines(step, &allowed);
    context.measure(format!(
        "{cycles} attaches, {triggers} triggers: {calls} calls through every member, \
         {no_ops} without ops, {sleepable} sleepable calls"
    ));
}

/// The programs of `ops_every`, which implements every member the module
/// calls (`member_storm`).
const EVERY_MEMBER_PROGRAMS: &[&str] = &[
    "ops_b_test_1",
    "kfunc_test_2",
    "every_test_3",
    "checked_test_maybe_null",
    "sleepable_test_sleepable",
];

/// What a trigger (writing "stress", 6 bytes) prints when it finds
/// `ops_every` attached: a call of every member in the RCU section.
const EVERY_MEMBER_CALL: [(Source, &str); 9] = [
    (Kernel, "Calling struct_ops callbacks:"),
    (Bpf, "B test_1 called"),
    (Kernel, "test_1() returned: 2"),
    (Kernel, "bpf_testmod_double(30) called"),
    (Kernel, "test_2(10, 20) returned: 60"),
    (Bpf, "every test_3 called with length 6"),
    (Kernel, "test_3() called with buffer"),
    (Bpf, "test_maybe_null: a message of 6 bytes"),
    (Kernel, "test_maybe_null(6, message) returned: 6"),
];

/// What a trigger prints for `ops_every`'s sleepable member, called after
/// the RCU section whenever an implementation is attached then.
const SLEEPABLE_CALL: [(Source, &str); 2] = [
    (Bpf, "sleepable test_sleepable called with length 6"),
    (Kernel, "test_sleepable(6) returned: 6"),
];

fn release_race(context: &mut Context) -> Result<()> {
    let args = ["release-race", "--threads", "2", "--seconds", "3"];
    let (race, report) = context.run_loader_for_report::<ReleaseRaceReport>(&args)?;
    if let Some(report) = report {
        context.expect(
            report.rmmod_refused > 0,
            "release_race: no rmmod attempt raced a live map",
        );
        expect_every_call_complete(context, race, report.cycles, report.triggers);
    }
    context.keep_out_of_snapshot(race);
    Ok(())
}

fn update_race(context: &mut Context) -> Result<()> {
    let args = [
        "update-race",
        "--threads",
        "2",
        "--updates",
        "4",
        "--seconds",
        "3",
    ];
    let (race, report) = context.run_loader_for_report::<UpdateRaceReport>(&args)?;
    if let Some(report) = report {
        expect_every_update_complete(context, race, report);
    }
    context.keep_out_of_snapshot(race);
    Ok(())
}

/// After triggers raced attaches, link updates and detaches: every attach
/// registered and was unregistered, every update logged, every trigger found
/// no ops or ran exactly one of the two implementations' test_1 (and, for
/// B, its test_2 and the kfunc once), and nothing else was printed.
fn expect_every_update_complete(context: &mut Context, step: StepId, report: UpdateRaceReport) {
    let count = |text| context.count_lines(step, Kernel, text) as u64;
    let (cycles, updates) = (report.cycles, report.updates);
    let expected = [
        ("bpf_testmod_ops registered", cycles),
        ("bpf_testmod_ops unregistered", cycles),
        ("bpf_testmod_ops updated", updates),
    ];
    let found: Vec<(&str, u64, u64)> = (expected.iter())
        .map(|&(text, wanted)| (text, wanted, count(text)))
        .collect();
    let calls = count("Calling struct_ops callbacks:");
    let (by_a, by_b) = (count("test_1() returned: 1"), count("test_1() returned: 2"));
    let (no_ops, triggers) = (count("No struct_ops registered"), report.triggers);
    let bpf = |text| context.count_lines(step, Bpf, text) as u64;
    let (ran_a, ran_b) = (bpf("A test_1 called"), bpf("B test_1 called"));
    let kfunc = (count(KFUNC_RETURNED), count(KFUNC_CALLED));
    context.expect(
        cycles > 0 && updates > 0,
        "no attach or update reached the module",
    );
    for (text, wanted, found) in found {
        context.expect(
            found == wanted,
            format!("{wanted} expected, but {found} \"{text}\""),
        );
    }
    context.expect(calls > 0, "no trigger reached the BPF ops");
    context.expect(
        by_a + by_b == calls && calls + no_ops == triggers,
        format!(
            "{triggers} triggers: {calls} calls ({by_a} to A, {by_b} to B), {no_ops} without ops"
        ),
    );
    context.expect(
        (ran_a, ran_b) == (by_a, by_b),
        format!("A ran {ran_a} times and B {ran_b}, but the module saw {by_a} and {by_b}"),
    );
    context.expect(
        kfunc == (by_b, by_b),
        format!(
            "B, which calls the kfunc, ran {by_b} times, but test_2 returned {} times and the kfunc ran {}",
            kfunc.0, kfunc.1
        ),
    );
    context.expect_only_lines(step, &UPDATE_RACE_LINES);
    context.measure(format!(
        "{cycles} attaches, {updates} updates, {triggers} triggers: {calls} calls, {no_ops} without ops"
    ));
}

/// What a call of `update_race`'s B prints besides its test_1: its test_2
/// calls the kfunc with 10 + 20.
const KFUNC_RETURNED: &str = "test_2(10, 20) returned: 60";
const KFUNC_CALLED: &str = "bpf_testmod_double(30) called";

/// Every line a correct kernel prints while triggers race `update_race`.
const UPDATE_RACE_LINES: [(Source, &str); 11] = [
    (Kernel, "Calling struct_ops callbacks:"),
    (Kernel, "test_1() returned: 1"),
    (Kernel, "test_1() returned: 2"),
    (Kernel, KFUNC_RETURNED),
    (Kernel, KFUNC_CALLED),
    (Bpf, "A test_1 called"),
    (Bpf, "B test_1 called"),
    ONCE_PER_CYCLE[0],
    ONCE_PER_CYCLE[1],
    (Kernel, "bpf_testmod_ops updated"),
    NO_OPS,
];

/// After triggers raced attaches and detaches, with nothing lost
/// ([`expect_calls_add_up`]: the module's RCU section keeps a detached
/// implementation alive until its calls return), and nothing else printed.
fn expect_every_call_complete(context: &mut Context, step: StepId, cycles: u64, triggers: u64) {
    let (calls, no_ops) = expect_calls_add_up(context, step, (cycles, triggers), &TRIGGER_LINES);
    let allowed = [&TRIGGER_LINES[..], &ONCE_PER_CYCLE, &[NO_OPS]].concat();
    context.expect_only_lines(step, &allowed);
    context.measure(format!(
        "{cycles} attaches, {triggers} triggers: {calls} calls into the ops, {no_ops} without ops"
    ));
}

/// The counts a scenario checks after `triggers` raced `cycles` attaches
/// and detaches of one implementation: each attach registered and was
/// unregistered once; each trigger either printed every line of
/// `per_call` once (the first opens a call) or found nothing attached.
/// Returns the calls and the triggers without ops.
fn expect_calls_add_up(
    context: &mut Context,
    step: StepId,
    (cycles, triggers): (u64, u64),
    per_call: &[(Source, &str)],
) -> (u64, u64) {
    let count = |context: &Context, (source, text): &(Source, &str)| {
        context.count_lines(step, *source, text) as u64
    };
    for line in &ONCE_PER_CYCLE {
        let found = count(context, line);
        let (source, text) = line;
        context.expect(
            found == cycles,
            format!("{cycles} attaches, but {found} [{source:?}] \"{text}\""),
        );
    }
    let calls = count(context, &per_call[0]);
    context.expect(calls > 0, "no trigger reached the BPF ops");
    for line in &per_call[1..] {
        let found = count(context, line);
        let (source, text) = line;
        context.expect(
            found == calls,
            format!("{calls} calls into the ops, but {found} [{source:?}] \"{text}\""),
        );
    }
    let no_ops = count(context, &NO_OPS);
    context.expect(
        calls + no_ops == triggers,
        format!("{triggers} triggers, but {calls} calls into the ops and {no_ops} without ops"),
    );
    (calls, no_ops)
}

/// What the module prints once for each attach and detach.
const ONCE_PER_CYCLE: [(Source, &str); 2] = [
    (Kernel, "bpf_testmod_ops registered"),
    (Kernel, "bpf_testmod_ops unregistered"),
];

/// What a trigger prints when nothing is attached.
const NO_OPS: (Source, &str) = (Kernel, "No struct_ops registered");

/// What one trigger of the `stress` message prints when ops are attached.
const TRIGGER_LINES: [(Source, &str); 9] = [
    (Kernel, "Calling struct_ops callbacks:"),
    (Bpf, "BPF test_1 called!"),
    (Kernel, "test_1() returned: 42"),
    (Bpf, "BPF test_2 called: 10 + 20 = 30"),
    (Kernel, "test_2(10, 20) returned: 30"),
    (Bpf, "BPF test_3 called with buffer length 6"),
    (Bpf, "Buffer content: 'stre'"),
    (Bpf, "Full buffer: stress"),
    (Kernel, "test_3() called with buffer"),
];

const RACE_PROCESSES: u64 = 4;
const RACE_ROUNDS: u64 = 20;

fn concurrent_attach(context: &mut Context) -> Result<()> {
    let (processes, rounds) = (RACE_PROCESSES.to_string(), RACE_ROUNDS.to_string());
    let args = [
        "concurrent-attach",
        "--processes",
        &processes,
        "--rounds",
        &rounds,
    ];
    let race = context.run_loader(&args)?;
    context.expect_outcome(race, Outcome::exited(exit::SUCCESS));
    context.summarise(race);
    let expected = ConcurrentAttachReport {
        rounds: RACE_ROUNDS,
        processes: RACE_PROCESSES,
        attached: RACE_ROUNDS,
        refused: RACE_ROUNDS * (RACE_PROCESSES - 1),
    };
    let report = ConcurrentAttachReport::find_in(&context.step(race).stdout);
    context.expect(
        report == Some(expected),
        format!(
            "expected the report \"{}\", got {report:?}",
            expected.render()
        ),
    );
    let rounds = RACE_ROUNDS as usize;
    context.expect_lines(race, Kernel, "bpf_testmod_ops registered", rounds);
    context.expect_lines(race, Kernel, "bpf_testmod_ops unregistered", rounds);
    context.expect_only_lines(race, &ONCE_PER_CYCLE);
    Ok(())
}

/// The tutorial's own loader, run as its readers would: attach, a first
/// trigger, periodic triggers every 2 s, Ctrl-C, a clean detach.
fn tutorial_loader(context: &mut Context) -> Result<()> {
    let (running, started) = context.start_until(&[], contract::TUTORIAL_PERIODIC, 2)?;
    context.expect_line(started, Kernel, "bpf_testmod_ops registered");
    // The first trigger, then two periodic ones: three calls of each op.
    for (source, text) in &TRIGGER_LINES {
        if !text.contains("buffer") && !text.contains("Buffer") {
            context.expect_lines(started, *source, text, 3);
        }
    }
    context.expect_lines(started, Kernel, "test_3() called with buffer", 3);
    context.expect_line(started, Bpf, &format!("Full buffer: {MESSAGE}"));
    let periodic = format!("Full buffer: {}", contract::TUTORIAL_PERIODIC_MESSAGE);
    context.expect_lines(started, Bpf, &periodic, 2);
    let stopped = context.stop(running, Signal::SIGINT)?;
    context.expect_outcome(stopped, Outcome::exited(exit::SUCCESS));
    context.expect_line(stopped, Kernel, "bpf_testmod_ops unregistered");
    context.expect_lines(stopped, Kernel, "Calling struct_ops callbacks:", 0);
    Ok(())
}
