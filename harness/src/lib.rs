//! The host side of the struct_ops VM test harness: builds the kernel, the
//! module and the guest binaries, boots them in QEMU, runs scenarios through
//! the guest agent and turns their results into reports and snapshots.

pub mod accel;
pub mod artifacts;
pub mod bench;
pub mod cache;
pub mod elf;
pub mod guest_binaries;
pub mod guest_clock;
pub mod host_deps;
pub mod kernel;
pub mod kmod;
pub mod normalise;
pub mod paths;
pub mod process;
pub mod progress;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod run_dirs;
pub mod step_in;
pub mod suite;
pub mod text;
pub mod virtiofsd;
pub mod vm;
pub mod vng;
pub mod wait;
