//! The loader: its subcommands are the scenarios' building blocks. It runs
//! in the guest, as this crate's binary re-executed by its own scenarios.

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use harness::loader::tcp::Connection;
use harness::loader::{self as blocks, errno_of, exit, report_programs, Capture, Failure};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::OpenObject;

use crate::contract::{connect_report, ALGORITHM, HOLD_ATTACHED};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/@NAME@.skel.rs"));
}

mod rejected {
    include!(concat!(env!("OUT_DIR"), "/rejected.skel.rs"));
}

#[derive(Parser)]
#[command(about = "Register @NAME@, a BPF tcp_congestion_ops, and use it over loopback")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register, print "attached", stay registered until SIGINT or SIGTERM, unregister.
    Hold,
    /// Register, run one loopback connection with the algorithm, close it, report init and release.
    Connect,
    /// Load the implementation the verifier must refuse, and report why it did.
    LoadRejected,
}

/// The loader's entry point: `args` are its command line, its name first.
pub fn main(args: Vec<OsString>) -> ExitCode {
    blocks::finish(match Cli::parse_from(args).command {
        Command::Hold => hold(),
        Command::Connect => connect(),
        Command::LoadRejected => load_rejected(),
    })
}

/// Loads the implementation; also a pointer to its .bss, where the kernel counts the calls.
fn load(
    storage: &mut MaybeUninit<OpenObject>,
) -> Result<(skel::@NAME_CAMEL@Skel<'_>, NonNull<skel::types::bss>), Failure> {
    let capture = Capture::start();
    let open = skel::@NAME_CAMEL@SkelBuilder::default()
        .open(storage)
        .map_err(|err| Failure::from(capture.load_error(&err)))?;
    let mut loaded = open
        .load()
        .map_err(|err| Failure::from(capture.load_error(&err)))?;
    let bss = loaded.maps.bss_data.take().map(NonNull::from);
    let bss = bss.ok_or_else(|| Failure::other("libbpf did not map the program's .bss"))?;
    Ok((loaded, bss))
}

/// (init, release) so far. The kernel writes them while this process reads: a volatile read.
fn calls(bss: NonNull<skel::types::bss>) -> (u64, u64) {
    // SAFETY: libbpf keeps the .bss mapped while the skeleton lives.
    let calls = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*bss.as_ptr()).calls)) };
    (calls.init, calls.release)
}

/// Registering the algorithm; dropping the link unregisters it.
fn attach(loaded: &mut skel::@NAME_CAMEL@Skel<'_>) -> Result<libbpf_rs::Link, Failure> {
    let map = &mut loaded.maps.@NAME@;
    map.attach_struct_ops().map_err(|err| match errno_of(&err) {
        Some(libc::EEXIST) => Failure::new(
            exit::ALREADY_ATTACHED,
            format!("an algorithm named {ALGORITHM} is already registered (EEXIST)"),
        ),
        _ => Failure::other(format!("registering {ALGORITHM} failed: {err:#}")),
    })
}

fn hold() -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let (mut loaded, _) = load(&mut storage)?;
    let link = attach(&mut loaded)?;
    blocks::hold(HOLD_ATTACHED, || {
        report_programs(loaded.object());
        drop(link);
        Ok(())
    })
}

fn connect() -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let (mut loaded, bss) = load(&mut storage)?;
    let link = attach(&mut loaded)?;
    // A socket that selects the algorithm before it connects to an echo
    // server on loopback; 64 KiB each way, checked, then a graceful close.
    let mut connection =
        Connection::open(ALGORITHM).map_err(|err| err.failure(exit::UNAVAILABLE))?;
    connection.transfer(64 * 1024)?;
    connection.close()?;
    // release runs when the closed socket is destroyed, a little after close(2).
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls(bss).1 == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (init, release) = calls(bss);
    println!("{}", connect_report(init, release));
    report_programs(loaded.object());
    drop(link);
    Ok(())
}

fn load_rejected() -> Result<(), Failure> {
    blocks::load_rejected(|| {
        let mut storage = MaybeUninit::uninit();
        let capture = Capture::start();
        let open = rejected::RejectedSkelBuilder::default()
            .open(&mut storage)
            .map_err(|err| capture.load_error(&err))?;
        open.load().map_err(|err| capture.load_error(&err))?;
        Ok(())
    })
}
