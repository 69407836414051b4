//! The agent's entry points, for a subject's one binary to dispatch to: as
//! PID 1 (the harness boots the kernel with the binary as init) it mounts
//! what it needs, runs one command, sends the result to the host over a
//! virtio port and powers off; as a plain command (under `vng --exec`) it
//! runs the same scenario and prints the result.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use harness_wire::cli::{AgentCli, AgentCommand, RunArgs};

use crate::runtime::{init, mounts, net, run};
use crate::scenario::Subject;
use harness_wire::render::render_report;

/// PID 1: the words after `--` on the kernel command line are an agent
/// command line. Never returns: it powers the VM off.
pub fn run_as_init(subjects: &[&Subject], args: Vec<OsString>) -> ! {
    let command = AgentCli::try_parse_from(args)
        .map(|cli| cli.command)
        .map_err(|err| err.to_string());
    init::run_as_init(subjects, command)
}

/// The agent as a plain command: `args` are an agent command line
/// (`run --scenario NAME ...` or `list`).
pub fn run_as_command(subjects: &[&Subject], args: Vec<OsString>) -> ExitCode {
    match AgentCli::parse_from(args).command {
        AgentCommand::List => {
            print!("{}", list(subjects));
            ExitCode::SUCCESS
        }
        AgentCommand::Run(args) => run_scenario(subjects, &args),
        AgentCommand::Exec(_) | AgentCommand::Shell(_) => {
            eprintln!("guest-agent: exec and shell run as PID 1 (harness exec, harness shell)");
            ExitCode::FAILURE
        }
    }
}

/// One line per scenario: subject, scenario, summary.
pub(crate) fn list(subjects: &[&Subject]) -> String {
    let width = subjects
        .iter()
        .flat_map(|subject| subject.scenarios.iter().map(|scenario| scenario.name.len()))
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for subject in subjects {
        for scenario in subject.scenarios {
            text.push_str(&format!(
                "{:<12} {:<width$} {}\n",
                subject.name, scenario.name, scenario.summary
            ));
        }
    }
    text
}

/// Under vng: the filesystems are mostly there, the result goes to stdout.
fn run_scenario(subjects: &[&Subject], args: &RunArgs) -> ExitCode {
    let ready = mounts::mount_filesystems(false).and_then(|()| net::bring_up_loopback());
    if let Err(err) = ready {
        eprintln!("guest-agent: {err:#}");
        return ExitCode::FAILURE;
    }
    let mut passed = true;
    let mut send = |result: harness_wire::protocol::ScenarioResult| {
        passed &= result.passed;
        match args.json {
            true => println!("{}", result.to_json()),
            false => print!("{}", render_report(&result)),
        }
    };
    let reports = run::Reports {
        starts: &mut |_| {},
        send: &mut send,
    };
    let stopped = run::run_scenarios(subjects, args, reports);
    if let Some(reason) = stopped {
        eprintln!("guest-agent: stopped: {reason}");
    }
    match passed {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}
