//! Kernel log lines that mean the kernel itself went wrong: one list of
//! splat classes, each with the markers the kernel prints for it and the
//! config option without which the kernel cannot print them at all (so a
//! report can say which classes a kernel could not have seen), and an
//! allowlist of known-benign lines that carry a marker. The guest's agent
//! finds splats with them; the host names the classes a kernel cannot report.

/// One kind of kernel report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplatClass {
    /// What the class is called in a failure or a report, e.g. `KASAN memory error`.
    pub name: &'static str,
    /// Substrings that identify a line of this class, checked in order of the classes.
    pub markers: &'static [&'static str],
    /// The options the kernel needs to report this class at all.
    pub needs: &'static [&'static str],
}

/// Specific classes first: a KASAN report also starts with `BUG:`.
pub(crate) const CLASSES: &[SplatClass] = &[
    SplatClass {
        name: "KASAN memory error",
        markers: &["BUG: KASAN:"],
        needs: &["CONFIG_KASAN"],
    },
    SplatClass {
        name: "KFENCE memory error",
        markers: &["BUG: KFENCE:"],
        needs: &["CONFIG_KFENCE"],
    },
    SplatClass {
        name: "lockdep lock order or state",
        markers: &[
            "possible circular locking dependency",
            "possible recursive locking",
            "inconsistent lock state",
            "possible irq lock inversion",
            "bad unlock balance",
            "held lock freed",
            "lock held when returning to user space",
            "DEBUG_LOCKS_WARN_ON",
        ],
        needs: &["CONFIG_PROVE_LOCKING"],
    },
    SplatClass {
        name: "RCU usage",
        markers: &[
            "suspicious RCU usage",
            "Voluntary context switch within RCU read-side critical section",
        ],
        needs: &["CONFIG_PROVE_RCU"],
    },
    SplatClass {
        name: "sleep in atomic context",
        markers: &[
            "sleeping function called from invalid context",
            "scheduling while atomic",
        ],
        needs: &["CONFIG_DEBUG_ATOMIC_SLEEP"],
    },
    SplatClass {
        name: "list corruption",
        markers: &["list_add corruption", "list_del corruption"],
        // The report is a WARN(), silent without CONFIG_BUG.
        needs: &["CONFIG_DEBUG_LIST", "CONFIG_BUG"],
    },
    SplatClass {
        name: RACE_CLASS,
        markers: &["BUG: KCSAN:"],
        needs: &["CONFIG_KCSAN"],
    },
    SplatClass {
        name: "memory leak (kmemleak)",
        // Not a log line: the agent scans after each scenario and reads
        // kmemleak's file, whose reports start with this.
        markers: &["unreferenced object"],
        needs: &["CONFIG_DEBUG_KMEMLEAK"],
    },
    SplatClass {
        name: "undefined behaviour (UBSAN)",
        markers: &["UBSAN:"],
        needs: &["CONFIG_UBSAN"],
    },
    SplatClass {
        name: "hung task",
        markers: &["blocked for more than"],
        needs: &["CONFIG_DETECT_HUNG_TASK"],
    },
    SplatClass {
        name: "soft lockup",
        markers: &["soft lockup"],
        needs: &["CONFIG_SOFTLOCKUP_DETECTOR"],
    },
    SplatClass {
        name: "hard lockup",
        markers: &["hard LOCKUP"],
        needs: &["CONFIG_HARDLOCKUP_DETECTOR"],
    },
    SplatClass {
        name: "RCU stall",
        markers: &[
            "detected stalls on CPUs/tasks",
            "self-detected stall",
            "rcu: INFO:",
        ],
        needs: &[],
    },
    SplatClass {
        name: "BUG_ON",
        markers: &["kernel BUG at"],
        // Without CONFIG_BUG a BUG() is an endless loop: a hang, not a report.
        needs: &["CONFIG_BUG"],
    },
    SplatClass {
        name: "oops",
        markers: &[
            "BUG:",
            "Oops",
            "general protection fault",
            "Unable to handle kernel",
            "Kernel panic",
            "stack-protector:",
        ],
        needs: &[],
    },
    SplatClass {
        name: "warning",
        markers: &["WARNING:", "refcount_t:"],
        // tinyconfig's default: every WARN_ON() compiles to nothing.
        needs: &["CONFIG_BUG"],
    },
    SplatClass {
        name: "stack dump",
        markers: &["Call Trace:"],
        needs: &[],
    },
];

