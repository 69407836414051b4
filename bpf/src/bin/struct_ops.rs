//! The userspace loader: attaches the BPF implementation of bpf_testmod_ops,
//! triggers it through the module's proc file and detaches it.
//!
//! Without a subcommand it behaves as the tutorial's loader: attach, trigger
//! once, trigger every 2 s, detach cleanly on SIGINT or SIGTERM. The
//! subcommands are the building blocks the guest agent's scenarios use.

use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use struct_ops_loader::{AttachError, LoadError, TriggerError};

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
        #[arg(long, default_value = DEFAULT_MESSAGE)]
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
        #[arg(long, default_value = DEFAULT_MESSAGE)]
        message: String,
    },
    /// Load the implementation the verifier must reject, and report why it did.
    LoadRejected,
    /// Trigger from THREADS threads while another thread attaches and detaches, for SECONDS.
    Stress {
        #[arg(long, default_value_t = 4)]
        threads: u32,
        #[arg(long, default_value_t = 3)]
        seconds: u64,
    },
}

const DEFAULT_MESSAGE: &str = "Hello from userspace!";

/// Exit codes the guest agent tells apart.
mod exit {
    pub const FAILURE: u8 = 1;
    pub const MODULE_NOT_LOADED: u8 = 3;
    pub const REJECTED_BY_VERIFIER: u8 = 4;
    pub const ALREADY_ATTACHED: u8 = 17;
}

/// An error that knows which exit code it deserves.
struct Failure {
    code: u8,
    message: String,
}

impl From<LoadError> for Failure {
    fn from(err: LoadError) -> Self {
        let code = match err {
            LoadError::ModuleNotLoaded { .. } => exit::MODULE_NOT_LOADED,
            LoadError::Rejected { .. } => exit::REJECTED_BY_VERIFIER,
            LoadError::Other { .. } => exit::FAILURE,
        };
        Failure {
            code,
            message: format!("Failed to load BPF skeleton: {err}"),
        }
    }
}

impl From<AttachError> for Failure {
    fn from(err: AttachError) -> Self {
        let code = match err {
            AttachError::AlreadyAttached => exit::ALREADY_ATTACHED,
            AttachError::Other(_) => exit::FAILURE,
        };
        Failure {
            code,
            message: format!("Failed to attach struct_ops: {err}"),
        }
    }
}

impl From<TriggerError> for Failure {
    fn from(err: TriggerError) -> Self {
        let code = match err {
            TriggerError::ModuleNotLoaded { .. } => exit::MODULE_NOT_LOADED,
            TriggerError::Io(_) => exit::FAILURE,
        };
        Failure {
            code,
            message: format!("Failed to trigger struct_ops: {err}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        None => run_interactive(),
        Some(Command::Once { message }) => run_once(&message),
        Some(Command::Hold) => run_hold(),
        Some(Command::Cycles { count, message }) => run_cycles(count, &message),
        Some(Command::Trigger { message }) => struct_ops_loader::trigger(&message)
            .map(|()| println!("Triggered struct_ops"))
            .map_err(Failure::from),
        Some(Command::LoadRejected) => run_load_rejected(),
        Some(Command::Stress { threads, seconds }) => {
            run_stress(threads, Duration::from_secs(seconds))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn stop_requested() -> Result<Arc<AtomicBool>, Failure> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag)).map_err(|err| Failure {
            code: exit::FAILURE,
            message: format!("installing the handler for signal {signal}: {err}"),
        })?;
    }
    Ok(flag)
}

/// Sleeps up to `total`, returning early (true) once a stop was requested.
fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) -> bool {
    let deadline = Instant::now() + total;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop.load(Ordering::Relaxed)
}

fn run_interactive() -> Result<(), Failure> {
    let stop = stop_requested()?;
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let attachment = struct_ops_loader::attach(&mut skel)?;
    println!("Successfully loaded and attached BPF struct_ops!");
    println!("Triggering struct_ops callbacks...");
    match struct_ops_loader::trigger(DEFAULT_MESSAGE) {
        Ok(()) => println!("Triggered struct_ops successfully! Check dmesg for output."),
        Err(err) => println!("Failed to trigger struct_ops: {err}"),
    }
    println!("\nPress Ctrl-C to exit...");
    while !sleep_unless_stopped(&stop, Duration::from_secs(2)) {
        if struct_ops_loader::trigger("Periodic trigger").is_ok() {
            println!("Triggered struct_ops again...");
        }
    }
    println!("\nDetaching struct_ops...");
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
    drop(attachment);
    println!("Detached struct_ops");
    Ok(())
}

fn run_hold() -> Result<(), Failure> {
    let stop = stop_requested()?;
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let attachment = struct_ops_loader::attach(&mut skel)?;
    println!("attached");
    while !sleep_unless_stopped(&stop, Duration::from_secs(3600)) {}
    drop(attachment);
    println!("Detached struct_ops");
    Ok(())
}

fn run_cycles(count: u32, message: &str) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    for cycle in 1..=count {
        let attachment = struct_ops_loader::attach(&mut skel).map_err(|err| Failure {
            message: format!("cycle {cycle}: {}", Failure::from(err).message),
            code: exit::FAILURE,
        })?;
        struct_ops_loader::trigger(message).map_err(|err| Failure {
            message: format!("cycle {cycle}: {}", Failure::from(err).message),
            code: exit::FAILURE,
        })?;
        drop(attachment);
    }
    println!("{count} cycles of attach, trigger, detach");
    Ok(())
}

fn run_load_rejected() -> Result<(), Failure> {
    match struct_ops_loader::load_rejected_program() {
        Ok(()) => Err(Failure {
            code: exit::FAILURE,
            message: "the verifier accepted a program it must reject".to_owned(),
        }),
        Err(err) => Err(err.into()),
    }
}

fn run_stress(threads: u32, duration: Duration) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let stop = Arc::new(AtomicBool::new(false));
    let triggers: Vec<_> = (0..threads)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    struct_ops_loader::trigger("stress")?;
                    count += 1;
                }
                Ok::<u64, TriggerError>(count)
            })
        })
        .collect();
    let deadline = Instant::now() + duration;
    let mut cycles = 0u64;
    let mut attach_failure = None;
    while Instant::now() < deadline {
        match struct_ops_loader::attach(&mut skel) {
            Ok(attachment) => {
                thread::sleep(Duration::from_millis(5));
                drop(attachment);
                cycles += 1;
            }
            Err(err) => {
                attach_failure = Some(Failure::from(err));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut triggered = 0u64;
    for handle in triggers {
        match handle.join() {
            Ok(Ok(count)) => triggered += count,
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => {
                return Err(Failure {
                    code: exit::FAILURE,
                    message: "a trigger thread panicked".to_owned(),
                })
            }
        }
    }
    if let Some(failure) = attach_failure {
        return Err(failure);
    }
    println!("{cycles} attach/detach cycles while {threads} threads triggered {triggered} times");
    Ok(())
}
