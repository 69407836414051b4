//! Finding splats in the kernel log as the agent reads it, with the classes
//! of [`harness_wire::splat`], and KCSAN's sampling while a scenario hunts races.

use harness_wire::protocol::{Source, TimelineLine};
use harness_wire::splat::{classify, race_is_the_subjects, KCSAN_SKIP_WATCH, KCSAN_UDELAY_TASK};

/// One watchpoint every this many accesses while a scenario that hunts
/// races runs. The race kernel instruments only the subject's modules and
/// the BPF core, so these are their accesses: a call into a module makes a
/// handful, and at 100 a call's accesses are watched every few dozen
/// calls, while the delays stay a small part of a call's time. (KCSAN's
/// default, 4000, suits hours of fuzzing, not a scenario of seconds.)
pub(crate) const DENSE_SKIP_WATCH: u32 = 100;

/// KCSAN's knobs as the kernel booted with them, read before the first
/// change: the sampling interval, and the watchpoints' delay, which a
/// loader's `RareSide` raises for a while (and cannot put back if it is
/// killed first).
static BOOT_VALUES: std::sync::OnceLock<[(&'static str, String); 2]> = std::sync::OnceLock::new();

/// On a KCSAN kernel (a no-op on any other), samples densely
/// ([`DENSE_SKIP_WATCH`]) or, with `dense` false, as the kernel booted.
/// The agent samples densely for the steps of a scenario that hunts races
/// only: the module's load walks the kernel's BTF, which dense sampling
/// slows enough, on a loaded TCG host, for the soft-lockup detector.
pub(crate) fn tune_kcsan(dense: bool) -> std::io::Result<()> {
    if !std::path::Path::new(KCSAN_SKIP_WATCH).exists() {
        return Ok(());
    }
    let boot = match BOOT_VALUES.get() {
        Some(boot) => boot,
        None => {
            let read = |knob| std::fs::read_to_string(knob).map(|value| value.trim().to_owned());
            let values = [
                (KCSAN_SKIP_WATCH, read(KCSAN_SKIP_WATCH)?),
                (KCSAN_UDELAY_TASK, read(KCSAN_UDELAY_TASK)?),
            ];
            BOOT_VALUES.get_or_init(|| values)
        }
    };
    for (knob, value) in boot {
        let value = match (dense, *knob == KCSAN_SKIP_WATCH) {
            (true, true) => DENSE_SKIP_WATCH.to_string(),
            _ => value.clone(),
        };
        std::fs::write(knob, value)?;
    }
    Ok(())
}

/// KCSAN's statistics (`/sys/kernel/debug/kcsan`), read before and after
/// the steps of a scenario that hunts races.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KcsanCounters {
    /// Accesses KCSAN watched.
    setup_watchpoints: i64,
    /// Races it saw, from both ends (reported or not).
    data_races: i64,
}

impl KcsanCounters {
    const PATH: &'static str = "/sys/kernel/debug/kcsan";

    /// The counters, on a kernel with KCSAN and debugfs mounted.
    pub(crate) fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string(Self::PATH).ok()?)
    }

    /// From debugfs's text: `name: value` lines, then the report filter.
    fn parse(text: &str) -> Option<Self> {
        let counter = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .and_then(|value| value.trim().parse().ok())
        };
        Some(KcsanCounters {
            setup_watchpoints: counter("setup_watchpoints")?,
            data_races: counter("data_races")?,
        })
    }

    /// The measurement of what changed since `start`.
    pub(crate) fn since(&self, start: &Self) -> String {
        format!(
            "KCSAN while hunting races: {} accesses watched, {} data races seen (in the subject or not)",
            self.setup_watchpoints - start.setup_watchpoints,
            self.data_races - start.data_races
        )
    }
}

/// At most this many splats are kept: the first ones explain the rest.
const MAX_SPLATS: usize = 20;

/// A report in the kernel log: its class and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splat {
    pub(crate) class: &'static str,
    pub(crate) lines: Vec<String>,
}

/// Finds splats in a log read one line at a time, each with the lines that
/// follow it (up to `context`), so that a failure shows what happened and where.
#[derive(Debug, Clone)]
pub(crate) struct SplatScanner {
    context: usize,
    splats: Vec<Splat>,
    /// Lines still to add to the last splat.
    remaining: usize,
}

