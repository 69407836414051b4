//! What the agent reports to the host: one JSON document per scenario.

use serde::{Deserialize, Serialize};

/// Name of the virtio-serial port the agent writes its result to when it runs as PID 1.
pub const RESULT_PORT_NAME: &str = "agent-result";

/// Where a line of the kernel's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// printk, as recorded by the printk:console trace event.
    Kernel,
    /// bpf_printk from the BPF program.
    Bpf,
}

/// One line of kernel output, in the order the kernel produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineLine {
    pub source: Source,
    pub text: String,
}

/// One action the scenario took and what came of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What was done, e.g. `struct_ops once --message "..."` or `insmod bpf_testmod.ko`.
    pub action: String,
    /// The outcome: `exit 0`, `exit 17`, `ok`, `EAGAIN (Try again)`, ...
    pub outcome: String,
    pub stdout: String,
    pub stderr: String,
    /// Kernel output produced while this step ran, in order.
    pub timeline: Vec<TimelineLine>,
    /// Lines of the step too numerous to list one by one, as (line, count).
    pub summary: Vec<(TimelineLine, usize)>,
    pub duration_ms: u64,
}

/// How much kernel output the agent read, and how much the kernel
/// overwrote before it could be read (which makes the checks incomplete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    pub kmsg_records: u64,
    pub kmsg_lost: u64,
    pub trace_lines: u64,
    pub trace_lost: u64,
}

/// The whole report for one scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub passed: bool,
    /// Every expectation that did not hold, in words.
    pub failures: Vec<String>,
    pub steps: Vec<Step>,
    /// The last /dev/kmsg records written while the scenario ran (every one
    /// of them was checked for splats in the guest).
    pub kmsg_tail: Vec<String>,
    /// How much the kernel printed, and how much of it was lost unread.
    pub log: LogStats,
    /// Measurements that vary between runs and so stay out of snapshots.
    pub measurements: Vec<String>,
    pub duration_ms: u64,
}

impl ScenarioResult {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!("{{\"scenario\":{:?},\"passed\":false,\"failures\":[\"serialising the result: {err}\"]}}", self.scenario)
        })
    }
}
