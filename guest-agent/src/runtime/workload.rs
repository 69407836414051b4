//! Workloads: worker threads a scenario runs so that a scheduler has tasks
//! to schedule. They run in a child process (this binary re-executed under
//! [`roles::WORKLOAD`]), never in the agent: the scheduler under test and
//! the cgroup take only the child's threads. The agent's side is here: the
//! declaration, the child's command line, its cgroup, its report.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use harness_wire::guest_setup::CGROUP2_MAGIC;
use harness_wire::protocol::Outcome;
use harness_wire::roles;
use harness_wire::workload::{count_threads, join, Activity, WorkloadArgs, WorkloadReport};
use nix::errno::Errno;

use super::loader;

/// Where PID 1 mounts cgroup v2 ([`harness_wire::guest_setup::MOUNTS`]);
/// a workload's cgroup is a directory in it.
pub const CGROUP_ROOT: &str = harness_wire::guest_setup::CGROUP_ROOT;

/// How long the child may run beyond its workload's duration before it is
/// killed: thread start, setup and the report, on a slow TCG guest.
const SLACK: Duration = Duration::from_secs(30);

/// Worker threads for a scheduler to schedule: how many, doing what, for
/// how long, where. Declared as a constant and run with
/// `Context::run_workload`:
///
/// ```
/// # use std::time::Duration;
/// # use guest_agent::runtime::workload::Workload;
/// const PINNED: Workload = Workload::busy(4)
///     .for_duration(Duration::from_millis(500))
///     .on_cpus(&[0, 1])
///     .in_cgroup("pinned");
/// assert_eq!(
///     PINNED.action(),
///     "workload: 4 busy threads for 500 ms on cpus 0,1 in cgroup pinned"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    activity: Activity,
    threads: usize,
    duration: Duration,
    cpus: &'static [usize],
    cgroup: Option<&'static str>,
    sched_ext: bool,
}

impl Workload {
    const fn new(activity: Activity, threads: usize) -> Self {
        Workload {
            activity,
            threads,
            duration: Duration::from_secs(1),
            cpus: &[],
            cgroup: None,
            sched_ext: false,
        }
    }

    /// `threads` threads that spin (always runnable), for 1 s unless
    /// [`Workload::for_duration`] says otherwise.
    pub const fn busy(threads: usize) -> Self {
        Workload::new(Activity::Busy, threads)
    }

    /// `threads` threads that call `sched_yield` in a loop.
    pub const fn yielding(threads: usize) -> Self {
        Workload::new(Activity::Yielding, threads)
    }

    /// `threads` threads that sleep `period` at a time (mostly not runnable).
    pub const fn sleeping(threads: usize, period: Duration) -> Self {
        Workload::new(Activity::Sleeping { period }, threads)
    }

    /// How long the threads run (1 s by default).
    pub const fn for_duration(self, duration: Duration) -> Self {
        Workload { duration, ..self }
    }

    /// Pins thread `i` to `cpus[i % cpus.len()]`.
    pub const fn on_cpus(self, cpus: &'static [usize]) -> Self {
        Workload { cpus, ..self }
    }

    /// Runs the threads in the cgroup v2 directory `name` under
    /// [`CGROUP_ROOT`]: created if missing (and then removed after), the
    /// child moved into it before its threads start. One path component.
    pub const fn in_cgroup(self, name: &'static str) -> Self {
        Workload {
            cgroup: Some(name),
            ..self
        }
    }

    /// Each thread sets its policy to SCHED_EXT (7) before it starts, as
    /// tasks must for a scheduler in partial mode to take them. A kernel
    /// without sched_ext refuses with EINVAL: that is the step's outcome.
    pub const fn sched_ext(self) -> Self {
        Workload {
            sched_ext: true,
            ..self
        }
    }

