//! A workload's contract between the agent and its child process (the
//! subject's one binary re-executed under [`crate::roles::WORKLOAD`]): the
//! words the agent starts it with ([`WorkloadArgs`]) and the JSON report it
//! prints on stdout ([`WorkloadReport`]). Both sides use these types.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};

/// What each worker thread does until the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Spins, reading the clock: always runnable.
    Busy,
    /// Calls `sched_yield` in a loop: runnable, but gives the CPU away.
    Yielding,
    /// Sleeps `period` at a time: mostly not runnable.
    Sleeping {
        /// How long each sleep lasts.
        period: Duration,
    },
}

impl Activity {
    /// The word `--activity` carries: `busy`, `yielding`, `sleeping-<µs>us`.
    pub(crate) fn to_word(self) -> String {
        match self {
            Activity::Busy => "busy".to_owned(),
            Activity::Yielding => "yielding".to_owned(),
            Activity::Sleeping { period } => format!("sleeping-{}us", period.as_micros()),
        }
    }

    /// The activity back from [`Activity::to_word`]'s form.
    pub(crate) fn from_word(word: &str) -> Result<Activity, String> {
        match word {
            "busy" => Ok(Activity::Busy),
            "yielding" => Ok(Activity::Yielding),
            _ => word
                .strip_prefix("sleeping-")
                .and_then(|rest| rest.strip_suffix("us"))
                .and_then(|micros| micros.parse().ok())
                .map(|micros| Activity::Sleeping {
                    period: Duration::from_micros(micros),
                })
                .ok_or_else(|| {
                    format!("not an activity: {word} (busy, yielding or sleeping-<µs>us)")
                }),
        }
    }
}

/// The words after `__workload`: what the child runs.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "__workload", no_binary_name = true)]
pub struct WorkloadArgs {
    /// What each thread does.
    #[arg(long, value_parser = Activity::from_word)]
    pub activity: Activity,
    /// How many worker threads.
    #[arg(long)]
    pub threads: usize,
    /// How long they run, in microseconds on the command line.
    #[arg(long = "duration-us", value_parser = micros)]
    pub duration: Duration,
    /// The CPUs the threads are pinned to, round-robin; none: no pinning.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
    /// The cgroup v2 directory the child moves itself into before the
    /// threads start (the agent creates and removes it).
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// Each thread sets the policy SCHED_EXT before it starts.
    #[arg(long)]
    pub sched_ext: bool,
}

fn micros(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_micros)
        .map_err(|err| format!("not a number of microseconds: {text}: {err}"))
}

impl WorkloadArgs {
    /// The words the agent passes after `__workload`; [`WorkloadArgs::parse_words`]
    /// gives these arguments back.
    pub fn to_words(&self) -> Vec<String> {
        let mut words = vec![
            "--activity".to_owned(),
            self.activity.to_word(),
            "--threads".to_owned(),
            self.threads.to_string(),
            "--duration-us".to_owned(),
            self.duration.as_micros().to_string(),
        ];
        if !self.cpus.is_empty() {
            words.push("--cpus".to_owned());
            words.push(join(&self.cpus));
        }
        if let Some(cgroup) = &self.cgroup {
            words.push("--cgroup".to_owned());
            words.push(cgroup.display().to_string());
        }
        if self.sched_ext {
            words.push("--sched-ext".to_owned());
        }
        words
    }

    /// The arguments in `words` (those after `__workload`); clap's error
    /// (usage included) when they are not a workload's.
    pub fn parse_words<I, T>(words: I) -> Result<WorkloadArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        WorkloadArgs::try_parse_from(words)
    }

    /// The CPU thread `index` is pinned to, if the workload pins.
    pub fn cpu_of(&self, index: usize) -> Option<usize> {
        (!self.cpus.is_empty()).then(|| self.cpus[index % self.cpus.len()])
    }
}

