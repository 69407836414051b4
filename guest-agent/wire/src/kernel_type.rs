//! The struct_ops types the kernel itself defines, as the core knows them:
//! what a kernel needs to have one, which kernel log lines belong to it
//! (whichever context prints them: a kthread, a workqueue, a softirq), how
//! it says an implementation was ejected, and what its lines hold that
//! differs between runs. A subject names the type it implements
//! ([`crate::catalogue::SubjectInfo::kernel_type`]); a type a subject's own
//! module defines needs none of this.

use serde::{Deserialize, Serialize};

/// A struct_ops type the kernel defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelType {
    /// `struct sched_ext_ops`: a BPF scheduler (CONFIG_SCHED_CLASS_EXT, 6.12 and later).
    SchedExtOps,
    /// `struct tcp_congestion_ops`: a TCP congestion control.
    TcpCongestionOps,
}

impl KernelType {
    /// Every type the core knows.
    pub const ALL: [KernelType; 2] = [KernelType::SchedExtOps, KernelType::TcpCongestionOps];

    /// The struct's name: `sched_ext_ops`.
    pub fn name(self) -> &'static str {
        match self {
            KernelType::SchedExtOps => "sched_ext_ops",
            KernelType::TcpCongestionOps => "tcp_congestion_ops",
        }
    }

    /// The type named `name` (`sched_ext_ops`, with or without `struct `).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().trim_start_matches("struct ").trim();
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kernel option that defines the type, and the first kernel
    /// series that has it.
    pub fn requires(self) -> (&'static str, &'static str) {
        match self {
            KernelType::SchedExtOps => ("CONFIG_SCHED_CLASS_EXT", "6.12"),
            KernelType::TcpCongestionOps => ("CONFIG_INET", "5.6"),
        }
    }

    /// The prefixes of the kernel log lines that belong to the type.
    pub fn log_prefixes(self) -> &'static [&'static str] {
        match self {
            KernelType::SchedExtOps => &[SCHED_EXT_PREFIX],
            KernelType::TcpCongestionOps => &[],
        }
    }

    /// Directories of the kernel source, relative to its top, that its BPF
    /// programs include (sched_ext's `scx/common.bpf.h`).
    pub fn bpf_includes(self) -> &'static [&'static str] {
        match self {
            KernelType::SchedExtOps => &[
                "tools/sched_ext/include",
                "tools/sched_ext/include/bpf-compat",
            ],
            KernelType::TcpCongestionOps => &[],
        }
    }

    /// `(regex, replacement)` for what the type's lines hold that differs
    /// between runs: which task stalled and for how long, say.
    pub fn normalise(self) -> &'static [(&'static str, &'static str)] {
        match self {
            KernelType::SchedExtOps => &[
                // `kworker/1:2[83] failed to run for 5.123s`: which task the
                // watchdog caught, and how late it was, vary.
                (
                    r"[^\s(]+\[\d+\] failed to run for \d+\.\d+s",
                    "<TASK> failed to run for <SECONDS>s",
                ),
                (
                    r"watchdog failed to check in for \d+\.\d+s",
                    "watchdog failed to check in for <SECONDS>s",
                ),
                // The backtrace's offsets change with every build.
                (r"\+0x[0-9a-f]+/0x[0-9a-f]+", "+<OFF>"),
                // 7.x's scx_bpf_error() puts the BPF source's path and line
                // before its message (`/.../scx_qmap.bpf.c:434: test
                // triggering error`); older headers do not, and one
                // snapshot serves every kernel. The exit's `location`
                // keeps it (`TypeExit`).
                (LOCATION, "$1"),
            ],
            KernelType::TcpCongestionOps => &[],
        }
    }
}

impl std::fmt::Display for KernelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What sched_ext's own kernel lines start with.
pub(crate) const SCHED_EXT_PREFIX: &str = "sched_ext:";

/// What sched_ext lets a scheduler write of a kernel struct
/// (`bpf_scx_btf_struct_access`): the verifier refuses any other store
/// with -EACCES and no message, and the loader's failure says this instead.
pub const SCHED_EXT_WRITE_RULE: &str =
    "sched_ext lets a scheduler write only p->scx.slice, p->scx.dsq_vtime and p->scx.disallow";

/// How sched_ext ended a scheduler: the exit kinds of `enum scx_exit_kind`,
/// by the reason the kernel prints for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// SCX_EXIT_UNREG (64): the link was destroyed or the loader exited.
    Unreg,
    /// SCX_EXIT_UNREG_BPF (65): the scheduler called `scx_bpf_exit()`.
    UnregBpf,
    /// SCX_EXIT_UNREG_KERN (66): the kernel unregistered it (a CPU hotplug).
    UnregKern,
    /// SCX_EXIT_SYSRQ (67): sysrq-S.
    Sysrq,
    /// SCX_EXIT_ERROR (1024): the kernel found it misbehaving.
    Error,
    /// SCX_EXIT_ERROR_BPF (1025): the scheduler called `scx_bpf_error()`.
    ErrorBpf,
    /// SCX_EXIT_ERROR_STALL (1026): a runnable task did not run within the timeout.
    ErrorStall,
    /// A reason this harness does not know (a newer kernel's).
    Unknown,
}

