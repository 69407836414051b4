//! Workloads on the default kernel: a scratch subject (a crate in a
//! temporary directory, as `vm_outside_subject` writes one) whose one
//! scenario runs busy, sleeping, pinned, cgrouped and SCHED_EXT workloads
//! through `Context::run_workload` and checks each against what this
//! kernel honestly says: the class `unknown` without an `ext.enabled`
//! line, a step failure naming CONFIG_CGROUPS without cgroup v2, EINVAL
//! for SCHED_EXT without sched_ext. This test runs it with `cargo test`
//! there and checks the snapshot it wrote.

mod common;

use common::{cargo_test, write_subject_crate};

const LIB: &str = r#"use std::path::Path;
use std::time::Duration;

use harness::{Context, Errno, Outcome, SchedClass, Scenario, StepId, Subject, Workload};

const BUSY: Workload = Workload::busy(2).for_duration(Duration::from_millis(300));
const SLEEPING: Workload =
    Workload::sleeping(2, Duration::from_millis(20)).for_duration(Duration::from_millis(300));
const PINNED: Workload = Workload::yielding(2)
    .for_duration(Duration::from_millis(300))
    .on_cpus(&[0, 1]);
const IN_CGROUP: Workload = Workload::busy(1)
    .for_duration(Duration::from_millis(100))
    .in_cgroup("workload");
const AS_EXT: Workload = Workload::busy(1)
    .for_duration(Duration::from_millis(100))
    .sched_ext();

/// What this kernel can say of a task's class, read here, not by the
/// harness's parser: with no ext.enabled line, nothing.
fn honest_class() -> SchedClass {
    let sched = std::fs::read_to_string("/proc/self/sched").unwrap_or_default();
    match sched.lines().any(|line| line.starts_with("ext.enabled ")) {
        true => SchedClass::Fair,
        false => SchedClass::Unknown,
    }
}

fn two_threads(context: &mut Context, workload: &Workload) -> anyhow::Result<StepId> {
    let class = honest_class();
    let (step, report) = context.run_workload(workload)?;
    context.expect_outcome(step, Outcome::exited(0));
    context.expect_stdout_line(step, "2 threads ran");
    context.expect_stdout_line(step, &format!("class {class}: 2"));
    context.expect(report.on_class(class) == 2, format!("not on {class}: {report:?}"));
    let ran = report.threads.iter().all(|thread| thread.rounds > 0 && thread.samples >= 2);
    context.expect(ran, format!("a thread did not run or sample: {report:?}"));
    Ok(step)
}

fn in_cgroup(context: &mut Context) -> anyhow::Result<()> {
    let filesystems = std::fs::read_to_string("/proc/filesystems")?;
    let (step, report) = context.run_workload(&IN_CGROUP)?;
    if filesystems.contains("cgroup2") {
        context.expect_outcome(step, Outcome::exited(0));
        context.expect_stdout_line(step, "in cgroup /workload: 1");
        let gone = !Path::new("/sys/fs/cgroup/workload").exists();
        context.expect(gone, "the workload's cgroup was not removed");
    } else {
        let outcome = context.step(step).outcome.to_string();
        context.expect(outcome.contains("CONFIG_CGROUPS"), format!("no CONFIG_CGROUPS in: {outcome}"));
        context.expect(report.threads.is_empty(), "threads ran without their cgroup");
    }
    Ok(())
}

fn as_sched_ext(context: &mut Context) -> anyhow::Result<()> {
    let (step, report) = context.run_workload(&AS_EXT)?;
    if Path::new("/sys/kernel/sched_ext").is_dir() {
        // No BPF scheduler is loaded: SCHED_EXT tasks run on the fair class.
        context.expect_outcome(step, Outcome::exited(0));
        context.expect(report.on_class(honest_class()) == 1, format!("{report:?}"));
    } else {
        context.expect_outcome(step, Outcome::errno(Errno::EINVAL));
        context.expect_stdout_line(step, "0 threads ran");
    }
    Ok(())
}

fn workloads(context: &mut Context) -> anyhow::Result<()> {
    two_threads(context, &BUSY)?;
    two_threads(context, &SLEEPING)?;
    let pinned = two_threads(context, &PINNED)?;
    context.expect_stdout_line(pinned, "on their assigned cpu throughout: 2");
    in_cgroup(context)?;
    as_sched_ext(context)
}

pub const SUBJECT: Subject = Subject::new("workload", "workloads on this kernel", env!("CARGO_MANIFEST_DIR"))
    .scenarios(&[Scenario::new("workloads", "threads run, and say what the kernel says of their class", workloads)]);
"#;

#[test]
fn workloads_run_and_report_what_the_kernel_says() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("workload");
    write_subject_crate(&dir, "workload-subject", LIB);
    let (passed, output) = cargo_test(&dir, &[]);
    assert!(passed, "{output}");
    let snapshot = std::fs::read_to_string(dir.join("tests/snapshots/workloads.snap")).unwrap();
    // Each workload is a step with its summary, whatever this kernel's class.
    for expected in [
        "$ workload: 2 busy threads for 300 ms\n  => exit 0\n  stdout| 2 threads ran\n",
        "$ workload: 2 threads sleeping 20 ms at a time for 300 ms\n  => exit 0\n  \
         stdout| 2 threads ran\n",
        "$ workload: 2 yielding threads for 300 ms on cpus 0,1\n  => exit 0\n  \
         stdout| 2 threads ran\n",
        "  stdout| on their assigned cpu throughout: 2\n",
        "$ workload: 1 busy thread for 100 ms in cgroup workload\n",
        "$ workload: 1 busy thread for 100 ms as SCHED_EXT\n",
    ] {
        assert!(
            snapshot.contains(expected),
            "{expected:?} not in:\n{snapshot}"
        );
    }
}
