//! The workload's child process: it moves itself into its cgroup, starts
//! the worker threads, each of which pins itself, sets its policy and then
//! runs its activity to the deadline, sampling its class and CPU as it
//! goes. It returns the report its role prints (see `harness::run_binary`).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use harness_wire::workload::{
    cgroup_in, Activity, SchedClass, SetupFailure, ThreadReport, WorkloadArgs, WorkloadReport,
};
use nix::errno::Errno;
use nix::sched::{sched_getcpu, sched_setaffinity, CpuSet};
use nix::sys::resource::{getrusage, UsageWho};
use nix::unistd::Pid;

/// The policy number of SCHED_EXT (include/uapi/linux/sched.h).
const SCHED_EXT: libc::c_int = 7;

/// How many times a thread samples its class over its run, besides once
/// at its start and once at its end.
const CLASS_SAMPLES: u32 = 8;

/// Runs the workload `args` describe and reports what each thread saw.
pub fn run_workers(args: &WorkloadArgs) -> WorkloadReport {
    if let Some(cgroup) = &args.cgroup {
        if let Err(failure) = join_cgroup(cgroup) {
            return failed(failure);
        }
    }
    // Every thread is set up before any starts, so that a refused setup
    // runs none of them and the report says why.
    let ready = Arc::new(Barrier::new(args.threads));
    let refused: Arc<Mutex<Option<SetupFailure>>> = Arc::default();
    let workers: Vec<_> = (0..args.threads)
        .map(|index| {
            let (ready, refused) = (Arc::clone(&ready), Arc::clone(&refused));
            let cpu = args.cpu_of(index);
            let (activity, duration, sched_ext) = (args.activity, args.duration, args.sched_ext);
            thread::spawn(move || {
                if let Err(failure) = set_up(cpu, sched_ext) {
                    refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(failure);
                }
                ready.wait();
                let refused = refused.lock().unwrap_or_else(|e| e.into_inner()).is_some();
                (!refused).then(|| work(activity, duration, cpu))
            })
        })
        .collect();
    let threads: Vec<Option<ThreadReport>> = workers
        .into_iter()
        .map(|worker| worker.join().unwrap_or_default())
        .collect();
    let refused = refused.lock().unwrap_or_else(|e| e.into_inner()).take();
    match refused {
        Some(failure) => failed(failure),
        None => WorkloadReport {
            setup_failure: None,
            threads: threads.into_iter().flatten().collect(),
        },
    }
}

fn failed(failure: SetupFailure) -> WorkloadReport {
    WorkloadReport {
        setup_failure: Some(failure),
        threads: Vec::new(),
    }
}

/// Moves this process into `cgroup` by writing its pid to `cgroup.procs`.
fn join_cgroup(cgroup: &Path) -> Result<(), SetupFailure> {
    let procs = cgroup.join("cgroup.procs");
    OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut file| file.write_all(std::process::id().to_string().as_bytes()))
        .map_err(|err| SetupFailure {
            what: format!("moving the workload into its cgroup ({})", procs.display()),
            errno: err.raw_os_error().unwrap_or(Errno::EIO as i32),
        })
}

/// Pins the calling thread to `cpu` and sets its policy to SCHED_EXT, as asked.
fn set_up(cpu: Option<usize>, sched_ext: bool) -> Result<(), SetupFailure> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu)
            .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
            .map_err(|errno| SetupFailure {
                what: format!(
                    "pinning a thread to cpu {cpu} (sched_setaffinity): EINVAL means the \
                     guest has no such CPU"
                ),
                errno: errno as i32,
            })?;
    }
    if sched_ext {
        let param = libc::sched_param { sched_priority: 0 };
        // The raw call, for the calling thread (tid 0): some C libraries'
        // wrappers refuse policies they do not know.
        // SAFETY: the syscall reads a valid sched_param for its duration.
        let set = unsafe {
            libc::syscall(
                libc::SYS_sched_setscheduler,
                0,
                SCHED_EXT,
                &param as *const libc::sched_param,
            )
        };
        if set != 0 {
            return Err(SetupFailure {
                what: "setting the policy SCHED_EXT (sched_setscheduler): a kernel without \
                       CONFIG_SCHED_CLASS_EXT refuses it with EINVAL"
                    .to_owned(),
                errno: Errno::last() as i32,
            });
        }
    }
    Ok(())
}