impl ExitKind {
    const REASONS: [(ExitKind, &'static str); 7] = [
        (ExitKind::Unreg, "unregistered from user space"),
        (ExitKind::UnregBpf, "unregistered from BPF"),
        (ExitKind::UnregKern, "unregistered from the main kernel"),
        (ExitKind::Sysrq, "disabled by sysrq-S"),
        (ExitKind::Error, "runtime error"),
        (ExitKind::ErrorBpf, "scx_bpf_error"),
        (ExitKind::ErrorStall, "runnable task stall"),
    ];

    /// The kind whose reason the kernel printed.
    pub(crate) fn from_reason(reason: &str) -> Self {
        Self::REASONS
            .iter()
            .find(|(_, said)| *said == reason)
            .map_or(ExitKind::Unknown, |(kind, _)| *kind)
    }

    /// The reason the kernel prints for it.
    pub fn reason(self) -> &'static str {
        Self::REASONS
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("<UNKNOWN>", |(_, reason)| reason)
    }

    /// Whether the kernel ejected the scheduler (an error kind), rather
    /// than someone unregistering it.
    pub fn is_ejection(self) -> bool {
        matches!(
            self,
            ExitKind::Error | ExitKind::ErrorBpf | ExitKind::ErrorStall | ExitKind::Unknown
        )
    }
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// A scheduler's exit, as the kernel logged it: `sched_ext: BPF scheduler
/// "NAME" disabled (REASON)`, the message line after it and the backtrace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeExit {
    /// The type whose implementation ended.
    pub kernel_type: KernelType,
    /// The implementation's name (`simple`).
    pub name: String,
    /// Its kind.
    pub kind: ExitKind,
    /// The reason, as printed.
    pub reason: String,
    /// The message (`test triggering error`), when the kernel printed one.
    pub message: Option<String>,
    /// Where in the BPF source the message was raised (`scx_qmap.bpf.c:434`),
    /// when the scheduler's headers put it before the message (7.x's
    /// `scx_bpf_error()` does); the message above is then without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The backtrace the kernel printed with an ejection.
    pub backtrace: Vec<String>,
}

impl TypeExit {
    /// One line: `"qmap": runnable task stall (kworker/1:2[83] failed to run for 5.1s)`.
    pub fn describe(&self) -> String {
        let mut text = format!("\"{}\": {}", self.name, self.reason);
        if let Some(message) = &self.message {
            text.push_str(&format!(" ({message})"));
        }
        text
    }
}

/// Reads sched_ext's exits out of kernel log messages, one at a time and
/// in order: a `disabled (REASON)` line opens an exit, the message and
/// backtrace lines that follow complete it.
#[derive(Debug, Default)]
pub struct ExitScanner {
    exits: Vec<TypeExit>,
    open: bool,
}

impl ExitScanner {
    /// Feeds one kernel log message (no timestamp, no level).
    pub fn push(&mut self, message: &str) {
        if let Some((name, reason)) = disabled_line(message) {
            self.exits.push(TypeExit {
                kernel_type: KernelType::SchedExtOps,
                name: name.to_owned(),
                kind: ExitKind::from_reason(reason),
                reason: reason.to_owned(),
                message: None,
                location: None,
                backtrace: Vec::new(),
            });
            self.open = true;
            return;
        }
        if !self.open {
            return;
        }
        let Some(exit) = self.exits.last_mut() else {
            return;
        };
        let own_message = format!("{SCHED_EXT_PREFIX} {}: ", exit.name);
        if let Some(text) = message.strip_prefix(own_message.as_str()) {
            if exit.message.is_none() && exit.backtrace.is_empty() {
                let (location, text) = split_location(text.trim_end());
                exit.message = Some(text.to_owned());
                exit.location = location;
                return;
            }
        }
        // stack_trace_print indents each frame.
        if message.starts_with(' ') && exit.backtrace.len() < 64 {
            exit.backtrace.push(message.trim().to_owned());
            return;
        }
        self.open = false;
    }

    /// The exits read so far.
    pub fn exits(&self) -> &[TypeExit] {
        &self.exits
    }

    /// Takes the exits read so far.
    pub fn take(&mut self) -> Vec<TypeExit> {
        self.open = false;
        std::mem::take(&mut self.exits)
    }
}

/// The BPF source position 7.x's `scx_bpf_error()` puts before its
/// message (`__FILE__:__LINE__: `), where a message starts: after
/// `sched_ext: NAME: ` or the `(` of `EXIT: REASON (`. The file is a BPF
/// source or header (`*.bpf.c`, `*.bpf.h`, as tools/sched_ext and the scx
/// repository name them), so a C program's own `file.c:12: ` stays.
const LOCATION: &str = r"(\(|: )(?:[^\s(]*/)?[\w.-]+\.bpf\.[ch]:\d+: ";

