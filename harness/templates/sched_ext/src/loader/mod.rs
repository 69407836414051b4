//! The loader: its subcommands are the scenarios' building blocks. It runs
//! in the guest, as this crate's binary re-executed by its own scenarios,
//! and loads the objects the harness compiled against the running kernel
//! with harness::loader::sched_ext, which does what tools/sched_ext's
//! SCX_OPS_OPEN, SCX_OPS_LOAD and SCX_OPS_ATTACH do (the CPU hotplug
//! sequence, the exit dump's size, the struct_ops link).

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use harness::loader::sched_ext::{LoadedScheduler, Scheduler};
use harness::loader::{self as blocks, Failure};

use crate::contract::{exit, Counts, Report, ATTACHED, NAME, OBJECT, OPS};
use crate::contract::{REJECTED_OBJECT, REJECTED_OPS};

/// How often a held scheduler's exit info is looked at (tools/sched_ext's
/// loaders look every second).
const POLL: Duration = Duration::from_millis(100);

#[derive(Parser)]
#[command(about = "Load @NAME@, a sched_ext scheduler, and hold it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, print "attached", keep it until SIGINT or SIGTERM (or until
    /// the kernel ejects it: exit 6), print its counters, detach, print its
    /// exit info.
    Hold {
        /// Have the scheduler call scx_bpf_error() at its Nth dispatch.
        #[arg(long, value_name = "N")]
        error_after_dispatches: Option<u64>,
    },
    /// Load the scheduler the verifier must refuse, and report why it did.
    LoadRejected,
}

/// The loader's entry point: `args` are its command line, its name first.
pub fn main(args: Vec<OsString>) -> ExitCode {
    blocks::finish(match Cli::parse_from(args).command {
        Command::Hold {
            error_after_dispatches,
        } => hold(error_after_dispatches),
        Command::LoadRejected => load_rejected(),
    })
}

fn hold(error_after_dispatches: Option<u64>) -> Result<(), Failure> {
    let mut scheduler = Scheduler::open(OBJECT, OPS)?;
    if let Some(count) = error_after_dispatches {
        let option = scheduler.opened();
        option.set_global("error_after_dispatches", &count.to_ne_bytes())?;
    }
    let mut loaded = scheduler.load()?;
    // Before the line the scenario waits for: a SIGTERM right after it
    // must find the handler in place.
    let stop = blocks::stop_requested()?;
    let link = loaded.attach()?;
    println!("{ATTACHED}");
    while !stop.load(Ordering::Relaxed) && loaded.exit_info()?.is_none() {
        std::thread::sleep(POLL);
    }
    println!("{}", counts(&loaded)?.render());
    blocks::report_programs(&loaded.loaded().object);
    let ejected = loaded.exit_info()?;
    // Dropping the link detaches the scheduler; its ops.exit() then
    // records why it ended.
    drop(link);
    if let Some(info) = loaded.exit_info()? {
        println!("{}", info.describe());
    }
    match ejected {
        Some(info) => Err(Failure::new(
            exit::EJECTED,
            format!("the kernel ejected {NAME}: {}", info.describe()),
        )),
        None => Ok(()),
    }
}

/// The scheduler's counters, summed over the CPUs (src/bpf's `enum counter`).
fn counts(loaded: &LoadedScheduler) -> Result<Counts, Failure> {
    let object = loaded.loaded();
    Ok(Counts {
        enqueued: object.percpu_sum("counters", 0)?,
        dispatched: object.percpu_sum("counters", 1)?,
    })
}

fn load_rejected() -> Result<(), Failure> {
    // Loaded as any scheduler is: a refusal with no verifier message comes
    // back naming the member and sched_ext's rule.
    blocks::load_rejected(|| {
        Scheduler::open(REJECTED_OBJECT, REJECTED_OPS)?.load()?;
        Ok(())
    })
}