/// `1 thread`, `4 threads`; with `what` between: `4 busy threads`.
pub fn count_threads(count: usize, what: &str) -> String {
    let noun = if count == 1 { "thread" } else { "threads" };
    match what {
        "" => format!("{count} {noun}"),
        what => format!("{count} {what} {noun}"),
    }
}

/// `0,1,3`.
pub fn join(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The scheduling class a thread saw itself on, from the `ext.enabled`
/// line of `/proc/thread-self/sched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedClass {
    /// `ext.enabled` 0: a worker (SCHED_NORMAL, or SCHED_EXT with no BPF
    /// scheduler taking it) runs on the fair class.
    Fair,
    /// `ext.enabled` 1: the BPF scheduler schedules it.
    Ext,
    /// No `ext.enabled` line (no CONFIG_SCHED_CLASS_EXT, or a kernel
    /// before 6.15 without CONFIG_SCHED_DEBUG): the kernel cannot say,
    /// and nothing here guesses.
    Unknown,
}

impl SchedClass {
    /// The class the text of `/proc/<pid>/sched` shows; `Unknown` when it
    /// has no `ext.enabled` line, or one that is not a number.
    pub fn from_sched_file(text: &str) -> SchedClass {
        let value = text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == "ext.enabled").then(|| value.trim().parse::<i64>().ok())?
        });
        match value {
            Some(0) => SchedClass::Fair,
            Some(_) => SchedClass::Ext,
            None => SchedClass::Unknown,
        }
    }
}

impl std::fmt::Display for SchedClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchedClass::Fair => "fair",
            SchedClass::Ext => "ext",
            SchedClass::Unknown => "unknown (no ext.enabled line: the kernel cannot say)",
        })
    }
}

/// What one worker thread saw of itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadReport {
    /// Its thread id.
    pub tid: i32,
    /// The CPU it was pinned to, if the workload pins.
    pub assigned_cpu: Option<usize>,
    /// The classes its samples showed, in order, repeats collapsed: one
    /// entry unless its class changed while it ran.
    pub classes: Vec<SchedClass>,
    /// How many times it sampled its class.
    pub samples: u32,
    /// The CPUs it was seen running on (`sched_getcpu`), ascending.
    pub cpus: Vec<usize>,
    /// Its cgroup v2 path (`/w`), from `/proc/thread-self/cgroup`; None
    /// on a kernel without cgroups.
    pub cgroup: Option<String>,
    /// How many rounds of its activity it did (spins, yields, sleeps).
    pub rounds: u64,
    /// Its CPU time, user and system, in microseconds.
    pub cpu_time_us: u64,
    /// Times it gave up the CPU itself (slept, yielded with another runnable).
    pub voluntary_switches: u64,
    /// Times it was preempted.
    pub involuntary_switches: u64,
}

impl ThreadReport {
    /// Its class when every sample showed the same one.
    pub fn class(&self) -> Option<SchedClass> {
        match self.classes.as_slice() {
            [class] => Some(*class),
            _ => None,
        }
    }

    /// `fair`, or `fair, then ext` when its class changed while it ran.
    pub(crate) fn class_text(&self) -> String {
        match self.classes.as_slice() {
            [] => "never sampled".to_owned(),
            classes => classes
                .iter()
                .map(SchedClass::to_string)
                .collect::<Vec<_>>()
                .join(", then "),
        }
    }

    /// Whether it ran on its assigned CPU alone; None when it had none.
    pub(crate) fn stayed_on_assigned_cpu(&self) -> Option<bool> {
        self.assigned_cpu.map(|cpu| self.cpus == [cpu])
    }

    /// Its figures that vary from run to run, in words.
    pub fn figures(&self) -> String {
        format!(
            "tid {}: cpu time {} ms, {} voluntary and {} involuntary switches, {} rounds, \
             cpus {}, {} class samples",
            self.tid,
            self.cpu_time_us / 1000,
            self.voluntary_switches,
            self.involuntary_switches,
            self.rounds,
            join(&self.cpus),
            self.samples
        )
    }
}

