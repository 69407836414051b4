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

/// At most this many splats are kept: the first ones explain the rest.
const MAX_SPLATS: usize = 20;

/// Finds splats in a log read one line at a time, each with the lines that
/// follow it (up to `context`), so that a failure shows what happened and where.
#[derive(Debug, Clone)]
pub struct SplatScanner {
    context: usize,
    splats: Vec<Vec<String>>,
    /// Lines still to add to the last splat.
    remaining: usize,
}

impl SplatScanner {
    pub fn new(context: usize) -> Self {
        SplatScanner {
            context,
            splats: Vec::new(),
            remaining: 0,
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.remaining > 0 {
            self.remaining -= 1;
            if let Some(splat) = self.splats.last_mut() {
                splat.push(line.to_owned());
            }
        } else if is_splat(line) && self.splats.len() < MAX_SPLATS {
            self.splats.push(vec![line.to_owned()]);
            self.remaining = self.context;
        }
    }

    pub fn splats(&self) -> &[Vec<String>] {
        &self.splats
    }
}

/// Lines of `log` that hold a splat, each with the lines that follow it (up
/// to `context`).
pub fn find_splats(log: &[String], context: usize) -> Vec<Vec<String>> {
    let mut scanner = SplatScanner::new(context);
    for line in log {
        scanner.push(line);
    }
    scanner.splats
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
        assert_eq!(splats[0], log[1..4]);
    }

    #[test]
    fn the_module_warning_text_is_not_a_splat() {
        // pr_warn output is a plain line; only the kernel's WARNING: banner counts.
        assert!(!is_splat("bpf_testmod_ops: unexpected unreg"));
    }
}
