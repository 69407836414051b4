//! The loader: its subcommands are the scenarios' building blocks. It runs
//! in the guest, as this crate's binary re-executed by its own scenarios.

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use harness::loader::{self as blocks, errno_of, exit, report_programs, Capture, Failure};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

use crate::contract::{HOLD_ATTACHED, MODULE, MODULE_BTF, MODULE_PATH_ENV};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/@NAME@.skel.rs"));
}

mod rejected {
    include!(concat!(env!("OUT_DIR"), "/rejected.skel.rs"));
}

#[derive(Parser)]
#[command(about = "Attach the BPF implementation of struct @NAME@_ops")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach, print "attached", stay attached until SIGINT or SIGTERM, detach.
    Hold,
    /// Load the implementation the verifier must refuse, and report why it did.
    LoadRejected,
}

/// The loader's entry point: `args` are its command line, its name first.
pub fn main(args: Vec<OsString>) -> ExitCode {
    blocks::finish(match Cli::parse_from(args).command {
        Command::Hold => hold(),
        Command::LoadRejected => load_rejected(),
    })
}

/// Without the module, libbpf would only say it found no BTF for the type.
fn module_loaded() -> Result<(), Failure> {
    if Path::new(MODULE_BTF).exists() {
        return Ok(());
    }
    let ko = std::env::var(MODULE_PATH_ENV).unwrap_or_else(|_| format!("{MODULE}.ko"));
    Err(Failure::new(
        exit::UNAVAILABLE,
        format!("the {MODULE} module is not loaded ({MODULE_BTF} is missing).\nLoad it with: insmod {ko}"),
    ))
}

fn hold() -> Result<(), Failure> {
    module_loaded()?;
    let mut storage = MaybeUninit::uninit();
    let capture = Capture::start();
    let open = skel::@NAME_CAMEL@SkelBuilder::default()
        .open(&mut storage)
        .map_err(|err| Failure::from(capture.load_error(&err)))?;
    let mut skel = open
        .load()
        .map_err(|err| Failure::from(capture.load_error(&err)))?;
    drop(capture);
    let map = &mut skel.maps.@NAME@_impl;
    let link = map
        .attach_struct_ops()
        .map_err(|err| match errno_of(&err) {
            Some(libc::EEXIST) => Failure::new(
                exit::ALREADY_ATTACHED,
                "another implementation is attached (EEXIST): the module takes one at a time",
            ),
            _ => Failure::other(format!("attaching struct {MODULE}_ops failed: {err:#}")),
        })?;
    // Dropping the link detaches: the module's .unreg runs. Before it, the
    // programs' verifier cost and runs go to the agent.
    blocks::hold(HOLD_ATTACHED, || {
        report_programs(skel.object());
        drop(link);
        Ok(())
    })
}

fn load_rejected() -> Result<(), Failure> {
    module_loaded()?;
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
