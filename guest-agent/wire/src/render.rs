//! The text form of a result: what the snapshot holds and what a person
//! reads under vng. Only what the scenario did and what the kernel printed;
//! durations and other measurements stay out.

use std::fmt::Write as _;

use crate::protocol::{ScenarioResult, Source, Step, TimelineLine};

/// Each step as a snapshot holds it: its action, outcome, output and kernel lines.
pub fn render_steps(result: &ScenarioResult) -> String {
    let mut text = String::new();
    for step in &result.steps {
        render_step(&mut text, step);
    }
    text
}

fn render_step(text: &mut String, step: &Step) {
    let _ = writeln!(text, "$ {}", step.action);
    let _ = writeln!(text, "  => {}", step.outcome);
    for (label, output) in [("stdout", &step.stdout), ("stderr", &step.stderr)] {
        for line in output.lines() {
            let _ = writeln!(text, "  {label}| {line}");
        }
    }
    for line in &step.timeline {
        let _ = writeln!(text, "  {}", timeline_line(line));
    }
    for (line, count) in &step.summary {
        let _ = writeln!(text, "  {} (x{count})", timeline_line(line));
    }
}

fn timeline_line(line: &TimelineLine) -> String {
    let source = match line.source {
        Source::Kernel => "[kernel]",
        Source::Bpf => "[bpf]   ",
    };
    format!("{source} {}", line.text)
}

/// The whole report for a person: verdict, failures, steps and measurements.
pub fn render_report(result: &ScenarioResult) -> String {
    let mut text = String::new();
    let verdict = if result.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(
        text,
        "scenario {}: {verdict} ({} ms)",
        result.scenario, result.duration_ms
    );
    for failure in &result.failures {
        let _ = writeln!(text, "  failure: {failure}");
    }
    text.push_str(&render_steps(result));
    for measurement in &result.measurements {
        let _ = writeln!(text, "  measured: {measurement}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_shows_action_outcome_output_and_kernel_lines() {
        let result = ScenarioResult {
            scenario: "attach".into(),
            steps: vec![Step {
                action: "struct_ops trigger".into(),
                outcome: crate::protocol::Outcome::exited(0),
                stdout: "Triggered struct_ops\n".into(),
                timeline: vec![
                    TimelineLine {
                        source: Source::Kernel,
                        text: "Calling struct_ops callbacks:".into(),
                    },
                    TimelineLine {
                        source: Source::Bpf,
                        text: "BPF test_1 called!".into(),
                    },
                ],
                summary: vec![(
                    TimelineLine {
                        source: Source::Kernel,
                        text: "x".into(),
                    },
                    3,
                )],
                ..Step::default()
            }],
            ..ScenarioResult::default()
        };
        assert_eq!(
            render_steps(&result),
            "$ struct_ops trigger\n  => exit 0\n  stdout| Triggered struct_ops\n  \
             [kernel] Calling struct_ops callbacks:\n  [bpf]    BPF test_1 called!\n  [kernel] x (x3)\n"
        );
    }
}