impl SplatScanner {
    pub(crate) fn new(context: usize) -> Self {
        SplatScanner {
            context,
            splats: Vec::new(),
            remaining: 0,
        }
    }

    pub(crate) fn push(&mut self, line: &str) {
        if self.remaining > 0 {
            self.remaining -= 1;
            if let Some(splat) = self.splats.last_mut() {
                splat.lines.push(line.to_owned());
            }
        } else if let Some(class) = classify(line) {
            if self.splats.len() < MAX_SPLATS {
                self.splats.push(Splat {
                    class: class.name,
                    lines: vec![line.to_owned()],
                });
                self.remaining = self.context;
            }
        }
    }

    pub(crate) fn splats(&self) -> &[Splat] {
        &self.splats
    }
}

/// The line KCSAN opens and closes each report with.
const KCSAN_RULE: &str = "==================================";

/// `timeline` without the kernel lines of KCSAN reports that are not the
/// subject's ([`race_is_the_subjects`]): the kernel races on its own (the
/// trace ring buffer, the maple tree) in a task of the scenario, and a
/// step's output (what `expect_only_lines` and the snapshot see) is no
/// place for that. Returns the kept lines and the headers of the reports
/// left out. A report can straddle two steps (the step ended while the
/// kernel printed it): `open` says one was left out unfinished at the end
/// of the last step, so this one's kernel lines up to its closing rule
/// belong to it; and it is set again when this step ends in the middle of
/// one. A tail whose header no step has ([`drop_headless_tails`]) leaves
/// too.
pub(crate) fn without_foreign_races(
    timeline: Vec<TimelineLine>,
    module: Option<&str>,
    open: &mut bool,
) -> (Vec<TimelineLine>, Vec<String>) {
    let kernel = |line: &TimelineLine| line.source == Source::Kernel;
    let closes = |line: &TimelineLine| kernel(line) && line.text.contains(KCSAN_RULE);
    let mut drop = vec![false; timeline.len()];
    let mut headers = Vec::new();
    let mut at = 0;
    if std::mem::take(open) {
        let end = timeline.iter().position(closes);
        for (index, line) in timeline.iter().enumerate() {
            if end.is_some_and(|end| index > end) {
                break;
            }
            drop[index] = kernel(line);
        }
        *open = end.is_none();
        at = end.map_or(timeline.len(), |end| end + 1);
    }
    while at < timeline.len() {
        let opens = kernel(&timeline[at]) && timeline[at].text.contains("BUG: KCSAN:");
        if !opens {
            at += 1;
            continue;
        }
        let header = timeline[at].text.clone();
        let closing = (at + 1..timeline.len()).find(|&index| closes(&timeline[index]));
        let end = closing.unwrap_or(timeline.len() - 1);
        if !race_is_the_subjects(std::slice::from_ref(&header), module) {
            // The rule above the header belongs to the report too.
            let start = match at.checked_sub(1) {
                Some(before) if timeline[before].text.contains(KCSAN_RULE) => before,
                _ => at,
            };
            for (index, line) in timeline.iter().enumerate().take(end + 1).skip(start) {
                drop[index] = kernel(line);
            }
            headers.push(header);
            *open = closing.is_none();
        }
        at = end + 1;
    }
    if drop_headless_tails(&timeline, &mut drop, module) {
        headers.push("a KCSAN report's tail without its header".to_owned());
    }
    let kept = (timeline.into_iter().zip(drop))
        .filter_map(|(line, dropped)| (!dropped).then_some(line))
        .collect();
    (kept, headers)
}

