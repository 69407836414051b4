//! The agent's command line: the one contract between the host, which puts
//! it on the kernel command line (after `--`) or into a vng command, and the
//! agent, which parses it. Both sides use these types; no argv is built by hand.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// The host's per-VM timeout unless it is given another (`--timeout`), in
/// seconds: counted again from each scenario's result. The agent's loader
/// commands get a share of it ([`RunArgs::vm_timeout`]).
pub const DEFAULT_VM_TIMEOUT_SECS: u64 = 120;

/// The agent's whole command line: one subcommand.
#[derive(Debug, Parser)]
#[command(about = "Runs struct_ops scenarios inside the VM and reports the kernel's output")]
pub struct AgentCli {
    /// What the agent is to do.
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// The agent's subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AgentCommand {
    /// Run one scenario.
    Run(RunArgs),
    /// Run a command (as PID 1: its output streamed to the host, its exit code reported).
    Exec(ExecArgs),
    /// An interactive root shell on the console.
    Shell(ShellArgs),
    /// List the scenarios.
    List,
}

/// The options of `exec`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ExecArgs {
    /// Load this module first (repeat for several).
    #[arg(long)]
    pub module: Vec<PathBuf>,
    /// Run the command in this directory (the host's, as the guest sees it).
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Once the module is loaded, report where it is and wait for the host's go
    /// (the host's --gdb: QEMU is paused for the debugger meanwhile).
    #[arg(long)]
    pub wait_for_debugger: bool,
    /// The command's words, hex-encoded and NUL-separated: the kernel
    /// command line can carry no quotes, so no word could hold a space.
    #[arg(long = "argv-hex", value_parser = Argv::from_hex)]
    pub command: Argv,
}

/// The options of `shell`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ShellArgs {
    /// Load this module first (repeat for several; with --scenario, the
    /// scenario loads its own).
    #[arg(long)]
    pub module: Vec<PathBuf>,
    /// Start the shell in this directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Run this scenario first; the shell opens while its loader is still
    /// attached (at its first detach), or after its steps.
    #[arg(long)]
    pub scenario: Option<String>,
    /// With --scenario: where its subject's BPF objects are.
    #[arg(long)]
    pub bpf_dir: Option<PathBuf>,
    /// As for exec.
    #[arg(long)]
    pub wait_for_debugger: bool,
    /// The host terminal's height in rows, given to the shell's terminal.
    #[arg(long)]
    pub rows: Option<u16>,
    /// The host terminal's width in columns, given to the shell's terminal.
    #[arg(long)]
    pub cols: Option<u16>,
    /// The host terminal's type (its TERM), given to the shell's terminal.
    #[arg(long)]
    pub term: Option<String>,
}

/// A command's words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Argv(pub Vec<String>);

impl Argv {
    /// The words NUL-separated and hex-encoded, as `--argv-hex` carries them.
    pub(crate) fn to_hex(&self) -> String {
        let joined = self.0.join("\0");
        joined.bytes().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The words back from [`Argv::to_hex`]'s form; an error for bad hex,
    /// non-UTF-8 words or no words at all.
    pub(crate) fn from_hex(hex: &str) -> Result<Argv, String> {
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(hex.get(at..at + 2).unwrap_or("x"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| format!("not an even string of hex digits: {hex}"))?;
        let text = String::from_utf8(bytes).map_err(|_| "the words are not UTF-8".to_owned())?;
        if text.is_empty() {
            return Err("no command".to_owned());
        }
        Ok(Argv(text.split('\0').map(str::to_owned).collect()))
    }
}

/// The options of `run`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// The scenario to run (see `list`).
    #[arg(long)]
    pub scenario: String,
    /// Scenarios of the same subject to run after it in the same kernel
    /// (repeat for several), while each one before passes.
    #[arg(long)]
    pub then: Vec<String>,
    /// The scenario's subject's module (`.ko`), if the subject has one.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Where the subject's BPF objects, compiled against this kernel, are.
    #[arg(long)]
    pub bpf_dir: Option<PathBuf>,
    /// Print the result as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The host's per-VM timeout, in seconds (else
    /// [`DEFAULT_VM_TIMEOUT_SECS`]): a loader command that runs past its
    /// share of it is killed and reported by name before the host ends the
    /// VM, so a longer `--timeout` gives slow loaders longer too.
    #[arg(long)]
    pub vm_timeout: Option<u64>,
    /// Misbehave on purpose, as PID 1, so the harness's fault tests have a fault to detect.
    #[arg(long, value_enum, hide = true)]
    pub fault: Option<Fault>,
}

/// A fault the agent causes on purpose (`run --fault`), for the harness's fault tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// Exit as PID 1: the kernel panics ("Attempted to kill init").
    ExitInit,
    /// Never finish: the harness's timeout must end the VM.
    Hang,
    /// Never say ready: the harness's boot deadline must end the VM.
    HangBeforeReady,
    /// Power off without sending a result.
    NoResult,
    /// Try to write to the host's filesystem first and print what happened.
    WriteHost,
    /// Run the scenario as if it declared no expected exit: an ejection
    /// it expects must then fail it (proving the verdict knows the type).
    ExpectNoExit,
    /// The scenario's first step returns an error once it is recorded, as
    /// a step whose kernel output could not be read would: the scenario
    /// fails midway (proving that what it set up, a netem qdisc, is
    /// removed however a scenario ends).
    FailAfterFirstStep,
    /// Run the first scenario, then fail it with a failure that says so:
    /// the host asks for it in one VM of two to prove it calls such a
    /// scenario flaky.
    FailScenario,
}

