//! The agent's command line: the one contract between the host, which puts
//! it on the kernel command line (after `--`) or into a vng command, and the
//! agent, which parses it. Both sides use these types; no argv is built by hand.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "Runs struct_ops scenarios inside the VM and reports the kernel's output")]
pub struct AgentCli {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AgentCommand {
    /// Run one scenario.
    Run(RunArgs),
    /// List the scenarios.
    List,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// The scenario to run (see `list`).
    #[arg(long)]
    pub scenario: String,
    /// The `struct_ops` loader binary.
    #[arg(long)]
    pub loader: PathBuf,
    /// The bpf_testmod.ko module.
    #[arg(long)]
    pub kmod: PathBuf,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Misbehave on purpose, as PID 1, so the harness's fault tests have a fault to detect.
    #[arg(long, value_enum, hide = true)]
    pub fault: Option<Fault>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

impl AgentCommand {
    /// The words after the agent's binary name that make it run this command.
    pub fn argv(&self) -> Vec<String> {
        match self {
            AgentCommand::Run(args) => args.argv(),
            AgentCommand::List => vec!["list".to_owned()],
        }
    }
}

impl RunArgs {
    /// `run --scenario NAME --loader PATH --kmod PATH [--json] [--fault F]`.
    pub fn argv(&self) -> Vec<String> {
        let mut words = vec![
            "run".to_owned(),
            "--scenario".to_owned(),
            self.scenario.clone(),
            "--loader".to_owned(),
            self.loader.display().to_string(),
            "--kmod".to_owned(),
            self.kmod.display().to_string(),
        ];
        if self.json {
            words.push("--json".to_owned());
        }
        if let Some(fault) = self.fault {
            words.push("--fault".to_owned());
            words.push(fault.name().to_owned());
        }
        words
    }
}

impl Fault {
    /// The word that names this fault on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::ExitInit => "exit-init",
            Fault::Hang => "hang",
            Fault::NoResult => "no-result",
            Fault::WriteHost => "write-host",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[String]) -> AgentCommand {
        let argv = std::iter::once("guest-agent".to_owned()).chain(words.iter().cloned());
        AgentCli::try_parse_from(argv).unwrap().command
    }

    #[test]
    fn what_the_host_renders_the_agent_parses_back() {
        for fault in [None, Some(Fault::Hang), Some(Fault::WriteHost)] {
            for json in [false, true] {
                let command = AgentCommand::Run(RunArgs {
                    scenario: "trigger".to_owned(),
                    loader: "/w/target/release/struct_ops".into(),
                    kmod: "/c/kmod/0123/bpf_testmod.ko".into(),
                    json,
                    fault,
                });
                assert_eq!(parse(&command.argv()), command);
            }
        }
        assert_eq!(parse(&AgentCommand::List.argv()), AgentCommand::List);
    }

    #[test]
    fn every_fault_has_the_name_clap_gives_it() {
        for fault in Fault::value_variants() {
            let name = fault.to_possible_value().expect("not skipped");
            assert_eq!(fault.name(), name.get_name());
        }
    }
}
