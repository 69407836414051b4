//! The host side of the struct_ops VM harness: finds the subjects a run is
//! about (what each declares, and its one binary built for the guest),
//! builds the kernel and their modules, boots them in QEMU, runs scenarios
//! through the guest agent and turns their results into reports and
//! snapshots. It knows no subject by name.
//!
//! With the `test-support` feature it also exposes the modules only this
//! repository's tests drive directly (the accelerator's choice, boot times,
//! module builds, processes, run directories, kernel config fragments); they
//! are not kept stable.
#![deny(missing_docs)]

/// A module public with the `test-support` feature (for the repository's
/// own tests), the crate's alone without it.
macro_rules! test_support_mod {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[cfg(feature = "test-support")]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "test-support"))]
        #[allow(dead_code, reason = "what only the repository's tests use")]
        pub(crate) mod $name;
    };
}

test_support_mod!(accel);
pub mod artifacts;
pub mod bench;
test_support_mod!(boot_times);
mod bpf;
pub mod cache;
pub mod catalogue;
mod clang;
mod elf;
mod guest_clock;
pub mod kernel;
pub(crate) mod kernel_types;
test_support_mod!(kmod);
pub mod normalise;
pub mod paths;
test_support_mod!(process);
pub mod progress;
mod qemu;
mod qmp;
pub mod repeat;
pub mod report;
/// The contract between the host and `stage0`, a restored VM's first
/// program (`vm::restore`): compiled here and into `stage0`.
#[cfg_attr(not(test), allow(dead_code))] // stage0 decodes; the host encodes
#[path = "../stage0/start.rs"]
pub(crate) mod restore_contract;
test_support_mod!(run_dirs);
pub mod settings;
pub mod setup;
pub mod snapshot;
pub mod step_in;
pub mod suite;
mod text;
mod virtiofsd;
pub mod vm;
pub mod vng;
