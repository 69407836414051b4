//! The guide: how to test your own struct_ops code with the harness, in
//! chapters. Each chapter is a module of this crate, so `cargo doc` builds
//! it and its examples compile as doctests (`no_run` where they need a VM).
//!
//! Read them in this order the first time:
//!
//! 1. [`first_subject`]: from `harness new` to a green `cargo nextest run`.
//! 2. [`scenarios`]: [`Scenario`](crate::Scenario) and every
//!    [`Context`](crate::Context) method a scenario may call.
//! 3. [`loaders`]: the loader, the program the scenarios run in the guest,
//!    and the helpers of `harness::loader` (with the `loader` feature).
//! 4. [`kernel_types`]: a type a module defines, `tcp_congestion_ops`, and
//!    sched_ext schedulers.
//! 5. [`kernels`]: which kernel a scenario runs on, the debug and race
//!    flavours, config fragments, the kernel cache.
//! 6. [`snapshots`]: what a snapshot holds, how output is normalised, how
//!    to review a change.
//! 7. [`running`]: `harness run` and `cargo nextest run`, the report, its
//!    JSON, repeated runs and retries.
//! 8. [`ci`]: GitHub Actions with the harness's action.
//! 9. [`stepping_in`]: `harness exec`, `harness shell`, gdb and virtme-ng.
//! 10. [`errors`]: every error a user can meet, by its first line, with its fix.
//! 11. [`environment`]: every environment variable the harness reads.
//! 12. [`bench`](mod@bench): measuring with `harness bench`.
//!
//! # The crates
//!
//! A subject's crate depends on this one, `harness`, and on nothing else
//! of the harness: it re-exports what a subject needs. `harness` is also
//! the command-line tool (`harness run`, `harness new`, ...). Under it,
//! `harness-host` does the host's work: kernels and their
//! cache, modules, QEMU, virtiofsd, the suite, normalisation, snapshots,
//! reports and `harness setup` (a test that drives it directly reaches it as
//! `harness::host`, with the `test-support` feature: this repository's own
//! tests do; it is not kept stable). `guest-agent` is the guest's side: the agent
//! that runs as PID 1 in the VM, [`Context`](crate::Context),
//! [`Subject`](crate::Subject) and [`Scenario`](crate::Scenario).
//! `harness-wire` ([`crate::wire`]) holds the contracts between host, agent
//! and loader: the protocol, [`Outcome`](crate::Outcome), report lines, the
//! exit codes loaders share. `harness-loader` (`harness::loader`, with the
//! `loader` feature) holds a loader's building blocks; it links libbpf, so
//! only the guest's build of a subject uses it.
//!
//! The subjects in the repository's `bpf/` directory are complete examples
//! of each kind of subject: a type a module defines, a BPF
//! `tcp_congestion_ops`, and the kernel's own sched_ext schedulers. They
//! use only the API this guide describes.

/// Declares a chapter: a module whose documentation is the Markdown file,
/// with the crate's items in scope for its links.
macro_rules! chapter {
    ($(#[$attr:meta])* $name:ident, $file:literal) => {
        $(#[$attr])*
        pub mod $name {
            #![doc = include_str!($file)]
            #[allow(unused_imports)]
            use crate::*;
        }
    };
}

chapter!(first_subject, "first_subject.md");
chapter!(scenarios, "scenarios.md");
chapter!(kernel_types, "kernel_types.md");
chapter!(kernels, "kernels.md");
chapter!(snapshots, "snapshots.md");
chapter!(running, "running.md");
chapter!(ci, "ci.md");
chapter!(stepping_in, "stepping_in.md");
chapter!(errors, "errors.md");
chapter!(environment, "environment.md");
chapter!(bench, "bench.md");

/// Loaders and the loader helpers.
///
/// This chapter's examples use `harness::loader`, which only the `loader`
/// feature builds: read it in docs built with `--features loader` (or
/// `--all-features`), where this paragraph is replaced by the chapter.
#[cfg(not(feature = "loader"))]
pub mod loaders {}

#[cfg(feature = "loader")]
chapter!(loaders, "loaders.md");
