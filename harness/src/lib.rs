//! The struct_ops VM harness as a library for a subject's crate: declare a
//! [`Subject`] with its [`Scenario`]s written against [`Context`], and make
//! the crate's VM test target's `main` [`main!`]. That one binary then plays
//! every role:
//!
//! - under `cargo nextest run` (or `cargo test`), the host runner: one test
//!   per scenario, each booting a VM and checking an insta snapshot;
//! - built in release by the harness, PID 1 in the guest (the agent), which
//!   runs a scenario's steps and re-executes itself as the loader, and as
//!   the process a [`Workload`]'s threads run in (`__workload`);
//! - `__catalogue`: what it declares, as JSON, for the `harness` tool.
//!
//! ```no_run
//! // tests/vm.rs
//! # mod my_subject {
//! #     pub const SUBJECT: harness::Subject =
//! #         harness::Subject::new("hello", "an example", env!("CARGO_MANIFEST_DIR"));
//! # }
//! harness::main!(my_subject::SUBJECT);
//! ```
//!
//! The [`guide`] explains how to write a subject, chapter by chapter, from
//! [`guide::first_subject`] on.
#![deny(missing_docs)]

mod binary;
#[doc(hidden)]
pub mod config;
pub mod guide;
#[doc(hidden)]
pub mod view;

pub use binary::{run_binary, Binary};
pub use guest_agent::runtime::context::{Context, StepId};
pub use guest_agent::runtime::loader::Held;
pub use guest_agent::runtime::module::{self, ModuleSpec};
pub use guest_agent::runtime::netem::Netem;
pub use guest_agent::runtime::run::UNLOAD_LIMIT;
pub use guest_agent::runtime::sched_ext::SchedExtState;
pub use guest_agent::runtime::workload::Workload;
pub use guest_agent::scenario::{BpfObject, Scenario, Subject};
/// The host side whole (kernels, QEMU, the suite, reports), for tests that
/// drive it directly, with the `test-support` feature; not kept stable.
#[cfg(feature = "test-support")]
pub use harness_host as host;
/// Normalisation: what differs between two runs of a scenario, replaced by
/// a placeholder before its snapshot is compared ([`guide::snapshots`]).
pub mod normalise {
    pub use harness_host::normalise::{normalise_text, Normaliser};
}
#[cfg(feature = "loader")]
pub mod loader;
/// The contracts between host, agent and loader.
pub use harness_wire as wire;
/// The lines a loader prints through a contract case, for it and its scenario.
pub use harness_wire::case;
pub use harness_wire::exit;
pub use harness_wire::kernel_type::{ExitKind, KernelType, TypeExit};
pub use harness_wire::protocol::{Outcome, Source};
pub use harness_wire::report::Report;
pub use harness_wire::tcp_info::{CaState, TcpInfo, INITIAL_SSTHRESH};
pub use harness_wire::workload::{SchedClass, ThreadReport, WorkloadReport};
pub use nix::errno::Errno;
pub use nix::sys::signal::Signal;

/// A loader's entry point: the words after `__loader <subject>`.
pub type LoaderMain = fn(Vec<std::ffi::OsString>) -> std::process::ExitCode;

/// Makes a test target the subject's one binary: `harness::main!(SUBJECT)`
/// (or several subjects). Its test target needs `harness = false`.
#[macro_export]
macro_rules! main {
    ($($subject:expr),+ $(,)?) => {
        static SUBJECTS: &[&$crate::Subject] = &[$(&$subject),+];
        fn main() -> ::std::process::ExitCode {
            $crate::run_binary(
                SUBJECTS,
                $crate::Binary {
                    package: env!("CARGO_PKG_NAME"),
                    manifest_dir: env!("CARGO_MANIFEST_DIR"),
                },
            )
        }
    };
}

/// `harness::loader!(NAME = path::to::main)` declares the constant `NAME`:
/// `Some(main)` in the build with the crate's `loader` feature (the guest's),
/// `None` in the others (the host runner's, which needs no BPF toolchain).
#[macro_export]
macro_rules! loader {
    ($name:ident = $main:path) => {
        #[cfg(feature = "loader")]
        const $name: Option<$crate::LoaderMain> = Some($main);
        #[cfg(not(feature = "loader"))]
        const $name: Option<$crate::LoaderMain> = None;
    };
}