/// Lines that carry a marker but report nothing wrong, with why.
pub(crate) const ALLOWED: &[(&str, &str)] = &[(
    "KFENCE: initialized",
    "KFENCE's boot banner, not a report (reports start with `BUG: KFENCE:`)",
)];

/// KCSAN's sampling knob, a runtime parameter of the race kernel: one
/// watchpoint every this many instrumented memory accesses on each CPU
/// (KCSAN's default: 4000). The agent samples densely while a scenario
/// hunts races; a loader samples more densely still around a rare side
/// (`harness_loader::race::RareSide`).
pub const KCSAN_SKIP_WATCH: &str = "/sys/module/kcsan/parameters/skip_watch";

/// KCSAN's other runtime knob: how long, in microseconds, a watchpoint set
/// in a task's context holds (KCSAN's default: 80, randomised down to 0).
pub const KCSAN_UDELAY_TASK: &str = "/sys/module/kcsan/parameters/udelay_task";

/// The class KCSAN's reports are of.
pub const RACE_CLASS: &str = "data race (KCSAN)";

/// How a scenario's failure for a splat of `class` begins.
pub fn splat_failure_head(class: &str) -> String {
    format!("the kernel log holds a splat ({class})")
}

/// Whether a scenario's failure is a data race KCSAN reported and the
/// agent counted against it (in the subject's module or the BPF core).
pub fn is_race_failure(failure: &str) -> bool {
    failure.starts_with(&splat_failure_head(RACE_CLASS))
}

/// Data races the kernel is known to have on the paths a scenario takes,
/// with why they are not the subject's: a report whose header holds one is
/// never counted. Empty until one is seen.
pub(crate) const KNOWN_RACES: &[(&str, &str)] = &[];

/// Whether a KCSAN report (`BUG: KCSAN: data-race in A / B`, then the two
/// stacks) is the subject's to answer for: one of the two racing functions
/// is its module's (`f [module]`) or the BPF core's (kernel/bpf/: `bpf_*`,
/// `__bpf_*`, `btf_*`). The kernel races on its own (the trace ring buffer,
/// poll wakeups), also under a stack the module called from, and KCSAN
/// reports those too; a scenario is not failed for them.
pub fn race_is_the_subjects(lines: &[String], module: Option<&str>) -> bool {
    let Some(header) = lines.first() else {
        return false;
    };
    if KNOWN_RACES.iter().any(|(race, _)| header.contains(race)) {
        return false;
    }
    let racing = header
        .split_once("data-race in ")
        .map_or("", |(_, functions)| functions);
    let tag = module.map(|name| format!("[{name}]"));
    racing.split(" / ").map(str::trim).any(|function| {
        let in_module = tag
            .as_ref()
            .is_some_and(|tag| function.ends_with(tag.as_str()));
        let in_bpf_core = ["bpf_", "__bpf_", "btf_"]
            .iter()
            .any(|prefix| function.starts_with(prefix));
        in_module || in_bpf_core
    })
}

/// The class kmemleak's reports are of.
pub const LEAK_CLASS: &str = "memory leak (kmemleak)";

/// The class of a splat line, or None for a line that reports nothing wrong.
pub fn classify(line: &str) -> Option<&'static SplatClass> {
    if ALLOWED.iter().any(|(allowed, _)| line.contains(allowed)) {
        return None;
    }
    CLASSES
        .iter()
        .find(|class| class.markers.iter().any(|marker| line.contains(marker)))
}

/// The classes a kernel with this `.config` text cannot report.
pub fn unchecked_classes(config: &str) -> Vec<&'static SplatClass> {
    let set = |option: &str| {
        config
            .lines()
            .any(|line| line.strip_prefix(option) == Some("=y"))
    };
    CLASSES
        .iter()
        .filter(|class| !class.needs.iter().all(|option| set(option)))
        .collect()
}

