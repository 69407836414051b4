//! What the agent and the host say to each other: the virtio-serial ports,
//! and the messages (one JSON line each) the agent writes to the result port.

use serde::{Deserialize, Serialize};

/// The port the agent writes its messages to when it runs as PID 1.
pub const RESULT_PORT_NAME: &str = "agent-result";
/// The ports an exec'd command's stdout and stderr go to, streamed to the host.
pub const STDOUT_PORT_NAME: &str = "agent-stdout";
pub const STDERR_PORT_NAME: &str = "agent-stderr";
/// The port the host answers on (only with a debugger: `GO` once it may attach).
pub const CONTROL_PORT_NAME: &str = "agent-control";
/// The line that lets an agent waiting for a debugger go on.
pub const GO: &str = "go";

/// One line on the result port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "message", rename_all = "snake_case")]
pub enum Message {
    /// The modules are loaded (where their sections are, for a debugger's
    /// `add-symbol-file`), and the agent waits for `GO` on the control port.
    WaitingForDebugger { modules: Vec<ModuleSections> },
    /// A scenario's result.
    Scenario(ScenarioResult),
    /// How an exec'd command, or a shell, ended.
    Exited(ExitReport),
}

impl Message {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!("{{\"message\":\"exited\",\"error\":\"serialising a message: {err}\"}}")
        })
    }
}

/// A loaded module's file and section addresses (`/sys/module/*/sections`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSections {
    pub name: String,
    pub path: String,
    /// (`.text`, address), (`.data`, address), ...
    pub sections: Vec<(String, u64)>,
}

/// How a command ended: its exit code, or the signal that killed it, or
/// why it could not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
}

impl From<std::process::ExitStatus> for ExitReport {
    /// How a command the agent ran ended: its code, or the signal that killed it.
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitReport {
            code: status.code(),
            signal: status.signal(),
            error: None,
        }
    }
}

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

impl Step {
    /// How many times `text` from `source` is in the step's kernel output
    /// (listed one by one or summarised).
    pub fn count(&self, source: Source, text: &str) -> usize {
        let listed = self
            .timeline
            .iter()
            .filter(|line| line.source == source && line.text == text)
            .count();
        let summarised: usize = self
            .summary
            .iter()
            .filter(|(line, _)| line.source == source && line.text == text)
            .map(|(_, count)| count)
            .sum();
        listed + summarised
    }

    /// The distinct lines of the step's kernel output that are not in
    /// `allowed` (at most ten, as `[source] text`).
    pub fn lines_outside(&self, allowed: &[(Source, &str)]) -> Vec<String> {
        let lines = self
            .timeline
            .iter()
            .chain(self.summary.iter().map(|(line, _)| line));
        let mut outside: Vec<String> = Vec::new();
        for line in lines {
            let known = allowed
                .iter()
                .any(|(source, text)| *source == line.source && *text == line.text);
            let shown = format!("[{:?}] {}", line.source, line.text);
            if !known && !outside.contains(&shown) && outside.len() < 10 {
                outside.push(shown);
            }
        }
        outside
    }

    /// Replaces the timeline with each distinct line and its count, in the
    /// order each first appeared.
    pub fn summarise(&mut self) {
        let mut summary: Vec<(TimelineLine, usize)> = Vec::new();
        for line in std::mem::take(&mut self.timeline) {
            match summary.iter_mut().find(|(seen, _)| *seen == line) {
                Some((_, count)) => *count += 1,
                None => summary.push((line, 1)),
            }
        }
        self.summary = summary;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: Source, text: &str) -> TimelineLine {
        TimelineLine {
            source,
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_step_counts_its_lines_before_and_after_summarising() {
        let mut step = Step {
            timeline: vec![
                line(Source::Kernel, "registered"),
                line(Source::Bpf, "called"),
                line(Source::Bpf, "called"),
                line(Source::Kernel, "called"),
            ],
            ..Step::default()
        };
        assert_eq!(step.count(Source::Bpf, "called"), 2);
        step.summarise();
        assert!(step.timeline.is_empty());
        assert_eq!(step.count(Source::Bpf, "called"), 2);
        assert_eq!(step.count(Source::Kernel, "called"), 1);
        assert_eq!(step.summary[0], (line(Source::Kernel, "registered"), 1));
    }

    #[test]
    fn lines_outside_the_allowed_ones_are_named_once() {
        let step = Step {
            timeline: vec![
                line(Source::Kernel, "registered"),
                line(Source::Kernel, "odd"),
                line(Source::Kernel, "odd"),
                line(Source::Bpf, "registered"),
            ],
            ..Step::default()
        };
        assert_eq!(
            step.lines_outside(&[(Source::Kernel, "registered")]),
            ["[Kernel] odd", "[Bpf] registered"]
        );
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn every_message_survives_its_line() {
        for message in [
            Message::WaitingForDebugger {
                modules: vec![ModuleSections {
                    name: "m".into(),
                    path: "/m.ko".into(),
                    sections: vec![(".text".into(), 0xffff_ffff_c000_0000)],
                }],
            },
            Message::Scenario(ScenarioResult::default()),
            Message::Exited(ExitReport {
                code: Some(3),
                ..ExitReport::default()
            }),
        ] {
            let line = message.to_json();
            assert_eq!(
                serde_json::from_str::<Message>(&line).unwrap(),
                message,
                "{line}"
            );
        }
    }
}