/// Marks the tails of KCSAN reports whose header is not in `timeline` and
/// that name no function of `module`. Seen once on the race kernel: a
/// maple-tree race's report reached `concurrent_attach`'s timeline from
/// the middle of its second stack on, while the console had it whole and
/// the trace buffer counted no loss (why the head was missing is not
/// known), and failed the step's snapshot. Such a tail is the lines before
/// `Reported by Kernel Concurrency Sanitizer on:` that look like a
/// report's (stack frames, the accesses, blank lines) and the lines after
/// it up to the closing rule. Whether one was marked.
fn drop_headless_tails(timeline: &[TimelineLine], drop: &mut [bool], module: Option<&str>) -> bool {
    let kernel = |index: usize| timeline[index].source == Source::Kernel && !drop[index];
    let body = |text: &str| {
        let text = text.trim();
        text.is_empty()
            || REPORT_BODY.iter().any(|start| text.starts_with(start))
            || FRAME.is_match(text)
    };
    let tag = module.map(|name| format!("[{name}]"));
    let mut tails = Vec::new();
    for trailer in 0..timeline.len() {
        if !kernel(trailer) || timeline[trailer].text.trim() != KCSAN_TRAILER {
            continue;
        }
        let mut start = trailer;
        while start > 0 && kernel(start - 1) && body(&timeline[start - 1].text) {
            start -= 1;
        }
        let closing = (trailer + 1..timeline.len().min(trailer + 8))
            .find(|&index| kernel(index) && timeline[index].text.contains(KCSAN_RULE));
        // A report with its header here was judged by it (the subject's, if kept).
        let headed = start > 0 && timeline[start - 1].text.contains("BUG: KCSAN:");
        let Some(end) = closing.filter(|_| !headed) else {
            continue;
        };
        let names_module = (start..=end).any(|index| {
            tag.as_ref()
                .is_some_and(|tag| timeline[index].text.contains(tag.as_str()))
        });
        if !names_module {
            tails.push(start..=end);
        }
    }
    for tail in &tails {
        drop[tail.clone()]
            .iter_mut()
            .for_each(|dropped| *dropped = true);
    }
    !tails.is_empty()
}

/// The line that ends a KCSAN report's stacks.
const KCSAN_TRAILER: &str = "Reported by Kernel Concurrency Sanitizer on:";

/// How the lines of a KCSAN report's stacks start (after a blank line).
const REPORT_BODY: &[&str] = &[
    "read to ",
    "write to ",
    "read-write to ",
    "read (marked) to ",
    "write (marked) to ",
    "read-write (marked) to ",
    "value changed:",
    "race at unknown origin",
];