/// The cgroup v2 path in the text of `/proc/<pid>/cgroup` (its `0::`
/// line); None without one (no CONFIG_CGROUPS).
pub fn cgroup_in(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// A setup step that failed in the child, before any worker ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupFailure {
    /// What was being set up, and what its failure usually means.
    pub what: String,
    /// The errno it failed with.
    pub errno: i32,
}

/// What the workload's child prints on stdout, as one JSON line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// Set when setup failed; no thread ran then.
    pub setup_failure: Option<SetupFailure>,
    /// Each worker thread that ran, in the order they were started.
    pub threads: Vec<ThreadReport>,
}

impl WorkloadReport {
    /// The report as the child prints it: one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| {
            // A report of plain numbers and strings always serialises;
            // should it not, the agent says it found no report.
            format!("serialising the workload report: {err}")
        })
    }

    /// The report in a child's stdout: its last line that is one.
    pub fn find_in(stdout: &str) -> Option<WorkloadReport> {
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
    }

    /// How many threads sampled `class` and nothing else.
    pub fn on_class(&self, class: SchedClass) -> usize {
        self.threads
            .iter()
            .filter(|thread| thread.class() == Some(class))
            .count()
    }

    /// What is the same every run, for a step's stdout: how many threads
    /// ran, how many were on each class and in each cgroup (in the order
    /// first seen), and with pinning, how many stayed on their CPU.
    /// Figures stay out.
    pub fn summary(&self) -> String {
        let mut text = format!("{} ran\n", count_threads(self.threads.len(), ""));
        if let Some(failure) = &self.setup_failure {
            text.push_str(&format!("setup failed: {}\n", failure.what));
        }
        for (class, count) in tally(self.threads.iter().map(ThreadReport::class_text)) {
            text.push_str(&format!("class {class}: {count}\n"));
        }
        let cgroups = self
            .threads
            .iter()
            .filter_map(|thread| thread.cgroup.clone());
        for (cgroup, count) in tally(cgroups) {
            text.push_str(&format!("in cgroup {cgroup}: {count}\n"));
        }
        let pinned = self
            .threads
            .iter()
            .filter_map(ThreadReport::stayed_on_assigned_cpu);
        let stayed = pinned.clone().filter(|stayed| *stayed).count();
        if pinned.count() > 0 {
            text.push_str(&format!("on their assigned cpu throughout: {stayed}\n"));
        }
        text
    }
}