    /// The step's action, the same every run:
    /// `workload: 4 busy threads for 1 s on cpus 0,1 in cgroup w`.
    pub fn action(&self) -> String {
        let threads = match self.activity {
            Activity::Busy => count_threads(self.threads, "busy"),
            Activity::Yielding => count_threads(self.threads, "yielding"),
            Activity::Sleeping { period } => format!(
                "{} sleeping {} at a time",
                count_threads(self.threads, ""),
                words(period)
            ),
        };
        let mut action = format!("workload: {threads} for {}", words(self.duration));
        if !self.cpus.is_empty() {
            action.push_str(&format!(" on cpus {}", join(self.cpus)));
        }
        if let Some(cgroup) = self.cgroup {
            action.push_str(&format!(" in cgroup {cgroup}"));
        }
        if self.sched_ext {
            action.push_str(" as SCHED_EXT");
        }
        action
    }

    /// The child's arguments, its cgroup at `cgroup` when it has one.
    fn args(&self, cgroup: Option<PathBuf>) -> WorkloadArgs {
        WorkloadArgs {
            activity: self.activity,
            threads: self.threads,
            duration: self.duration,
            cpus: self.cpus.to_vec(),
            cgroup,
            sched_ext: self.sched_ext,
        }
    }
}

/// `1 s`, `300 ms`, `250 µs`: whole units, so the same every run.
fn words(duration: Duration) -> String {
    match (duration.as_micros(), duration.subsec_millis()) {
        (micros, _) if micros % 1000 != 0 => format!("{micros} µs"),
        (_, 0) => format!("{} s", duration.as_secs()),
        _ => format!("{} ms", duration.as_millis()),
    }
}

/// A workload that has ended: the child's outcome and report (None when
/// it printed none), what it printed, and a failed cgroup removal.
pub(crate) struct Ran {
    pub(crate) outcome: Outcome,
    pub(crate) report: Option<WorkloadReport>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) duration: Duration,
    pub(crate) cleanup: Option<String>,
}

impl Ran {
    /// A workload stopped before its child started: no thread ran.
    fn refused(outcome: Outcome, stderr: String, start: Instant) -> Ran {
        Ran {
            outcome,
            report: Some(WorkloadReport::default()),
            stdout: String::new(),
            stderr,
            duration: start.elapsed(),
            cleanup: None,
        }
    }
}

/// Runs `workload` in a child of `binary` (this binary) and waits for it:
/// its cgroup made first and removed after.
pub(crate) fn run(binary: &Path, workload: &Workload) -> Result<Ran> {
    let start = Instant::now();
    let cgroup = match workload.cgroup.map(make_cgroup).transpose() {
        Ok(cgroup) => cgroup,
        Err((outcome, why)) => return Ok(Ran::refused(outcome, why, start)),
    };
    let args = workload.args(cgroup.as_ref().map(|made| made.path.clone()));
    let mut command = Command::new(binary);
    command
        .arg(roles::WORKLOAD)
        .args(args.to_words())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limit = workload.duration + SLACK;
    let finished = loader::run_to_end(command, limit, &format!("{:.1}s", limit.as_secs_f64()))
        .with_context(|| format!("running {} {}", binary.display(), roles::WORKLOAD));
    // The cgroup goes whether or not the child ran.
    let cleanup = cgroup.and_then(|made| made.remove().err());
    let finished = finished?;
    let report = WorkloadReport::find_in(&finished.stdout);
    let outcome = match report
        .as_ref()
        .and_then(|report| report.setup_failure.as_ref())
    {
        Some(failure) => Outcome::Errno {
            errno: failure.errno,
        },
        None => finished.outcome,
    };
    Ok(Ran {
        outcome,
        report,
        stdout: finished.stdout,
        stderr: finished.stderr,
        duration: finished.duration,
        cleanup: cleanup.map(|err| format!("{err:#}")),
    })
}

/// A workload's cgroup directory, and whether this run made it.
struct Cgroup {
    path: PathBuf,
    made: bool,
}

