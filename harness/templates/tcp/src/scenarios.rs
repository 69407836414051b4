//! The scenarios: each declared once, beside its steps and expectations.

use std::path::Path;

use anyhow::Result;
use harness::exit;
use harness::{Context, Outcome, Scenario, Signal};

use crate::contract::{connect_report, ALGORITHM, AVAILABLE_PATH, HOLD_ATTACHED, REJECTED_REASON};

pub(crate) const SCENARIOS: &[Scenario] = &[
    Scenario::new("register", "attaching lists the algorithm in tcp_available_congestion_control; detaching removes it", register),
    Scenario::new("connect", "a loopback connection that selects the algorithm runs its init once and, once closed, its release once", connect),
    Scenario::new("verifier_reject", "an implementation that writes a tcp_sock field it may not is refused, with the verifier's reason", verifier_reject),
];

/// Reads the list of registered algorithms, expecting the algorithm in it or not.
fn expect_available(context: &mut Context, listed: bool) -> Result<()> {
    let step = context.read_file(Path::new(AVAILABLE_PATH))?;
    let found = context
        .step(step)
        .stdout
        .split_whitespace()
        .any(|name| name == ALGORITHM);
    context.expect(
        found == listed,
        format!(
            "{AVAILABLE_PATH} should {}list {ALGORITHM}",
            if listed { "" } else { "not " }
        ),
    );
    Ok(())
}

fn register(context: &mut Context) -> Result<()> {
    expect_available(context, false)?;
    let (held, _) = context.hold(HOLD_ATTACHED)?;
    expect_available(context, true)?;
    let stopped = context.stop(held, Signal::SIGTERM)?;
    context.expect_outcome(stopped, Outcome::exited(exit::SUCCESS));
    expect_available(context, false)
}

fn connect(context: &mut Context) -> Result<()> {
    let connected = context.run_loader(&["connect"])?;
    context.expect_outcome(connected, Outcome::exited(exit::SUCCESS));
    let report = connect_report(1, 1);
    let stdout = &context.step(connected).stdout;
    let what = format!(
        "expected \"{report}\", the loader printed: {}",
        stdout.trim()
    );
    context.expect(stdout.lines().any(|line| line == report), what);
    expect_available(context, false)
}

fn verifier_reject(context: &mut Context) -> Result<()> {
    let rejected = context.run_loader(&["load-rejected"])?;
    context.expect_outcome(rejected, Outcome::exited(exit::REJECTED_BY_VERIFIER));
    context.expect_stderr_contains(rejected, REJECTED_REASON);
    expect_available(context, false)
}
