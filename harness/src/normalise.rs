//! Makes a result comparable across runs: what differs between two runs of
//! the same scenario (timestamps, addresses, pids, cache paths) is replaced
//! by a placeholder, and nothing else is touched.

use std::sync::OnceLock;

use guest_agent::protocol::ScenarioResult;
use regex::Regex;

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

fn rules() -> &'static [Rule] {
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
            // A struct field's offset in the verifier's reason moves with the
            // kernel's layout (the debug flavour's locks are bigger).
            (r"\b(to [a-z_]+ at off )\d+", "${1}<OFFSET>"),
            (r"\b(into ptr_[a-z_]+ at off=)\d+", "${1}<OFFSET>"),
            // Pids and CPUs as the kernel prints them in splats.
            (r"\bPID: \d+", "PID: <PID>"),
            (r"\bpid[ =]\d+", "pid <PID>"),
            (r"\bCPU: \d+", "CPU: <CPU>"),
            (r"\[(\w[\w.-]*):\d+\]", "[$1:<PID>]"),
        ]
        .into_iter()
        .map(|(pattern, replacement)| Rule {
            pattern: Regex::new(pattern).expect("normalisation patterns are valid"),
            replacement,
        })
        .collect()
    })
}

pub fn normalise_text(text: &str) -> String {
    rules().iter().fold(text.to_owned(), |text, rule| {
        rule.pattern
            .replace_all(&text, rule.replacement)
            .into_owned()
    })
}

/// The result with every string a snapshot holds normalised.
pub fn normalise(result: &ScenarioResult) -> ScenarioResult {
    let mut result = result.clone();
    for step in &mut result.steps {
        for text in [
            &mut step.action,
            &mut step.outcome,
            &mut step.stdout,
            &mut step.stderr,
        ] {
            *text = normalise_text(text);
        }
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

/// What a scenario's snapshot holds: the steps and the kernel's output, normalised.
pub fn snapshot_text(result: &ScenarioResult) -> String {
    guest_agent::render::render_steps(&normalise(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_addresses_pids_and_cache_paths_are_replaced() {
        let cases = [
            (
                "[    2.902107] bpf_testmod_ops registered",
                "[TIMESTAMP] bpf_testmod_ops registered",
            ),
            (
                "Load it with: insmod /root/.cache/struct-ops-vmtest/kmod/0123abcd/bpf_testmod.ko",
                "Load it with: insmod <kmod>/bpf_testmod.ko",
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
            (
                "the verifier rejected vmtest_clamp_init: no write support to tcp_sock at off 1888",
                "the verifier rejected vmtest_clamp_init: no write support to tcp_sock at off <OFFSET>",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(normalise_text(input), expected, "for {input}");
        }
    }

    #[test]
    fn what_the_scenarios_assert_on_is_left_alone() {
        for line in [
            "test_1() returned: 42",
            "test_2(10, 20) returned: 30",
            "BPF test_3 called with buffer length 21",
            "Full buffer: Hello from userspace!",
            "EAGAIN (Try again)",
            "program of this type cannot use helper bpf_get_current_comm#16",
            "exit 17",
        ] {
            assert_eq!(normalise_text(line), line);
        }
    }
}