/// A stack frame as the kernel prints it: `func+0x6b/0x180`, maybe `[module]`.
static FRAME: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"^\S+\+0x[0-9a-f]+/0x[0-9a-f]+( \[\S+\])?$").expect("a valid pattern")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcsan_counters_read_from_debugfs_and_their_change() {
        let text = |watched: i64, races: i64| {
            format!(
                "enabled: 1\nused_watchpoints: 0\nsetup_watchpoints: {watched}\n\
                 data_races: {races}\nassert_failures: 0\n\nblacklisted functions: none\n"
            )
        };
        let start = KcsanCounters::parse(&text(1000, 2)).unwrap();
        let end = KcsanCounters::parse(&text(4500, 5)).unwrap();
        assert_eq!(
            end.since(&start),
            "KCSAN while hunting races: 3500 accesses watched, 3 data races seen (in the subject or not)"
        );
        assert_eq!(KcsanCounters::parse("enabled: 1\n"), None);
    }

    /// A kernel line of a step's timeline.
    fn kernel(text: &str) -> TimelineLine {
        TimelineLine {
            source: Source::Kernel,
            text: text.into(),
        }
    }

    /// KCSAN's opening and closing rule, as the kernel prints it.
    const RULE: &str = "==================================================================";

    #[test]
    fn a_race_outside_the_subject_leaves_the_steps_output() {
        let timeline = vec![
            kernel("Calling struct_ops callbacks:"),
            kernel(RULE),
            kernel(
                "BUG: KCSAN: data-race in ring_buffer_unlock_commit / ring_buffer_unlock_commit",
            ),
            kernel(""),
            kernel("write to 0xffff888003 of 1 bytes by task 48 on cpu 0:"),
            TimelineLine {
                source: Source::Bpf,
                text: "BPF test_1 called!".into(),
            },
            kernel(RULE),
            kernel(RULE),
            kernel("BUG: KCSAN: data-race in op_write [my_module] / op_write [my_module]"),
            kernel(RULE),
            kernel("test_1() returned: 1"),
        ];
        let (kept, headers) = without_foreign_races(timeline, Some("my_module"), &mut false);
        let texts: Vec<&str> = kept.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Calling struct_ops callbacks:",
                "BPF test_1 called!",
                RULE,
                "BUG: KCSAN: data-race in op_write [my_module] / op_write [my_module]",
                RULE,
                "test_1() returned: 1",
            ]
        );
        assert_eq!(headers.len(), 1);
        assert!(headers[0].contains("ring_buffer_unlock_commit"));
    }

    /// A report whose first lines another task emitted to the console
    /// (outside the step's pids): its tail leaves the step; a tail that
    /// names the module's functions stays.
    #[test]
    fn a_headless_tail_of_a_foreign_race_leaves_the_steps_output() {
        let tail = |frame: &str| {
            vec![
                kernel("my_module loaded"),
                kernel(frame),
                kernel(" slab_alloc_node.isra.0+0x6b/0x180"),
                kernel(""),
                kernel(KCSAN_TRAILER),
                kernel("CPU: 0 UID: 0 PID: 48 Comm: vm Tainted: G           O       6.12.118 #4"),
                kernel("Tainted: [O]=OOT_MODULE"),
                kernel(RULE),
                kernel("demo_ops registered"),
            ]
        };
        let (kept, headers) = without_foreign_races(
            tail(" mas_destroy+0x307/0x750"),
            Some("my_module"),
            &mut false,
        );
        let texts: Vec<&str> = kept.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["my_module loaded", "demo_ops registered"]);
        assert_eq!(headers.len(), 1);
        let own = " test_1_write+0x10/0x40 [my_module]";
        let (kept, headers) = without_foreign_races(tail(own), Some("my_module"), &mut false);
        assert_eq!(kept.len(), 9);
        assert!(headers.is_empty());
        // The subject's own report, header and all, stays whole.
        let mut whole = vec![
            kernel(RULE),
            kernel("BUG: KCSAN: data-race in bpf_foo / bpf_bar"),
        ];
        whole.extend(tail(" bpf_foo+0x10/0x40").into_iter().skip(1));
        let (kept, headers) = without_foreign_races(whole, Some("my_module"), &mut false);
        assert_eq!(kept.len(), 10);
        assert!(headers.is_empty());
    }

    /// A foreign report the step ended in the middle of: its first part
    /// leaves this step, its tail (no header of its own) the next one's,
    /// up to its closing rule, and nothing after that.
    #[test]
    fn a_foreign_race_split_between_two_steps_leaves_both() {
        let first = vec![
            kernel("my_module loaded"),
            kernel(RULE),
            kernel("BUG: KCSAN: data-race in mas_wr_store_entry / mas_walk"),
            kernel("write to 0xffff888003 of 8 bytes by task 48 on cpu 0:"),
        ];
        let mut open = false;
        let (kept, headers) = without_foreign_races(first, Some("my_module"), &mut open);
        assert_eq!(kept.len(), 1);
        assert_eq!(headers.len(), 1);
        assert!(open, "the report is still being printed");
        let second = vec![
            kernel(" mas_store_prealloc+0x368/0x760"),
            kernel("Reported by Kernel Concurrency Sanitizer on:"),
            kernel(RULE),
            kernel("demo_ops registered"),
        ];
        let (kept, headers) = without_foreign_races(second, Some("my_module"), &mut open);
        let texts: Vec<&str> = kept.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["demo_ops registered"]);
        assert!(headers.is_empty() && !open);
    }

    /// Lines of `log` that hold a splat, each with the lines that follow it
    /// (up to `context`), as the agent's kmsg reader finds them.
    fn find_splats(log: &[String], context: usize) -> Vec<Splat> {
        let mut scanner = SplatScanner::new(context);
        for line in log {
            scanner.push(line);
        }
        scanner.splats
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_clean_log_has_no_splat() {
        let log = lines("demo_ops registered\ntest_1() returned: 42\ndemo unloaded");
        assert!(find_splats(&log, 5).is_empty());
    }

    #[test]
    fn a_splat_comes_with_its_context() {
        let log =
            lines("ok\nBUG: unable to handle page fault\nRIP: trigger_write\nCall Trace:\nok");
        let splats = find_splats(&log, 2);
        assert_eq!(splats.len(), 1);
        assert_eq!(splats[0].lines, log[1..4]);
        assert_eq!(splats[0].class, "oops");
    }
}
