//! The one binary of a subject plays every role; its first argument says
//! which. These words are the contract between the host, which starts the
//! binary, and the binary's dispatch (`harness::main!`). As PID 1 it needs no
//! word: being PID 1 is the role.

/// Re-executed by its own scenarios as a subject's loader: the word after it
/// names the subject, the words after that are its loader's command line.
pub const LOADER: &str = "__loader";
/// Re-executed by the agent to run a scenario's workload (its worker
/// threads) in a process of its own, so that neither the scheduler under
/// test nor a cgroup ever takes the agent's own threads: the words after
/// it are [`crate::workload::WorkloadArgs`]; it prints a
/// [`crate::workload::WorkloadReport`].
pub const WORKLOAD: &str = "__workload";
/// The agent as a plain command (under `vng --exec`): the words after it are
/// an agent command line ([`crate::cli::AgentCli`]).
pub const AGENT: &str = "__agent";
/// Prints the subject's catalogue ([`crate::catalogue::SubjectInfo`]s) as JSON.
pub const CATALOGUE: &str = "__catalogue";
/// Builds what the subject's VM tests need (a nextest setup script's job).
pub const BUILD: &str = "__build";
