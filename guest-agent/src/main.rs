//! The guest agent. As PID 1 (the harness boots the kernel with it as init)
//! it mounts what it needs, runs one scenario, sends the result to the host
//! over a virtio port and powers off. As a plain command (under `vng --run
//! ... --exec`) it runs the same scenario and prints the result.

mod context;
mod init;
mod kernel_output;
mod loader;
mod module;
mod mounts;
mod scenarios;
mod taint;

use std::process::ExitCode;

use clap::Parser;
use guest_agent::catalogue::SCENARIOS;
use guest_agent::cli::{AgentCli, AgentCommand, RunArgs};
use guest_agent::protocol::ScenarioResult;
use guest_agent::render::render_report;

pub fn run_scenario(args: &RunArgs) -> ScenarioResult {
    let loader = loader::Loader {
        binary: args.loader.clone(),
        kmod: args.kmod.clone(),
    };
    scenarios::run(&args.scenario, loader, args.kmod.clone())
}

fn main() -> ExitCode {
    if std::process::id() == 1 {
        // The kernel hands init the words after `--` on its command line.
        let args = AgentCli::try_parse()
            .map_err(|err| err.to_string())
            .and_then(|cli| match cli.command {
                AgentCommand::Run(args) => Ok(args),
                AgentCommand::List => Err("as PID 1 the agent only runs a scenario".to_owned()),
            });
        init::run_as_init(args);
    }
    match AgentCli::parse().command {
        AgentCommand::List => {
            for scenario in SCENARIOS {
                println!("{:<24} {}", scenario.name, scenario.summary);
            }
            ExitCode::SUCCESS
        }
        AgentCommand::Run(args) => run_as_command(&args),
    }
}

/// Under vng: the filesystems are mostly there, the result goes to stdout.
fn run_as_command(args: &RunArgs) -> ExitCode {
    if let Err(err) = mounts::mount_filesystems(false) {
        eprintln!("guest-agent: {err:#}");
        return ExitCode::FAILURE;
    }
    let result = run_scenario(args);
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
