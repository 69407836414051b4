//! What the agent and the host say to each other: the virtio-serial ports,
//! and the messages (one JSON line each) the agent writes to the result port.

use serde::{Deserialize, Serialize};

/// The port the agent writes its messages to when it runs as PID 1.
pub const RESULT_PORT_NAME: &str = "agent-result";
/// The port an exec'd command's stdout goes to, streamed to the host.
pub const STDOUT_PORT_NAME: &str = "agent-stdout";
/// The port an exec'd command's stderr goes to, streamed to the host.
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
    WaitingForDebugger {
        /// Each module the agent loaded, in the order it loaded them.
        modules: Vec<ModuleSections>,
    },
    /// A scenario's result.
    Scenario(ScenarioResult),
    /// The agent runs no more of the scenarios it was given (`run --then`):
    /// the one before failed, and the kernel may no longer be clean.
    Stopped {
        /// Why, in words.
        reason: String,
    },
    /// How an exec'd command, or a shell, ended.
    Exited(ExitReport),
}

impl Message {
    /// The message as its one JSON line (if it cannot be serialised, an
    /// `exited` message that says so).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!("{{\"message\":\"exited\",\"error\":\"serialising a message: {err}\"}}")
        })
    }
}

/// A loaded module's file and section addresses (`/sys/module/*/sections`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSections {
    /// The module's name, as under /sys/module.
    pub name: String,
    /// The `.ko` file it was loaded from, as the guest sees it.
    pub path: String,
    /// (`.text`, address), (`.data`, address), ...
    pub sections: Vec<(String, u64)>,
}

/// How a command ended: its exit code, or the signal that killed it, or
/// why it could not run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitReport {
    /// The exit code, if it exited; 127 or 126, as from a shell, if it could not start.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Why it could not start, or why the agent could not run it at all.
    pub error: Option<String>,
}

impl ExitReport {
    /// The same ending as a step's outcome: its code, its signal, or its error.
    pub fn outcome(&self) -> Outcome {
        match (self.code, self.signal, &self.error) {
            (Some(code), _, _) => Outcome::Exited { code },
            (None, Some(signal), _) => Outcome::Killed { signal },
            (None, None, Some(error)) => Outcome::Failed {
                reason: error.clone(),
            },
            (None, None, None) => Outcome::Failed {
                reason: "ended without a code or a signal".to_owned(),
            },
        }
    }
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
    /// Whether printk or bpf_printk printed it.
    pub source: Source,
    /// What was printed, without the trace event's prefix or trailing whitespace.
    pub text: String,
}

/// What came of a step. Scenarios compare outcomes as values; the text a
/// person reads (and a snapshot holds) is their `Display`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A call that succeeded (insmod, rmmod, a file read or write): `ok`.
    #[default]
    Ok,
    /// A loader started in the background printed the line it was waited for: `attached`.
    Attached,
    /// A loader started in the background printed what it was waited for: `running`.
    Running,
    /// A process exited with this code: `exit N`.
    Exited {
        /// Its exit code.
        code: i32,
    },
    /// A process was killed by this signal: `killed by SIGKILL`.
    Killed {
        /// The signal's number.
        signal: i32,
    },
    /// A system call failed with this errno: `EAGAIN (Try again)`.
    Errno {
        /// The errno's number.
        errno: i32,
    },
    /// Anything else that went wrong, in words.
    Failed {
        /// What went wrong.
        reason: String,
    },
}

impl Outcome {
    /// `Exited` with `code` (a loader's exit code, as its contract names it).
    pub fn exited(code: impl Into<i32>) -> Self {
        Outcome::Exited { code: code.into() }
    }

    /// The errno of a failed system call.
    pub fn errno(errno: nix::errno::Errno) -> Self {
        Outcome::Errno {
            errno: errno as i32,
        }
    }

    /// Whether this is the errno `errno`.
    pub fn is_errno(&self, wanted: nix::errno::Errno) -> bool {
        matches!(self, Outcome::Errno { errno } if *errno == wanted as i32)
    }
}

impl From<std::process::ExitStatus> for Outcome {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::Exited { code },
            (None, Some(signal)) => Outcome::Killed { signal },
            (None, None) => Outcome::Failed {
                reason: status.to_string(),
            },
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Attached => write!(f, "attached"),
            Outcome::Running => write!(f, "running"),
            Outcome::Exited { code } => write!(f, "exit {code}"),
            Outcome::Killed { signal } => match nix::sys::signal::Signal::try_from(*signal) {
                Ok(signal) => write!(f, "killed by {signal}"),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
            Outcome::Errno { errno } => {
                let errno = nix::errno::Errno::from_raw(*errno);
                write!(f, "{errno:?} ({})", errno.desc())
            }
            Outcome::Failed { reason } => write!(f, "{reason}"),
        }
    }
}

/// One action the scenario took and what came of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What was done, e.g. `loader once --message "..."` or `insmod demo.ko`.
    pub action: String,
    /// What came of it.
    pub outcome: Outcome,
    /// What the step's process wrote to stdout (empty if it ran none).
    pub stdout: String,
    /// What the step's process wrote to stderr (empty if it ran none).
    pub stderr: String,
    /// Kernel output produced while this step ran, in order.
    pub timeline: Vec<TimelineLine>,
    /// Lines of the step too numerous to list one by one, as (line, count).
    pub summary: Vec<(TimelineLine, usize)>,
    /// How long the step took, in milliseconds.
    pub duration_ms: u64,
    /// The BPF programs the step's loader reported (verifier cost, runs).
    #[serde(default)]
    pub programs: Vec<crate::programs::ProgramStats>,
}

/// How much kernel output the agent read, and how much the kernel
/// overwrote before it could be read (which makes the checks incomplete).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStats {
    /// /dev/kmsg records read.
    pub kmsg_records: u64,
    /// /dev/kmsg records the kernel overwrote before they were read.
    pub kmsg_lost: u64,
    /// Trace pipe lines read (printk and bpf_printk events).
    pub trace_lines: u64,
    /// Trace events the kernel overwrote before they were read.
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
    /// The scenario's name.
    pub scenario: String,
    /// Whether every expectation held (`failures` is empty).
    pub passed: bool,
    /// Every expectation that did not hold, in words.
    pub failures: Vec<String>,
    /// The scenario's steps, in the order it took them.
    pub steps: Vec<Step>,
    /// The last /dev/kmsg records written while the scenario ran (every one
    /// of them was checked for splats in the guest).
    pub kmsg_tail: Vec<String>,
    /// How much the kernel printed, and how much of it was lost unread.
    pub log: LogStats,
    /// Measurements that vary between runs and so stay out of snapshots.
    pub measurements: Vec<String>,
    /// How long the whole scenario took, in milliseconds.
    pub duration_ms: u64,
    /// How the kernel ended implementations of the subject's type during
    /// the scenario (sched_ext's exit kind, reason and message), as it
    /// logged them.
    #[serde(default)]
    pub exits: Vec<crate::kernel_type::TypeExit>,
}

impl ScenarioResult {
    /// The result as one JSON line (if it cannot be serialised, a failed
    /// result that says so).
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