/// The cgroup `name` under [`CGROUP_ROOT`], made if missing; or the
/// step's outcome and why, when there is no cgroup v2 or mkdir fails.
fn make_cgroup(name: &'static str) -> Result<Cgroup, (Outcome, String)> {
    let is_component = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    if !is_component {
        let why = format!("the cgroup name {name:?} is not one path component (in_cgroup)");
        return Err((
            Outcome::Failed {
                reason: why.clone(),
            },
            why,
        ));
    }
    let mounted = nix::sys::statfs::statfs(CGROUP_ROOT)
        .is_ok_and(|stat| stat.filesystem_type().0 == CGROUP2_MAGIC);
    if !mounted {
        let reason = format!(
            "no cgroup v2 at {CGROUP_ROOT}: the kernel lacks CONFIG_CGROUPS (add it to the \
             subject's kernel fragment, or run the workload without in_cgroup)"
        );
        return Err((Outcome::Failed { reason }, String::new()));
    }
    let path = Path::new(CGROUP_ROOT).join(name);
    match std::fs::DirBuilder::new().mode(0o755).create(&path) {
        Ok(()) => Ok(Cgroup { path, made: true }),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(Cgroup { path, made: false })
        }
        Err(err) => {
            let why = format!("creating the cgroup {}: {err}", path.display());
            let errno = err.raw_os_error().unwrap_or(Errno::EIO as i32);
            Err((Outcome::Errno { errno }, why))
        }
    }
}

impl Cgroup {
    /// Removes the cgroup this run made. The child is reaped, but the
    /// kernel may still count it for a moment: EBUSY is retried for 2 s.
    fn remove(self) -> Result<()> {
        if !self.made {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(err)
                    if err.raw_os_error() == Some(Errno::EBUSY as i32)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(err) => bail!(
                    "removing the workload's cgroup {}: {err} (a process left in it? see its \
                     cgroup.procs)",
                    self.path.display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Workload = Workload::sleeping(2, Duration::from_millis(10))
        .for_duration(Duration::from_millis(300))
        .on_cpus(&[0, 1])
        .in_cgroup("w")
        .sched_ext();

    #[test]
    fn the_action_says_what_runs_the_same_every_time() {
        assert_eq!(
            Workload::busy(4).action(),
            "workload: 4 busy threads for 1 s"
        );
        assert_eq!(
            ALL.action(),
            "workload: 2 threads sleeping 10 ms at a time for 300 ms on cpus 0,1 \
             in cgroup w as SCHED_EXT"
        );
        let yielding = Workload::yielding(1).for_duration(Duration::from_micros(1500));
        assert_eq!(yielding.action(), "workload: 1 yielding thread for 1500 µs");
        assert_eq!(words(Duration::from_secs(2)), "2 s");
        assert_eq!(words(Duration::from_millis(1500)), "1500 ms");
    }

    #[test]
    fn the_declaration_becomes_the_childs_words() {
        let path = PathBuf::from("/sys/fs/cgroup/w");
        let args = ALL.args(Some(path.clone()));
        let parsed = WorkloadArgs::parse_words(args.to_words()).unwrap();
        assert_eq!(parsed.threads, 2);
        assert_eq!(parsed.duration, Duration::from_millis(300));
        assert_eq!(parsed.cpus, [0, 1]);
        assert_eq!(parsed.cgroup, Some(path));
        assert!(parsed.sched_ext);
        assert_eq!(
            parsed.activity,
            Activity::Sleeping {
                period: Duration::from_millis(10)
            }
        );
        let plain = Workload::busy(1).args(None);
        assert_eq!(plain.duration, Duration::from_secs(1));
        assert!(plain.cpus.is_empty() && plain.cgroup.is_none() && !plain.sched_ext);
    }

    #[test]
    fn a_cgroup_name_is_one_path_component() {
        for name in ["", "..", "a/b", "/w"] {
            let Err((Outcome::Failed { reason }, _)) = make_cgroup(name) else {
                panic!("{name:?} was taken as a cgroup name");
            };
            assert!(reason.contains("one path component"), "{reason}");
        }
    }
}
