//! Kernel log lines that mean the kernel itself went wrong.

/// Markers of oopses, warnings, sanitizer reports, lockdep reports, stalls
/// and lockups, as the kernel prints them.
const MARKERS: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "KASAN",
    "UBSAN",
    "possible circular locking dependency",
    "possible recursive locking",
    "inconsistent lock state",
    "suspicious RCU usage",
    "rcu_sched detected stalls",
    "rcu: INFO:",
    "detected stall",
    "soft lockup",
    "hard LOCKUP",
    "blocked for more than",
    "Kernel panic",
    "general protection fault",
    "Call Trace:",
];

/// Lines of `log` that hold a splat, each with the lines that follow it (up to
/// `context`), so that the failure shows what happened and where.
pub fn find_splats(log: &[String], context: usize) -> Vec<&[String]> {
    let mut splats = Vec::new();
    let mut index = 0;
    while index < log.len() {
        if is_splat(&log[index]) {
            let end = (index + 1 + context).min(log.len());
            splats.push(&log[index..end]);
            index = end;
        } else {
            index += 1;
        }
    }
    splats
}

pub fn is_splat(line: &str) -> bool {
    MARKERS.iter().any(|marker| line.contains(marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_clean_log_has_no_splat() {
        let log = lines("bpf_testmod_ops registered\ntest_1() returned: 42\nbpf_testmod unloaded");
        assert!(find_splats(&log, 5).is_empty());
    }

    #[test]
    fn each_kind_of_splat_is_found() {
        for line in [
            "BUG: kernel NULL pointer dereference, address: 0000000000000008",
            "WARNING: CPU: 0 PID: 61 at kernel/bpf/bpf_struct_ops.c:300 foo+0x1/0x2",
            "Oops: 0002 [#1] SMP NOPTI",
            "BUG: KASAN: use-after-free in trigger_write",
            "UBSAN: array-index-out-of-bounds in kmod/bpf_testmod.c:12:3",
            "WARNING: possible circular locking dependency detected",
            "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:",
            "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [struct_ops:70]",
            "INFO: task struct_ops:70 blocked for more than 120 seconds.",
        ] {
            assert!(is_splat(line), "not recognised as a splat: {line}");
        }
    }

    #[test]
    fn a_splat_comes_with_its_context() {
        let log =
            lines("ok\nBUG: unable to handle page fault\nRIP: trigger_write\nCall Trace:\nok");
        let splats = find_splats(&log, 2);
        assert_eq!(splats.len(), 1);
        assert_eq!(splats[0], &log[1..4]);
    }

    #[test]
    fn the_module_warning_text_is_not_a_splat() {
        // pr_warn output is a plain line; only the kernel's WARNING: banner counts.
        assert!(!is_splat("bpf_testmod_ops: unexpected unreg"));
    }
}
