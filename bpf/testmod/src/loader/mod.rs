//! The userspace loader: attaches the BPF implementation of bpf_testmod_ops,
//! triggers it through the module's proc file and detaches it.
//!
//! Without a subcommand it behaves as the tutorial's loader: attach, trigger
//! once, trigger every 2 s, detach cleanly on SIGINT or SIGTERM. The
//! subcommands are the building blocks the scenarios use; what they print
//! and how they exit is `crate::contract`.

mod contract_cases;
mod ops;
mod paths;
mod races;
mod skel;

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use harness::loader::{self as blocks, report_programs, Failure};
use libbpf_rs::skel::Skel;

use self::ops as struct_ops_loader;
use self::ops::Refused;
use crate::contract;

#[derive(Parser)]
#[command(about = "Attach, trigger and detach the BPF implementation of bpf_testmod_ops")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, trigger once, detach.
    Once {
        #[arg(long, default_value = contract::DEFAULT_MESSAGE)]
        message: String,
    },
    /// Attach and stay attached until SIGINT or SIGTERM; prints "attached" once attached.
    Hold,
    /// Attach, trigger and detach COUNT times, failing on the first cycle that fails.
    Cycles {
        #[arg(long, default_value_t = 100)]
        count: u32,
        #[arg(long, default_value = "cycle")]
        message: String,
    },
    /// Only write MESSAGE to the trigger file, attaching nothing.
    Trigger {
        #[arg(long, default_value = contract::DEFAULT_MESSAGE)]
        message: String,
    },
    /// Load an implementation the verifier must refuse, and report why it did.
    LoadRejected {
        #[arg(long, value_enum)]
        program: RefusedProgram,
    },
    /// Trigger from THREADS threads while another thread attaches and detaches, for SECONDS.
    Stress {
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Trigger from THREADS threads while another thread attaches one
    /// implementation (one that calls the kfunc), switches its link between
    /// two UPDATES times and detaches, for SECONDS (on a kernel with KCSAN,
    /// for 300 cycles at least).
    UpdateRace {
        #[arg(long, default_value_t = 2)]
        threads: u32,
        #[arg(long, default_value_t = 4)]
        updates: u32,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// Trigger from THREADS threads for SECONDS, nothing attached.
    TriggerStorm {
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 2)]
        seconds: u64,
    },
    /// Trigger from THREADS threads while another thread loads, attaches,
    /// detaches and frees fresh skeletons and a third attempts rmmod, for SECONDS.
    ReleaseRace {
        #[arg(long, default_value_t = 3)]
        threads: u32,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
    /// THREADS threads trigger for SECONDS while ops_every, an
    /// implementation of every member, is attached and detached in a loop.
    MemberStorm {
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 2)]
        seconds: u64,
    },
    /// PROCESSES loader processes attach at the same moment, ROUNDS times:
    /// each round exactly one must register and every other get EEXIST.
    ConcurrentAttach {
        #[arg(long, default_value_t = 4)]
        processes: u32,
        #[arg(long, default_value_t = 20)]
        rounds: u32,
    },
    /// One case of the contract between bpf_testmod_ops and its implementations.
    Contract {
        #[arg(value_enum)]
        case: contract_cases::Case,
    },
    /// One process of concurrent-attach, driven line by line on stdin.
    #[command(hide = true)]
    RaceMember,
}

#[derive(Clone, Copy, ValueEnum)]
enum RefusedProgram {
    /// Calls bpf_skb_load_bytes, a helper bpf_testmod_ops does not hand out.
    ForeignHelper,
    /// Writes its own context.
    CtxWrite,
}