impl AgentCommand {
    /// The words after the agent's binary name that make it run this command.
    pub fn argv(&self) -> Vec<String> {
        match self {
            AgentCommand::Run(args) => args.argv(),
            AgentCommand::Exec(args) => args.argv(),
            AgentCommand::Shell(args) => args.argv(),
            AgentCommand::List => vec!["list".to_owned()],
        }
    }
}

/// `--module PATH` for each module.
fn modules(words: &mut Vec<String>, modules: &[PathBuf]) {
    for module in modules {
        words.push("--module".to_owned());
        words.push(module.display().to_string());
    }
}

/// `--name value` for each option that is set.
fn options(words: &mut Vec<String>, pairs: &[(&str, Option<String>)]) {
    for (name, value) in pairs {
        if let Some(value) = value {
            words.push(format!("--{name}"));
            words.push(value.clone());
        }
    }
}

impl ExecArgs {
    /// `exec [--module PATH]... [--cwd DIR] [--wait-for-debugger] --argv-hex HEX`.
    pub fn argv(&self) -> Vec<String> {
        let mut words = vec!["exec".to_owned()];
        modules(&mut words, &self.module);
        let cwd = self.cwd.as_ref().map(|path| path.display().to_string());
        options(&mut words, &[("cwd", cwd)]);
        if self.wait_for_debugger {
            words.push("--wait-for-debugger".to_owned());
        }
        options(&mut words, &[("argv-hex", Some(self.command.to_hex()))]);
        words
    }
}

impl ShellArgs {
    /// `shell [--module PATH]... [--cwd DIR] [--scenario NAME] [--rows N] [--cols N]
    /// [--term TERM] [--wait-for-debugger]`.
    pub fn argv(&self) -> Vec<String> {
        let mut words = vec!["shell".to_owned()];
        modules(&mut words, &self.module);
        let path = |path: &Option<PathBuf>| path.as_ref().map(|path| path.display().to_string());
        options(
            &mut words,
            &[
                ("cwd", path(&self.cwd)),
                ("scenario", self.scenario.clone()),
                ("bpf-dir", path(&self.bpf_dir)),
                ("rows", self.rows.map(|rows| rows.to_string())),
                ("cols", self.cols.map(|cols| cols.to_string())),
                ("term", self.term.clone()),
            ],
        );
        if self.wait_for_debugger {
            words.push("--wait-for-debugger".to_owned());
        }
        words
    }
}

impl RunArgs {
    /// `run --scenario NAME [--then NAME]... [--module PATH] [--bpf-dir DIR] [--json]
    /// [--vm-timeout SECS] [--fault F]`.
    pub fn argv(&self) -> Vec<String> {
        let mut words = vec!["run".to_owned()];
        options(&mut words, &[("scenario", Some(self.scenario.clone()))]);
        for then in &self.then {
            options(&mut words, &[("then", Some(then.clone()))]);
        }
        modules(&mut words, self.module.as_slice());
        let bpf_dir = self.bpf_dir.as_ref().map(|path| path.display().to_string());
        options(&mut words, &[("bpf-dir", bpf_dir)]);
        if self.json {
            words.push("--json".to_owned());
        }
        let vm_timeout = self.vm_timeout.map(|secs| secs.to_string());
        options(&mut words, &[("vm-timeout", vm_timeout)]);
        // The word clap parses the fault from; no Fault is skipped by clap.
        let fault = self.fault.and_then(|fault| fault.to_possible_value());
        let fault = fault.map(|value| value.get_name().to_owned());
        options(&mut words, &[("fault", fault)]);
        words
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
        let faults = Fault::value_variants().iter().copied().map(Some);
        for fault in std::iter::once(None).chain(faults) {
            for json in [false, true] {
                let command = AgentCommand::Run(RunArgs {
                    scenario: "attach".to_owned(),
                    then: Vec::new(),
                    module: json.then(|| "/c/kmod/0123/subject.ko".into()),
                    bpf_dir: json.then(|| "/c/bpf/0123".into()),
                    json,
                    vm_timeout: json.then_some(300),
                    fault,
                });
                assert_eq!(parse(&command.argv()), command);
            }
        }
        assert_eq!(parse(&AgentCommand::List.argv()), AgentCommand::List);
    }

    #[test]
    fn exec_and_shell_round_trip_whatever_the_words_hold() {
        let exec = AgentCommand::Exec(ExecArgs {
            module: vec!["/c/kmod/1/subject.ko".into()],
            cwd: Some("/work/main".into()),
            wait_for_debugger: true,
            command: Argv(vec![
                "sh".into(),
                "-c".into(),
                "echo 'a b'; exit \"3\"".into(),
            ]),
        });
        assert_eq!(parse(&exec.argv()), exec);
        assert!(exec.argv().iter().all(|word| !word.contains(' ')));
        let shell = AgentCommand::Shell(ShellArgs {
            module: Vec::new(),
            cwd: None,
            scenario: Some("attach".into()),
            bpf_dir: Some("/c/bpf/1".into()),
            wait_for_debugger: false,
            rows: Some(40),
            cols: Some(120),
            term: Some("xterm-256color".into()),
        });
        assert_eq!(parse(&shell.argv()), shell);
        assert!(Argv::from_hex("").is_err());
        assert!(Argv::from_hex("4").is_err());
    }
}
