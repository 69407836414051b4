//! The guest agent. As PID 1 (the harness boots the kernel with it as init)
//! it mounts what it needs, runs one scenario, sends the result to the host
//! over a virtio port and powers off. As a plain command (under `vng --run
//! ... --exec`) it runs the same scenario and prints the result.

use std::process::ExitCode;

use clap::Parser;
use guest_agent::cli::{AgentCli, AgentCommand, RunArgs};
use guest_agent::render::render_report;
use guest_agent::runtime::{init, mounts, net, run};
use guest_agent::scenario;

fn main() -> ExitCode {
    if std::process::id() == 1 {
        // The kernel hands init the words after `--` on its command line.
        let command = AgentCli::try_parse()
            .map(|cli| cli.command)
            .map_err(|err| err.to_string());
        init::run_as_init(command);
    }
    match AgentCli::parse().command {
        AgentCommand::List => {
            for (subject, scenario) in scenario::all() {
                println!(
                    "{:<12} {:<24} {}",
                    subject.name, scenario.name, scenario.summary
                );
            }
            ExitCode::SUCCESS
        }
        AgentCommand::Run(args) => run_as_command(&args),
        AgentCommand::Exec(_) | AgentCommand::Shell(_) => {
            eprintln!("guest-agent: exec and shell run as PID 1 (harness exec, harness shell)");
            ExitCode::FAILURE
        }
    }
}

/// Under vng: the filesystems are mostly there, the result goes to stdout.
fn run_as_command(args: &RunArgs) -> ExitCode {
    let ready = mounts::mount_filesystems(false).and_then(|()| net::bring_up_loopback());
    if let Err(err) = ready {
        eprintln!("guest-agent: {err:#}");
        return ExitCode::FAILURE;
    }
    let result = run::run_scenario(args);
    if args.json {
        println!("{}", result.to_json());
    } else {
        print!("{}", render_report(&result));
    }
    if result.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
