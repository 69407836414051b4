//! Makes a result comparable across runs: what differs between two runs of
//! the same scenario (timestamps, addresses, pids, cache paths) is replaced
//! by a placeholder, and nothing else is touched.

use std::sync::OnceLock;

use anyhow::{Context, Result};
use harness_wire::catalogue::SubjectInfo;
use harness_wire::protocol::ScenarioResult;
use regex::Regex;

#[derive(Debug, Clone)]
struct Rule {
    pattern: Regex,
    replacement: String,
}

fn core_rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(|| {
        [
            // printk timestamps: [    2.345678]
            (r"\[\s*\d+\.\d+\]", "[TIMESTAMP]"),
            // A module's path holds the cache directory and a content hash.
            (r"(/[^\s'\x22]+)?/([A-Za-z0-9_-]+)\.ko\b", "<kmod>/$2.ko"),
            // Kernel and user addresses.
            (r"\b0x[0-9a-fA-F]{6,}\b", "<ADDR>"),
            (r"\bffff[0-9a-f]{12}\b", "<ADDR>"),
            (r"\b[0-9a-f]{16}\b", "<ADDR>"),
            // Pids and CPUs as the kernel prints them in splats.
            (r"\bPID: \d+", "PID: <PID>"),
            (r"\bpid[ =]\d+", "pid <PID>"),
            (r"\bCPU: \d+", "CPU: <CPU>"),
            (r"\[(\w[\w.-]*):\d+\]", "[$1:<PID>]"),
        ]
        .into_iter()
        .map(|(pattern, replacement)| Rule {
            pattern: Regex::new(pattern).expect("normalisation patterns are valid"),
            replacement: replacement.to_owned(),
        })
        .collect()
    })
}

/// Kernel lines printed only the first time something happens in a boot:
/// whether a scenario sees one depends on what ran before it in the same
/// VM (the debug flavour runs several scenarios in one), not on the
/// scenario, so a snapshot leaves them out. The taint they announce is
/// still judged (the expected taint flags).
const ONCE_PER_BOOT: &[&str] = &["loading out-of-tree module taints kernel."];

fn once_per_boot(line: &str) -> bool {
    ONCE_PER_BOOT.iter().any(|text| line.ends_with(text))
}

/// The core's rules, then a subject's own.
#[derive(Debug, Clone)]
pub struct Normaliser {
    rules: Vec<Rule>,
}

impl Default for Normaliser {
    /// The core's rules only.
    fn default() -> Self {
        Normaliser {
            rules: core_rules().to_vec(),
        }
    }
}

impl Normaliser {
    /// The core's rules, its type's, and `subject`'s own, which a bad
    /// pattern of its own fails.
    pub fn for_subject(subject: &SubjectInfo) -> Result<Self> {
        let mut rules = core_rules().to_vec();
        let type_rules = subject.kernel_type.map_or(&[][..], |kind| kind.normalise());
        for (pattern, replacement) in type_rules {
            rules.push(Rule {
                pattern: Regex::new(pattern).expect("a type's patterns are valid"),
                replacement: (*replacement).to_owned(),
            });
        }
        for (pattern, replacement) in &subject.normalise {
            let compiled = Regex::new(pattern).with_context(|| {
                format!(
                    "{}'s normalisation rule {pattern:?} is not a valid regex",
                    subject.name
                )
            })?;
            rules.push(Rule {
                pattern: compiled,
                replacement: replacement.clone(),
            });
        }
        Ok(Normaliser { rules })
    }

    /// `text` with every rule applied, in order.
    pub fn text(&self, text: &str) -> String {
        self.rules.iter().fold(text.to_owned(), |text, rule| {
            rule.pattern
                .replace_all(&text, rule.replacement.as_str())
                .into_owned()
        })
    }

    /// The result with every string a snapshot holds normalised.
    pub fn result(&self, result: &ScenarioResult) -> ScenarioResult {
        normalise_with(self, result)
    }

    /// What a scenario's snapshot holds: the steps and the kernel's output, normalised.
    pub fn snapshot_text(&self, result: &ScenarioResult) -> String {
        harness_wire::render::render_steps(&self.result(result))
    }
}

/// `text` under the core's rules alone.
pub fn normalise_text(text: &str) -> String {
    Normaliser::default().text(text)
}