/// The loader's entry point: `args` are its command line, its name first.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let outcome = match Cli::parse_from(args).command {
        None => run_tutorial(),
        Some(Command::Once { message }) => run_once(&message),
        Some(Command::Hold) => run_hold(),
        Some(Command::Cycles { count, message }) => run_cycles(count, &message),
        Some(Command::Trigger { message }) => struct_ops_loader::trigger(&message)
            .map(|()| println!("Triggered struct_ops"))
            .map_err(Failure::from),
        Some(Command::LoadRejected { program }) => run_load_rejected(program),
        Some(Command::Stress { threads, seconds }) => {
            races::stress(threads, Duration::from_secs(seconds))
        }
        Some(Command::UpdateRace {
            threads,
            updates,
            seconds,
        }) => races::update_race(threads, updates, Duration::from_secs(seconds)),
        Some(Command::TriggerStorm { threads, seconds }) => {
            races::trigger_storm(threads, Duration::from_secs(seconds))
        }
        Some(Command::MemberStorm { threads, seconds }) => {
            races::member_storm(threads, Duration::from_secs(seconds))
        }
        Some(Command::ReleaseRace { threads, seconds }) => {
            races::release_race(threads, Duration::from_secs(seconds))
        }
        Some(Command::ConcurrentAttach { processes, rounds }) => {
            races::concurrent_attach(processes, rounds)
        }
        Some(Command::RaceMember) => races::race_member(),
        Some(Command::Contract { case }) => contract_cases::run(case),
    };
    blocks::finish(outcome)
}

/// The tutorial's loader, line for line: attach, trigger, trigger every 2 s
/// until SIGINT or SIGTERM, detach.
fn run_tutorial() -> Result<(), Failure> {
    let stop = blocks::stop_requested()?;
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let attachment = struct_ops_loader::attach(&mut skel)?;
    println!("Successfully loaded and attached BPF struct_ops!");
    println!("Triggering struct_ops callbacks...");
    match struct_ops_loader::trigger(contract::DEFAULT_MESSAGE) {
        Ok(()) => println!("Triggered struct_ops successfully! Check dmesg for output."),
        Err(err) => println!("Failed to trigger struct_ops: {err}"),
    }
    println!("\nPress Ctrl-C to exit...");
    while !blocks::sleep_unless_stopped(&stop, Duration::from_secs(2)) {
        if struct_ops_loader::trigger(contract::TUTORIAL_PERIODIC_MESSAGE).is_ok() {
            println!("{}", contract::TUTORIAL_PERIODIC);
        }
    }
    println!("\nDetaching struct_ops...");
    report_programs(skel.object());
    drop(attachment);
    Ok(())
}

fn run_once(message: &str) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let attachment = struct_ops_loader::attach(&mut skel)?;
    println!("Successfully loaded and attached BPF struct_ops!");
    struct_ops_loader::trigger(message)?;
    println!("Triggered struct_ops");
    report_programs(skel.object());
    drop(attachment);
    println!("Detached struct_ops");
    Ok(())
}

fn run_hold() -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let attachment = struct_ops_loader::attach(&mut skel)?;
    blocks::hold(contract::HOLD_ATTACHED, || {
        report_programs(skel.object());
        drop(attachment);
        println!("Detached struct_ops");
        Ok(())
    })
}

fn run_cycles(count: u32, message: &str) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let in_cycle = |cycle: u32, failure: Failure| failure.context(format!("cycle {cycle}"));
    for cycle in 1..=count {
        let attachment = struct_ops_loader::attach(&mut skel)
            .map_err(|err| in_cycle(cycle, Failure::from(err)))?;
        struct_ops_loader::trigger(message).map_err(|err| in_cycle(cycle, Failure::from(err)))?;
        drop(attachment);
    }
    println!("{count} cycles of attach, trigger, detach");
    Ok(())
}

fn run_load_rejected(program: RefusedProgram) -> Result<(), Failure> {
    let which = match program {
        RefusedProgram::ForeignHelper => Refused::ForeignHelper,
        RefusedProgram::CtxWrite => Refused::CtxWrite,
    };
    blocks::load_rejected(|| Ok(struct_ops_loader::load_refused(which)?))
}