/// (`scx_qmap.bpf.c:434`, the rest) of a message that starts with a BPF
/// source position ([`LOCATION`]), else (None, the message).
fn split_location(message: &str) -> (Option<String>, &str) {
    let parsed = message.split_once(": ").and_then(|(position, rest)| {
        let (path, line) = position.rsplit_once(':')?;
        let file = path.rsplit('/').next()?;
        let is_bpf = [".bpf.c", ".bpf.h"].iter().any(|end| file.ends_with(end));
        let plain = !path.contains(char::is_whitespace) && !path.contains('(');
        let numbered = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
        (is_bpf && plain && numbered).then(|| (format!("{file}:{line}"), rest))
    });
    match parsed {
        Some((location, rest)) => (Some(location), rest),
        None => (None, message),
    }
}

/// `sched_ext: BPF scheduler "NAME" disabled (REASON)`: (NAME, REASON).
fn disabled_line(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("sched_ext: BPF scheduler \"")?;
    let (name, rest) = rest.split_once("\" disabled (")?;
    let reason = rest.trim_end().strip_suffix(')')?;
    Some((name, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scanner fed `lines`, in order.
    fn fed(lines: &[&str]) -> ExitScanner {
        let mut scanner = ExitScanner::default();
        lines.iter().for_each(|line| scanner.push(line));
        scanner
    }

    #[test]
    fn an_ejection_is_read_with_its_message_and_backtrace() {
        let mut scanner = fed(&[
            "sched_ext: BPF scheduler \"simple\" enabled",
            "sched_ext: BPF scheduler \"qmap\" disabled (scx_bpf_error)",
            "sched_ext: qmap: test triggering error",
            "   scx_bpf_error_bstr+0x6e/0xc0",
            "   bpf_prog_1d2a0c1b_qmap_enqueue+0x1a4/0x1f8",
            "clocksource: switched",
            "   not_ours+0x1/0x2",
            "sched_ext: BPF scheduler \"simple\" disabled (unregistered from user space)",
        ]);
        let exits = scanner.take();
        assert_eq!(exits.len(), 2);
        assert_eq!(exits[0].kind, ExitKind::ErrorBpf);
        assert!(exits[0].kind.is_ejection());
        assert_eq!(exits[0].message.as_deref(), Some("test triggering error"));
        assert_eq!(exits[0].backtrace.len(), 2);
        assert_eq!(
            exits[0].describe(),
            "\"qmap\": scx_bpf_error (test triggering error)"
        );
        assert_eq!(exits[1].kind, ExitKind::Unreg);
        assert!(!exits[1].kind.is_ejection());
        assert!(scanner.exits().is_empty());
    }

    #[test]
    fn a_message_raised_with_its_source_position_keeps_it_apart() {
        let exit = &fed(&[
            "sched_ext: BPF scheduler \"qmap\" disabled (scx_bpf_error)",
            "sched_ext: qmap: /src/linux-7.3/tools/sched_ext/scx_qmap.bpf.c:434: test triggering error",
        ])
        .take()[0];
        assert_eq!(exit.message.as_deref(), Some("test triggering error"));
        assert_eq!(exit.location.as_deref(), Some("scx_qmap.bpf.c:434"));
        // A message that only looks like one keeps its words.
        for message in [
            "runnable task stall: a: b",
            "it failed (x.bpf.c:1: y)",
            "a.bpf.c:x: b",
            "main.c:12: main: Assertion failed",
        ] {
            assert_eq!(split_location(message), (None, message), "{message}");
        }
        // The snapshot's rule drops the same prefix where a message starts,
        // and nothing else.
        let rule = regex::Regex::new(LOCATION).unwrap();
        for (line, normalised) in [
            (
                "EXIT: scx_bpf_error (/src/tools/sched_ext/scx_qmap.bpf.c:434: test)",
                "EXIT: scx_bpf_error (test)",
            ),
            (
                "sched_ext: qmap: /src/scx_qmap.bpf.c:434: test triggering error",
                "sched_ext: qmap: test triggering error",
            ),
            (
                "prog: main.c:12: main: Assertion `x' failed.",
                "prog: main.c:12: main: Assertion `x' failed.",
            ),
            ("EXIT: e (/a b/x.bpf.c:1: m)", "EXIT: e (/a b/x.bpf.c:1: m)"),
        ] {
            assert_eq!(rule.replace_all(line, "$1"), normalised);
        }
    }

    #[test]
    fn types_are_named_and_parsed() {
        assert_eq!(
            KernelType::parse("struct sched_ext_ops"),
            Some(KernelType::SchedExtOps)
        );
        assert_eq!(
            KernelType::parse("tcp_congestion_ops").unwrap().name(),
            "tcp_congestion_ops"
        );
        assert_eq!(KernelType::parse("hello_ops"), None);
        assert_eq!(
            ExitKind::from_reason("runnable task stall"),
            ExitKind::ErrorStall
        );
        assert_eq!(ExitKind::from_reason("something new"), ExitKind::Unknown);
        assert_eq!(ExitKind::ErrorStall.reason(), "runnable task stall");
    }
}
