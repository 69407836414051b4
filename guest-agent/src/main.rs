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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use guest_agent::catalogue::SCENARIOS;
use guest_agent::protocol::ScenarioResult;
use guest_agent::render::render_report;

#[derive(Parser)]
#[command(about = "Runs struct_ops scenarios inside the VM and reports the kernel's output")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario.
    Run(RunArgs),
    /// List the scenarios.
    List,
}

#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// The scenario to run (see `list`).
    #[arg(long)]
    scenario: String,
    /// The `struct_ops` loader binary.
    #[arg(long)]
    loader: PathBuf,
    /// The bpf_testmod.ko module.
    #[arg(long)]
    kmod: PathBuf,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Misbehave on purpose, as PID 1, so the harness's fault tests have a fault to detect.
    #[arg(long, value_enum, hide = true)]
    fault: Option<Fault>,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Exit as PID 1: the kernel panics ("Attempted to kill init").
    ExitInit,
    /// Never finish: the harness's timeout must end the VM.
    Hang,
    /// Power off without sending a result.
    NoResult,
    /// Try to write to the host's filesystem first and print what happened.
    WriteHost,
}

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
        let args = Cli::try_parse()
            .map_err(|err| err.to_string())
            .and_then(|cli| match cli.command {
                Command::Run(args) => Ok(args),
                Command::List => Err("as PID 1 the agent only runs a scenario".to_owned()),
            });
        init::run_as_init(args);
    }
    match Cli::parse().command {
        Command::List => {
            for scenario in SCENARIOS {
                println!("{:<24} {}", scenario.name, scenario.summary);
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            if let Err(err) = mounts::mount_filesystems(false) {
                eprintln!("guest-agent: {err:#}");
                return ExitCode::FAILURE;
            }
            let result = run_scenario(&args);
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
    }
}