/// What a thread collects as it runs.
#[derive(Default)]
struct Seen {
    classes: Vec<SchedClass>,
    samples: u32,
    /// Indexed by CPU number: whether it ran there.
    cpus: Vec<bool>,
}

impl Seen {
    fn sample_class(&mut self) {
        let text = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
        let class = SchedClass::from_sched_file(&text);
        if self.classes.last() != Some(&class) {
            self.classes.push(class);
        }
        self.samples += 1;
    }

    fn note_cpu(&mut self) {
        if let Ok(cpu) = sched_getcpu() {
            if self.cpus.len() <= cpu {
                self.cpus.resize(cpu + 1, false);
            }
            self.cpus[cpu] = true;
        }
    }
}

/// Runs `activity` for `duration`, then reports what the thread saw.
fn work(activity: Activity, duration: Duration, assigned_cpu: Option<usize>) -> ThreadReport {
    let start = Instant::now();
    let deadline = start + duration;
    let interval = duration / CLASS_SAMPLES;
    let mut next_sample = start;
    let mut seen = Seen::default();
    let mut rounds = 0u64;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        seen.note_cpu();
        if now >= next_sample {
            seen.sample_class();
            next_sample += interval.max(Duration::from_micros(1));
        }
        match activity {
            Activity::Busy => std::hint::spin_loop(),
            Activity::Yielding => thread::yield_now(),
            Activity::Sleeping { period } => thread::sleep(period.min(deadline - now)),
        }
        rounds += 1;
    }
    seen.note_cpu();
    seen.sample_class();
    report(seen, rounds, assigned_cpu)
}

fn report(seen: Seen, rounds: u64, assigned_cpu: Option<usize>) -> ThreadReport {
    // Every field of a thread's own usage exists since Linux 2.6.26.
    let usage = getrusage(UsageWho::RUSAGE_THREAD).ok();
    let micros =
        |time: nix::sys::time::TimeVal| (time.tv_sec() as u64) * 1_000_000 + time.tv_usec() as u64;
    ThreadReport {
        tid: nix::unistd::gettid().as_raw(),
        assigned_cpu,
        classes: seen.classes,
        samples: seen.samples,
        cpus: (0..seen.cpus.len()).filter(|&cpu| seen.cpus[cpu]).collect(),
        cgroup: std::fs::read_to_string("/proc/thread-self/cgroup")
            .ok()
            .and_then(|text| cgroup_in(&text)),
        rounds,
        cpu_time_us: usage.map_or(0, |usage| {
            micros(usage.user_time()) + micros(usage.system_time())
        }),
        voluntary_switches: usage.map_or(0, |usage| usage.voluntary_context_switches() as u64),
        involuntary_switches: usage.map_or(0, |usage| usage.involuntary_context_switches() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(activity: Activity, threads: usize) -> WorkloadArgs {
        WorkloadArgs {
            activity,
            threads,
            duration: Duration::from_millis(60),
            cpus: Vec::new(),
            cgroup: None,
            sched_ext: false,
        }
    }

    #[test]
    fn each_thread_runs_to_the_deadline_and_reports_itself() {
        for activity in [
            Activity::Busy,
            Activity::Yielding,
            Activity::Sleeping {
                period: Duration::from_millis(5),
            },
        ] {
            let start = Instant::now();
            let report = run_workers(&args(activity, 2));
            assert!(start.elapsed() >= Duration::from_millis(60), "{activity:?}");
            assert_eq!(report.setup_failure, None);
            assert_eq!(report.threads.len(), 2, "{activity:?}");
            for thread in &report.threads {
                assert!(thread.rounds > 0 && !thread.cpus.is_empty(), "{thread:?}");
                assert!(
                    thread.samples >= 2 && thread.class().is_some(),
                    "{thread:?}"
                );
            }
            assert_ne!(report.threads[0].tid, report.threads[1].tid);
        }
    }

    #[test]
    fn a_refused_setup_runs_no_thread_and_says_why() {
        let pinned = WorkloadArgs {
            cpus: vec![100_000],
            ..args(Activity::Busy, 2)
        };
        let report = run_workers(&pinned);
        assert!(report.threads.is_empty());
        let failure = report.setup_failure.expect("no setup failure");
        assert_eq!(failure.errno, Errno::EINVAL as i32);
        assert!(failure.what.contains("cpu 100000"), "{}", failure.what);
    }
}
