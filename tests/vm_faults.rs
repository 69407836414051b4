//! Faults the harness must survive: each is detected within a bound, reported
//! with the console tail and kept logs, and leaves no process or socket
//! directory behind. These boot VMs: select them with `-E 'binary(vm_faults)'`.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod common;

use harness_host::process::processes_mentioning;
use harness_host::suite::run_scenario;
use harness_host::vm::{RunError, ScenarioRun, VmError, VmFailure, VmOptions};
use harness_wire::cli::Fault;
use harness_wire::markers;
use harness_wire::wait::{wait_until, Poll};

use common::artifacts;

/// A label unique to this test process, so parallel tests never see each other's VMs.
fn label(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn options(label: &str, fault: Fault) -> VmOptions {
    VmOptions::default().label(label).fault(fault)
}

fn expect_vm_error(outcome: Result<ScenarioRun, RunError>) -> VmError {
    match outcome {
        Ok(run) => panic!(
            "expected the VM to fail, but it produced a result: {:?}",
            run.result
        ),
        Err(RunError::Vm(error)) => *error,
        Err(other) => panic!("expected the VM to fail, got: {other:#}"),
    }
}

/// Nothing the VM started is still running, its socket directory is gone and its logs are kept.
fn assert_cleaned_up(error: &VmError) {
    let run_dir = error.run_dir.display().to_string();
    assert!(
        !error.run_dir.exists(),
        "socket directory left behind: {run_dir}"
    );
    let leftovers = processes_mentioning(&run_dir);
    assert!(
        leftovers.is_empty(),
        "processes left behind: {leftovers:#?}"
    );
    assert!(
        error.logs.join("console.log").is_file(),
        "console log not kept in {}",
        error.logs.display()
    );
    // Kept for a person when the harness is used; this expected failure needs no reading.
    let _ = std::fs::remove_dir_all(&error.logs);
}

/// The console log QEMU writes, from its command line (`-chardev
/// socket,id=console,path=...,logfile=...`): the live VM's own, never a
/// kept log of an earlier run.
fn console_log_of(qemu_cmdline: &str) -> Option<&str> {
    let (_, rest) = qemu_cmdline.split_once("socket,id=console,")?;
    let chardev = rest.split_whitespace().next()?;
    chardev
        .split(',')
        .find_map(|option| option.strip_prefix("logfile="))
}

/// Whether `cmdline` runs `program` (its argv[0]'s file name starts with
/// it): QEMU's own command line names the virtiofsd socket, so a substring
/// would find QEMU when virtiofsd is meant.
fn runs(cmdline: &str, program: &str) -> bool {
    let argv0 = cmdline.split_whitespace().next().unwrap_or_default();
    Path::new(argv0)
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with(program))
}

/// The pid of the VM labelled `label`'s `program`, once its agent has said
/// ready on the console; while not yet, what was seen instead.
fn ready_vms_process(label: &str, program: &str) -> Result<u32, String> {
    let processes = processes_mentioning(label);
    let Some(console) = processes
        .iter()
        .filter(|(_, cmdline)| runs(cmdline, "qemu-system"))
        .find_map(|(_, cmdline)| console_log_of(cmdline))
    else {
        return Err(format!("no QEMU of {label} running: {processes:#?}"));
    };
    let text = std::fs::read_to_string(console).unwrap_or_default();
    if !markers::agent_ready(&text) {
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        return Err(format!(
            "no {:?} in {console}:\n{tail}",
            markers::AGENT_READY
        ));
    }
    processes
        .iter()
        .find(|(_, cmdline)| runs(cmdline, program))
        .map(|(pid, _)| *pid)
        .ok_or_else(|| format!("the agent is ready, but no {program} of {label}: {processes:#?}"))
}

