//! The host side of the struct_ops VM harness: finds the subjects a run is
//! about (what each declares, and its one binary built for the guest),
//! builds the kernel and their modules, boots them in QEMU, runs scenarios
//! through the guest agent and turns their results into reports and
//! snapshots. It knows no subject by name.
#![deny(missing_docs)]

pub mod accel;
pub mod artifacts;
pub mod bench;
pub mod boot_times;
mod bpf;
pub mod cache;
pub mod catalogue;
mod elf;
mod guest_clock;
pub mod kernel;
pub(crate) mod kernel_types;
pub mod kmod;
pub mod normalise;
pub mod paths;
pub mod process;
pub mod progress;
mod qemu;
mod qmp;
pub mod repeat;
pub mod report;
pub mod run_dirs;
pub mod setup;
pub mod snapshot;
pub mod step_in;
pub mod suite;
mod text;
mod virtiofsd;
pub mod vm;
pub mod vng;
