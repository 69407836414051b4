//! The loader of the kernel's own schedulers: what tools/sched_ext's C
//! loaders do (open, load and attach as their `SCX_OPS_*` macros do, read
//! their counters, report their exit), on the objects the harness compiled
//! from the kernel's source. What it prints and how it exits is
//! `crate::contract`.

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::loader::sched_ext::{self, LoadedScheduler, Scheduler};
use harness::loader::{self as blocks, Failure};

use crate::contract::{self, exit, QmapCounts, Report, SimpleCounts, QMAP, SIMPLE};

/// How often a held scheduler's exit info is looked at, as the C loaders
/// poll `UEI_EXITED` (they do it every second).
const POLL: Duration = Duration::from_millis(100);

#[derive(Parser)]
#[command(about = "Load one of the kernel's own sched_ext schedulers and hold it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, print "attached", keep it until SIGINT or SIGTERM (or until
    /// the kernel ejects it: exit 6), print its counters, detach, print
    /// its exit info.
    Hold {
        #[arg(value_enum)]
        scheduler: Which,
        /// scx_simple: one FIFO instead of weighted vtime (its -f).
        #[arg(long)]
        fifo: bool,
        #[command(flatten)]
        qmap: QmapOptions,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Simple,
    Qmap,
}

/// scx_qmap's options that make it misbehave (its -t, -T, -l and -e).
#[derive(Args)]
struct QmapOptions {
    /// Drop every Nth enqueue of a user task: the watchdog must eject it.
    #[arg(long, value_name = "N")]
    stall_user_nth: Option<u32>,
    /// Drop every Nth enqueue of a kernel thread.
    #[arg(long, value_name = "N")]
    stall_kernel_nth: Option<u32>,
    /// After N dispatches, dispatch only kthreadd, forever.
    #[arg(long, value_name = "N")]
    dispatch_loop_after: Option<u32>,
    /// Call scx_bpf_error() after N enqueues.
    #[arg(long, value_name = "N")]
    error_after: Option<u32>,
}

pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(exit::FAILURE);
        }
    };
    blocks::finish(match cli.command {
        Command::Hold {
            scheduler,
            fifo,
            qmap,
        } => hold(scheduler, fifo, &qmap),
    })
}

fn hold(which: Which, fifo: bool, qmap: &QmapOptions) -> Result<(), Failure> {
    let chosen = match which {
        Which::Simple => SIMPLE,
        Which::Qmap => QMAP,
    };
    let mut scheduler = Scheduler::open(chosen.object, chosen.ops)?;
    let opened = scheduler.opened();
    if fifo {
        opened.set_global("fifo_sched", &[1])?;
    }
    if matches!(which, Which::Qmap) {
        qmap_defaults(opened)?;
    }
    let error_after = qmap_global(opened.has_global("test_error_cnt"), "test_error_cnt");
    let options = [
        ("stall_user_nth", qmap.stall_user_nth),
        ("stall_kernel_nth", qmap.stall_kernel_nth),
        ("dsp_inf_loop_after", qmap.dispatch_loop_after),
        (error_after.as_str(), qmap.error_after),
    ];
    for (name, value) in options {
        if let Some(value) = value {
            opened.set_global(name, &value.to_ne_bytes())?;
        }
    }
    let mut loaded = scheduler.load()?;
    // Before the line the scenario waits for: a SIGTERM right after it
    // must find the handler in place.
    let stop = blocks::stop_requested()?;
    let link = loaded.attach()?;
    println!("{}", contract::ATTACHED);
    while !stop.load(Ordering::Relaxed) && loaded.exit_info()?.is_none() {
        std::thread::sleep(POLL);
    }
    print_counters(which, &loaded)?;
    blocks::report_programs(&loaded.loaded().object);
    let ejected = loaded.exit_info()?;
    drop(link);
    let exit_info = loaded.exit_info()?;
    if let Some(info) = &exit_info {
        println!("{}", info.describe());
    }
    match ejected {
        Some(info) => Err(Failure::new(
            exit::EJECTED,
            format!("the kernel ejected {}: {}", chosen.name, info.describe()),
        )),
        None => Ok(()),
    }
}

fn print_counters(which: Which, loaded: &LoadedScheduler) -> Result<(), Failure> {
    let object = loaded.loaded();
    let line = match which {
        Which::Simple => SimpleCounts {
            local: object.percpu_sum("stats", 0)?,
            global: object.percpu_sum("stats", 1)?,
        }
        .render(),
        Which::Qmap => {
            let own = object.global("nr_enqueued").is_ok();
            QmapCounts {
                enqueued: u64_of(&object.global(&qmap_global(own, "nr_enqueued"))?),
                dispatched: u64_of(&object.global(&qmap_global(own, "nr_dispatched"))?),
            }
            .render()
        }
    };
    println!("{line}");
    Ok(())
}

/// What 7.x's scx_qmap.c writes before load whatever its options (its
/// object leaves them 0, and `ops.init()` refuses a `max_tasks` of 0);
/// 6.12's has no `max_tasks` and initialises its `slice_ns` itself.
fn qmap_defaults(opened: &mut harness::loader::object::Opened) -> Result<(), Failure> {
    if !opened.has_global("max_tasks") {
        return Ok(());
    }
    let slice = sched_ext::kernel_enum("SCX_SLICE_DFL")?.unwrap_or(0);
    opened.set_global("slice_ns", &slice.to_ne_bytes())?;
    opened.set_global("max_tasks", &16384u32.to_ne_bytes())?;
    // Its -r: the round-robin period of its shared CPU pool, 200 ms.
    opened.set_global("round_robin_ns", &200_000_000u64.to_ne_bytes())?;
    Ok(())
}

/// Where scx_qmap keeps `name`: a global of its own until 7.x, which moved
/// its counters and its error countdown into `qa`, a struct in its arena.
fn qmap_global(own: bool, name: &str) -> String {
    match own {
        true => name.to_owned(),
        false => format!("qa.{name}"),
    }
}

fn u64_of(bytes: &[u8]) -> u64 {
    u64::from_ne_bytes(bytes.try_into().unwrap_or([0; 8]))
}