/// Kills the VM labelled `label`'s `program` once its agent has said ready
/// (a VM whose agent hangs then waits for the kill); or says what it saw
/// instead, within a minute.
fn kill_when_ready(label: String, program: &'static str) -> JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let mut seen = String::new();
        let found = wait_until(
            Instant::now() + Duration::from_secs(60),
            Duration::from_millis(50),
            || match ready_vms_process(&label, program) {
                Ok(pid) => Poll::Ready(pid),
                Err(what) => {
                    seen = what;
                    Poll::Pending
                }
            },
        );
        let pid =
            found.ok_or_else(|| format!("not ready to kill {program} within 60 s: {seen}"))?;
        // SAFETY: kill(2) on a pid just found; at worst it has gone since.
        match unsafe { libc::kill(pid as i32, libc::SIGKILL) } {
            0 => Ok(()),
            _ => Err(format!(
                "kill {pid} ({program}): {}",
                std::io::Error::last_os_error()
            )),
        }
    })
}

#[test]
fn guest_panic_is_reported_within_seconds() {
    let label = label("panic");
    let start = Instant::now();
    let error = expect_vm_error(run_scenario(
        artifacts(),
        "no_module",
        &options(&label, Fault::ExitInit),
    ));
    let took = start.elapsed();
    assert!(
        matches!(error.failure, VmFailure::GuestPanicked { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("Attempted to kill init"),
        "{error}"
    );
    assert!(
        took < Duration::from_secs(20),
        "panic took {took:?} to detect"
    );
    assert_cleaned_up(&error);
}

/// A VM (restored from its template, or booted) whose agent causes `fault`
/// under a `timeout` of that many seconds: its error and how long the run
/// took.
fn with_timeout(name: &str, fault: Fault, timeout: u64, restore: bool) -> (VmError, Duration) {
    let label = label(name);
    let options = options(&label, fault)
        .timeout(Duration::from_secs(timeout))
        .restore(restore);
    let start = Instant::now();
    let error = expect_vm_error(run_scenario(artifacts(), "no_module", &options));
    (error, start.elapsed())
}

#[test]
fn guest_hang_is_ended_by_the_timeout() {
    let (error, took) = with_timeout("hang", Fault::Hang, 15, true);
    assert!(
        matches!(error.failure, VmFailure::Timeout { .. }),
        "{error}"
    );
    assert!(error.console_tail.contains("guest-agent: ready"), "{error}");
    assert!(
        error
            .to_string()
            .contains("QEMU reported the VM as running"),
        "{error}"
    );
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(30),
        "took {took:?}"
    );
    assert_cleaned_up(&error);
}

#[test]
fn a_boot_that_never_gets_ready_is_tried_twice_then_reported() {
    let (error, took) = with_timeout("neverready", Fault::HangBeforeReady, 16, true);
    // Half the 16 s timeout is shorter than any deadline the boots measured here set.
    assert!(
        matches!(&error.failure, VmFailure::NeverReady { deadline, .. } if deadline.after == Duration::from_secs(8)),
        "{error}"
    );
    assert!(!error.agent_ready, "{error}");
    assert!(error.to_string().contains("did not say ready"), "{error}");
    assert!(
        error
            .to_string()
            .contains("QEMU reported the VM as running"),
        "{error}"
    );
    // Where each vCPU was, by kernel symbol, from the monitor.
    let VmFailure::NeverReady { vcpus, .. } = &error.failure else {
        unreachable!()
    };
    assert!(
        vcpus.contains("vCPU 0 at ") && vcpus.contains("vCPU 1 at ") && vcpus.contains('+'),
        "{vcpus}"
    );
    assert!(error.logs.join("vcpus.txt").is_file(), "{error}");
    // Two boots, each ended at its 8 s deadline, not at the 16 s timeout.
    assert!(
        took >= Duration::from_secs(16) && took < Duration::from_secs(30),
        "took {took:?}"
    );
    // The first boot is on the error, its logs kept.
    let first = error
        .retried_boot
        .clone()
        .expect("the first boot is recorded");
    assert_eq!(first.cause, harness_host::vm::BootFailure::Stalled);
    assert!(first.logs.join("console.log").is_file(), "{first:?}");
    assert!(first.logs.join("vcpus.txt").is_file(), "{first:?}");
    // The kernel's own log, read from its memory: info lines the console
    // (warnings and worse) never showed.
    let dmesg = std::fs::read_to_string(first.logs.join("dmesg.txt")).unwrap();
    assert!(
        dmesg.contains("Linux version") && dmesg.contains("smp: Brought up"),
        "{dmesg}"
    );
    assert_ne!(first.logs, error.logs);
    let _ = std::fs::remove_dir_all(&first.logs);
    assert_cleaned_up(&error);
}

/// With a timeout of 120 s, the deadline is no longer its half: it is set
/// by the boots measured on this machine (the one before it, at least),
/// and a stalled boot is ended there.
#[test]
fn a_stalled_boot_is_ended_at_the_deadline_the_measured_boots_set() {
    let label = label("measured");
    // Booted: a restored VM's times are kept apart, as `kind/restore`.
    let fine = run_scenario(
        artifacts(),
        "no_module",
        &VmOptions::default().label(label.clone()).restore(false),
    )
    .unwrap_or_else(|err| panic!("{err:#}"));
    let boot = fine.boot.expect("a boot time");
    let kind = harness_host::boot_times::kind(&fine.accel.to_string(), "default");
    let recorded = harness_host::boot_times::BootTimes::load(&artifacts().cache);
    assert!(
        recorded.of(&kind).contains(&boot.as_secs_f64()),
        "{boot:?} not recorded under {kind}: {recorded:?}"
    );
    let (error, took) = with_timeout("measured", Fault::HangBeforeReady, 120, false);
    let VmFailure::NeverReady { deadline, .. } = &error.failure else {
        panic!("{error}");
    };
    let (slowest, _) = deadline
        .measured
        .expect("a deadline from the measured boots");
    assert!(slowest >= boot, "{deadline}");
    assert_eq!(
        deadline.after,
        (slowest * harness_host::boot_times::MULTIPLE).max(harness_host::boot_times::FLOOR),
        "{deadline}"
    );
    assert!(deadline.after < Duration::from_secs(60), "{deadline}");
    assert!(error.to_string().contains("slowest of the last"), "{error}");
    // Two boots, each ended at its deadline (each at least the floor),
    // not at half the timeout (the last boots may have moved the first's
    // deadline a little).
    assert!(
        took >= deadline.after + harness_host::boot_times::FLOOR
            && took < deadline.after * 2 + Duration::from_secs(15),
        "took {took:?} for a deadline of {deadline}"
    );
    if let Some(first) = &error.retried_boot {
        let _ = std::fs::remove_dir_all(&first.logs);
    }
    assert_cleaned_up(&error);
}

#[test]
fn agent_exiting_without_a_result_is_reported() {
    let label = label("noresult");
    let error = expect_vm_error(run_scenario(
        artifacts(),
        "no_module",
        &options(&label, Fault::NoResult),
    ));
    assert!(
        matches!(error.failure, VmFailure::NoResult { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("without a result from the agent"),
        "{error}"
    );
    assert_cleaned_up(&error);
}

/// Boots a VM whose agent hangs, kills its `program` from outside once the
/// agent has said ready, and returns the VM's error and how long the run took.
fn kill_from_outside(name: &str, program: &'static str) -> (VmError, Duration) {
    let label = label(name);
    let killer = kill_when_ready(label.clone(), program);
    let start = Instant::now();
    // Only a booted VM has a virtiofsd (a restored one's root is 9p).
    let options = options(&label, Fault::Hang).restore(program != "virtiofsd");
    let error = expect_vm_error(run_scenario(artifacts(), "no_module", &options));
    let took = start.elapsed();
    if let Err(why) = killer.join().unwrap() {
        panic!("{why}\nthe VM ended with: {error}");
    }
    assert!(error.agent_ready, "killed before the agent was up: {error}");
    (error, took)
}

#[test]
fn qemu_killed_from_outside_is_reported_at_once() {
    let (error, took) = kill_from_outside("qemukill", "qemu-system");
    assert!(
        matches!(error.failure, VmFailure::NoResult { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("signal: 9"), "{error}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_cleaned_up(&error);
}

#[test]
fn virtiofsd_killed_mid_run_is_reported() {
    require_virtiofsd();
    let (error, took) = kill_from_outside("vfskill", "virtiofsd");
    // The daemon's death, not QEMU's exit or the guest's hang, is the failure.
    assert!(
        matches!(&error.failure, VmFailure::VirtiofsdDied { status } if status.contains("signal: 9")),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("virtiofsd, which serves the guest its root filesystem, failed mid-run"),
        "{error}"
    );
    assert!(error.logs.join("virtiofsd.log").is_file(), "{error}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_cleaned_up(&error);
}

/// The virtiofs tests need the Rust virtiofsd; without it they fail, naming the fix.
fn require_virtiofsd() {
    if let Err(reason) = &artifacts().virtiofsd {
        panic!(
            "this test needs a virtiofsd with --readonly, and there is none: {reason}.\n\
             Run `harness setup` (it runs `cargo install --locked virtiofsd@1.14.0`)"
        );
    }
}

#[test]
fn the_guest_cannot_write_the_host() {
    require_virtiofsd();
    // Booted with each root share, and restored (its root is 9p).
    for (force_9p, restore, root) in [
        (false, false, "virtiofs"),
        (true, false, "9p"),
        (false, true, "restored"),
    ] {
        let label = label(&format!("ro{root}"));
        let options = options(&label, Fault::WriteHost)
            .force_9p(force_9p)
            .restore(restore);
        let run = run_scenario(artifacts(), "no_module", &options)
            .unwrap_or_else(|err| panic!("{err:#}"));
        let binary = artifacts().binary_for("no_module").unwrap();
        let target = binary.parent().unwrap().join("guest-write-test");
        assert!(run.result.passed, "{:?}", run.result.failures);
        // The agent remounts / read-write first, so only the host side can refuse.
        assert!(
            run.console_tail
                .contains("guest-agent: remounting / read-write"),
            "{}",
            run.console_tail
        );
        assert!(
            run.console_tail.contains(&format!(
                "guest-agent: writing {} failed: Read-only file system",
                target.display()
            )),
            "the guest's write was not refused (root {}):\n{}",
            run.root,
            run.console_tail
        );
        assert!(
            !target.exists(),
            "the guest wrote {} on the host",
            target.display()
        );
        assert_eq!(run.root, root);
    }
}

/// Needs a /dev/kvm that opens (GitHub's runners and this project's machines
/// have one, working or not); elsewhere it fails, and its message shows the
/// filter that leaves it out.
#[test]
fn kvm_is_probed_once_and_the_verdict_is_kept() {
    if let Err(err) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!(
            "/dev/kvm does not open here ({err}), so there is no KVM to probe; on a machine \
             without KVM leave this test out: cargo nextest run -E 'not test(kvm_is_probed)'"
        );
    }
    // The probe is what is tested: a forced accelerator would skip it. Each
    // nextest test is its own process, so this touches no other test.
    std::env::remove_var(harness_host::accel::ACCEL_ENV);
    // A private cache directory for the verdict only; the kernel stays where it is.
    let cache = tempfile::tempdir().unwrap();
    let mut artifacts = artifacts().clone();
    artifacts.cache = cache.path().to_owned();
    assert_eq!(
        harness_host::accel::choose(cache.path()).unwrap(),
        harness_host::accel::Choice::ProbeKvm
    );
    let run = run_scenario(&artifacts, "no_module", &VmOptions::default())
        .unwrap_or_else(|err| panic!("{err:#}"));
    assert!(run.result.passed, "{:?}", run.result.failures);
    let verdict = harness_host::accel::read_verdict(cache.path())
        .unwrap()
        .expect("the probe wrote a verdict");
    let expected = if verdict.kvm_works {
        harness_host::accel::Accel::Kvm
    } else {
        harness_host::accel::Accel::Tcg
    };
    assert_eq!(run.accel, expected, "verdict {verdict:?}");
    // Probed once: from now on the verdict decides, and the next VM follows it.
    assert!(
        matches!(harness_host::accel::choose(cache.path()).unwrap(), harness_host::accel::Choice::Decided(accel, _) if accel == expected),
        "the verdict is not used"
    );
    let again = run_scenario(&artifacts, "no_module", &VmOptions::default())
        .unwrap_or_else(|err| panic!("{err:#}"));
    assert_eq!(again.accel, expected);
}

/// What nextest does to a test at its timeout, and a terminal's Ctrl-C does
/// to a harness: SIGTERM. Its VM (here `harness exec -- sleep 600`, built by
/// the setup script) goes with it.
#[test]
fn an_interrupted_harness_takes_its_vm_along() {
    let harness = common::harness_binary();
    let mut child = std::process::Command::new(&harness)
        .args(["exec", "--", "sleep", "600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let label = format!("exec-{}", child.id());
    let started = wait_until(
        Instant::now() + Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let vm_up = processes_mentioning(&label)
                .iter()
                .any(|(_, cmdline)| cmdline.contains("qemu-system"));
            match (vm_up, child.try_wait().unwrap()) {
                (true, _) => Poll::Ready(true),
                (false, Some(_)) => Poll::Ready(false),
                (false, None) => Poll::Pending,
            }
        },
    );
    assert_eq!(started, Some(true), "the harness never started its VM");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let gone = wait_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(50),
        || match processes_mentioning(&label).is_empty() {
            true => Poll::Ready(()),
            false => Poll::Pending,
        },
    );
    assert!(
        gone.is_some(),
        "left behind after SIGTERM: {:#?}",
        processes_mentioning(&label)
    );
    // The dead helper's socket directory is swept by the next VM, or here.
    harness_host::run_dirs::sweep_stale_run_dirs();
    let stale: Vec<_> = harness_host::run_dirs::run_dirs_in(&std::env::temp_dir())
        .into_iter()
        .filter(|dir| dir.to_string_lossy().contains(&label))
        .collect();
    assert!(
        stale.is_empty(),
        "socket directories left behind: {stale:?}"
    );
}

/// A subject whose BPF objects did not build against the kernel (7.3's
/// own schedulers need a newer clang than Debian 12's default) fails its
/// own scenarios with the compiler's words, before any VM boots; another
/// subject's scenario still runs.
#[test]
fn a_subject_whose_bpf_did_not_build_fails_alone_saying_why() {
    let mut artifacts = artifacts().clone();
    let why = "compiling scx_qmap.bpf.c against kernel 7.3.4 failed: error: static_assert";
    artifacts.unbuilt.insert("scx".into(), why.into());
    let options = VmOptions::default().label(label("unbuilt"));
    match run_scenario(&artifacts, "scx_simple_attach", &options) {
        Err(RunError::Harness(err)) => {
            let said = format!("{err:#}");
            assert!(
                said.contains("scx's BPF objects did not build against kernel")
                    && said.contains("so scx_simple_attach cannot run")
                    && said.contains(why),
                "{said}"
            );
        }
        other => panic!("expected the harness to refuse the scenario, got {other:?}"),
    }
    let run =
        run_scenario(&artifacts, "no_module", &options).unwrap_or_else(|err| panic!("{err:#}"));
    assert!(run.result.passed, "{:?}", run.result.failures);
}