fn normalise_with(normaliser: &Normaliser, result: &ScenarioResult) -> ScenarioResult {
    let normalise_text = |text: &str| normaliser.text(text);
    let mut result = result.clone();
    for step in &mut result.steps {
        if let harness_wire::protocol::Outcome::Failed { reason } = &mut step.outcome {
            *reason = normalise_text(reason);
        }
        for text in [&mut step.action, &mut step.stdout, &mut step.stderr] {
            *text = normalise_text(text);
        }
        step.timeline.retain(|line| !once_per_boot(&line.text));
        step.summary.retain(|(line, _)| !once_per_boot(&line.text));
        for line in &mut step.timeline {
            line.text = normalise_text(&line.text);
        }
        for (line, _) in &mut step.summary {
            line.text = normalise_text(&line.text);
        }
    }
    for failure in &mut result.failures {
        *failure = normalise_text(failure);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_addresses_pids_and_cache_paths_are_replaced() {
        let cases = [
            (
                "[    2.902107] subject_ops registered",
                "[TIMESTAMP] subject_ops registered",
            ),
            (
                "Load it with: insmod /root/.cache/struct-ops-vmtest/kmod/0123abcd/subject.ko",
                "Load it with: insmod <kmod>/subject.ko",
            ),
            (
                "RIP: 0010:trigger_write+0x1c/0x90 at 0xffffffffc0201000",
                "RIP: 0010:trigger_write+0x1c/0x90 at <ADDR>",
            ),
            (
                "WARNING: CPU: 1 PID: 63 at kernel/bpf/x.c:10",
                "WARNING: CPU: <CPU> PID: <PID> at kernel/bpf/x.c:10",
            ),
            (
                "soft lockup - CPU#0 stuck for 22s! [struct_ops:70]",
                "soft lockup - CPU#0 stuck for 22s! [struct_ops:<PID>]",
            ),
            ("RSP: ffff88800fc4be38", "RSP: <ADDR>"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalise_text(input), expected, "for {input}");
        }
    }

    #[test]
    fn a_line_the_kernel_prints_once_per_boot_stays_out() {
        use harness_wire::protocol::{Source, Step, TimelineLine};
        let kernel = |text: &str| TimelineLine {
            source: Source::Kernel,
            text: text.into(),
        };
        let result = ScenarioResult {
            steps: vec![Step {
                timeline: vec![
                    kernel("outside_hello: loading out-of-tree module taints kernel."),
                    kernel("outside_hello: loaded"),
                ],
                ..Step::default()
            }],
            ..ScenarioResult::default()
        };
        let normalised = Normaliser::default().result(&result);
        assert_eq!(
            normalised.steps[0].timeline,
            vec![kernel("outside_hello: loaded")]
        );
    }

    #[test]
    fn what_the_scenarios_assert_on_is_left_alone() {
        for line in [
            "op_1() returned: 42",
            "op_2(10, 20) returned: 30",
            "called with buffer length 21",
            "Full buffer: Hello from userspace!",
            "EAGAIN (Try again)",
            "program of this type cannot use helper bpf_get_current_comm#16",
            "exit 17",
        ] {
            assert_eq!(normalise_text(line), line);
        }
    }

    #[test]
    fn a_schedulers_stalled_task_and_backtrace_offsets_are_replaced() {
        let subject = SubjectInfo {
            kernel_type: Some(harness_wire::kernel_type::KernelType::SchedExtOps),
            ..SubjectInfo::default()
        };
        let normaliser = Normaliser::for_subject(&subject).unwrap();
        assert_eq!(
            normaliser.text("sched_ext: qmap: kworker/1:2[83] failed to run for 5.123s"),
            "sched_ext: qmap: <TASK> failed to run for <SECONDS>s"
        );
        assert_eq!(
            normaliser.text("scx_bpf_error_bstr+0x6e/0xc0"),
            "scx_bpf_error_bstr+<OFF>"
        );
    }

    #[test]
    fn a_subjects_rules_apply_after_the_cores_and_a_bad_one_is_named() {
        let mut subject = SubjectInfo {
            name: "s".into(),
            summary: String::new(),
            module: None,
            scenarios: Vec::new(),
            fragments: Vec::new(),
            snapshots: "/s".into(),
            normalise: vec![(r"\b(at off )\d+".into(), "${1}<OFFSET>".into())],
            ..SubjectInfo::default()
        };
        let normaliser = Normaliser::for_subject(&subject).unwrap();
        assert_eq!(
            normaliser.text("[ 1.0] no write at off 1888"),
            "[TIMESTAMP] no write at off <OFFSET>"
        );
        subject.normalise = vec![("(".into(), String::new())];
        let err = Normaliser::for_subject(&subject).unwrap_err().to_string();
        assert!(err.contains("s's normalisation rule"), "{err}");
    }
}