/// Each distinct value and how many times it came, in the order first seen.
fn tally(values: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for value in values {
        match counts.iter_mut().find(|(seen, _)| *seen == value) {
            Some((_, count)) => *count += 1,
            None => counts.push((value, 1)),
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(classes: &[SchedClass], assigned: Option<usize>, cpus: &[usize]) -> ThreadReport {
        ThreadReport {
            tid: 7,
            assigned_cpu: assigned,
            classes: classes.to_vec(),
            samples: 8,
            cpus: cpus.to_vec(),
            ..ThreadReport::default()
        }
    }

    #[test]
    fn what_the_agent_renders_the_child_parses_back() {
        let all = WorkloadArgs {
            activity: Activity::Sleeping {
                period: Duration::from_micros(2500),
            },
            threads: 4,
            duration: Duration::from_millis(300),
            cpus: vec![0, 1, 3],
            cgroup: Some(PathBuf::from("/sys/fs/cgroup/w")),
            sched_ext: true,
        };
        let bare = WorkloadArgs {
            activity: Activity::Yielding,
            cpus: Vec::new(),
            cgroup: None,
            sched_ext: false,
            ..all.clone()
        };
        for args in [all, bare] {
            let parsed = WorkloadArgs::parse_words(args.to_words()).unwrap();
            assert_eq!(parsed, args);
        }
        assert_eq!(Activity::from_word("busy"), Ok(Activity::Busy));
        assert!(Activity::from_word("sleeping-tenus").is_err());
        assert!(WorkloadArgs::parse_words(["--threads", "2"]).is_err());
    }

    #[test]
    fn threads_are_pinned_round_robin() {
        let args = WorkloadArgs::parse_words([
            "--activity=busy",
            "--threads=3",
            "--duration-us=1",
            "--cpus=2,5",
        ])
        .unwrap();
        let cpus: Vec<_> = (0..3).map(|index| args.cpu_of(index)).collect();
        assert_eq!(cpus, [Some(2), Some(5), Some(2)]);
        let unpinned = WorkloadArgs {
            cpus: vec![],
            ..args
        };
        assert_eq!(unpinned.cpu_of(0), None);
    }

    #[test]
    fn the_class_is_what_ext_enabled_says_and_unknown_without_it() {
        let line = |value: &str| format!("{:<45}:{:>21}\n", "ext.enabled", value);
        let head = "workload (123, #threads: 3)\n---------\nse.exec_start : 1.0\n";
        let on = format!("{head}{}policy : 7\n", line("1"));
        let off = format!("{head}{}policy : 0\n", line("0"));
        assert_eq!(SchedClass::from_sched_file(&on), SchedClass::Ext);
        assert_eq!(SchedClass::from_sched_file(&off), SchedClass::Fair);
        assert_eq!(SchedClass::from_sched_file(head), SchedClass::Unknown);
        assert_eq!(SchedClass::from_sched_file(""), SchedClass::Unknown);
        // A line that only starts like it is not it.
        let other = format!(
            "{head}{}",
            line("1").replace("ext.enabled", "ext.enabled_x")
        );
        assert_eq!(SchedClass::from_sched_file(&other), SchedClass::Unknown);
    }

    #[test]
    fn the_report_survives_the_pipe_among_other_lines() {
        let report = WorkloadReport {
            setup_failure: None,
            threads: vec![thread(&[SchedClass::Ext], Some(1), &[1])],
        };
        let stdout = format!("some other line\n{}\n", report.to_json());
        assert_eq!(WorkloadReport::find_in(&stdout), Some(report));
        assert_eq!(WorkloadReport::find_in("not json\n"), None);
    }

    #[test]
    fn the_summary_counts_classes_and_pinning_and_leaves_figures_out() {
        use SchedClass::*;
        let report = WorkloadReport {
            setup_failure: None,
            threads: vec![
                thread(&[Ext], Some(0), &[0]),
                ThreadReport {
                    cpu_time_us: 123_456,
                    cgroup: Some("/w".to_owned()),
                    ..thread(&[Ext], Some(1), &[1])
                },
                thread(&[Fair, Ext], Some(0), &[0, 1]),
            ],
        };
        assert_eq!(
            report.summary(),
            "3 threads ran\nclass ext: 2\nclass fair, then ext: 1\nin cgroup /w: 1\n\
             on their assigned cpu throughout: 2\n"
        );
        assert_eq!(report.on_class(Ext), 2);
        assert_eq!(report.on_class(Fair), 0);
        let unpinned = WorkloadReport {
            setup_failure: None,
            threads: vec![thread(&[Unknown], None, &[0, 1]); 2],
        };
        assert_eq!(
            unpinned.summary(),
            "2 threads ran\nclass unknown (no ext.enabled line: the kernel cannot say): 2\n"
        );
    }

    #[test]
    fn the_cgroup_is_the_v2_line_of_proc_cgroup() {
        assert_eq!(cgroup_in("0::/w\n"), Some("/w".to_owned()));
        assert_eq!(cgroup_in("1:name=systemd:/\n0::/\n"), Some("/".to_owned()));
        assert_eq!(cgroup_in(""), None);
    }

    #[test]
    fn a_failed_setup_says_what_failed_and_that_no_thread_ran() {
        let report = WorkloadReport {
            setup_failure: Some(SetupFailure {
                what: "setting the policy SCHED_EXT".to_owned(),
                errno: 22,
            }),
            threads: Vec::new(),
        };
        assert_eq!(count_threads(1, ""), "1 thread");
        assert_eq!(
            report.summary(),
            "0 threads ran\nsetup failed: setting the policy SCHED_EXT\n"
        );
    }
}