/// `CONFIG_A and CONFIG_B`, what a class needs.
pub fn needs_text(class: &SplatClass) -> String {
    class.needs.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_race_counts_when_the_module_or_the_bpf_core_is_in_it() {
        let report = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
        let ours = report(
            "BUG: KCSAN: data-race in trigger_write [demo_mod] / trigger_write [demo_mod]\n\
             \n\
             write to 0xffffffffc0004000 of 8 bytes by task 80 on cpu 1:\n \
             trigger_write+0x5c/0x1c0 [demo_mod]\n proc_reg_write+0x80/0xc0",
        );
        assert!(race_is_the_subjects(&ours, Some("demo_mod")));
        let core =
            report("BUG: KCSAN: data-race in bpf_struct_ops_map_update_elem / __bpf_prog_enter");
        assert!(race_is_the_subjects(&core, Some("demo_mod")));
        let kernel = report(
            "BUG: KCSAN: data-race in mas_update_gap.part.0 / ring_buffer_unlock_commit\n\n\
             read to 0xffff88800a1b2c00 of 1 bytes by task 12 on cpu 0:\n \
             ring_buffer_unlock_commit+0x20/0x90\n trigger_write+0x5c/0x1c0 [demo_mod]",
        );
        assert!(!race_is_the_subjects(&kernel, Some("demo_mod")));
        assert!(!race_is_the_subjects(&kernel, None));
    }

    fn is_splat(line: &str) -> bool {
        classify(line).is_some()
    }

    #[test]
    fn each_kind_of_splat_is_found() {
        for line in [
            "BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "WARNING: CPU: 0 PID: 61 at kernel/bpf/bpf_struct_ops.c:300 foo+0x1/0x2",
            "Oops: 0002 [#1] SMP NOPTI",
            "BUG: KASAN: use-after-free in trigger_write",
            "UBSAN: array-index-out-of-bounds in kmod/demo.c:12:3",
            "WARNING: possible circular locking dependency detected",
            "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [struct_ops:70]",
            "INFO: task struct_ops:70 blocked for more than 120 seconds.",
        ] {
            assert!(is_splat(line), "not recognised as a splat: {line}");
        }
    }

    #[test]
    fn each_report_is_named_by_its_most_specific_class() {
        for (line, class) in [
            (
                "BUG: KASAN: slab-use-after-free in trigger_write+0x1/0x2",
                "KASAN memory error",
            ),
            (
                "WARNING: possible circular locking dependency detected",
                "lockdep lock order or state",
            ),
            ("WARNING: suspicious RCU usage", "RCU usage"),
            (
                "BUG: sleeping function called from invalid context at x.c:1",
                "sleep in atomic context",
            ),
            (
                "list_del corruption. prev->next should be ...",
                "list corruption",
            ),
            ("BUG: kernel NULL pointer dereference, address: 8", "oops"),
            ("kernel BUG at kernel/bpf/bpf_struct_ops.c:99!", "BUG_ON"),
            (
                "WARNING: CPU: 0 PID: 1 at kernel/x.c:2 f+0x1/0x2",
                "warning",
            ),
        ] {
            assert_eq!(
                classify(line).map(|class| class.name),
                Some(class),
                "{line}"
            );
        }
        assert_eq!(classify("KFENCE: initialized - using 2097152 bytes"), None);
    }

    #[test]
    fn a_kernel_without_the_options_cannot_report_their_classes() {
        let debug = "CONFIG_BUG=y\nCONFIG_KASAN=y\nCONFIG_KFENCE=y\nCONFIG_PROVE_LOCKING=y\nCONFIG_PROVE_RCU=y\n\
                     CONFIG_DEBUG_ATOMIC_SLEEP=y\nCONFIG_DEBUG_LIST=y\nCONFIG_DETECT_HUNG_TASK=y\n\
                     CONFIG_SOFTLOCKUP_DETECTOR=y\nCONFIG_UBSAN=y\nCONFIG_DEBUG_KMEMLEAK=y\n";
        let names = |config| {
            unchecked_classes(config)
                .iter()
                .map(|class| class.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(debug), ["data race (KCSAN)", "hard lockup"]);
        let race = "CONFIG_BUG=y\nCONFIG_KCSAN=y\n";
        assert!(!names(race).contains(&"data race (KCSAN)"));
        assert!(names(race).contains(&"memory leak (kmemleak)"));
        let default =
            "CONFIG_DETECT_HUNG_TASK=y\nCONFIG_SOFTLOCKUP_DETECTOR=y\n# CONFIG_KASAN is not set\n";
        assert!(names(default).contains(&"KASAN memory error"));
        assert!(names(default).contains(&"lockdep lock order or state"));
        assert!(!names(default).contains(&"hung task"));
        // tinyconfig's CONFIG_BUG=n silences every WARN_ON.
        assert!(names(default).contains(&"warning"));
        assert!(names(default).contains(&"BUG_ON"));
    }

    #[test]
    fn the_module_warning_text_is_not_a_splat() {
        // pr_warn output is a plain line; only the kernel's WARNING: banner counts.
        assert!(!is_splat("demo_ops: unexpected unreg"));
    }
}
