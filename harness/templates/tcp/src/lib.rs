//! The subject: @NAME@, a BPF implementation of the kernel's own struct
//! tcp_congestion_ops (src/bpf/@NAME@.bpf.c), attached by the loader
//! (src/loader/, built with the `loader` feature only). No module.

pub mod contract;
#[cfg(feature = "loader")]
mod loader;
mod scenarios;

use harness::{KernelType, Subject};

harness::loader!(LOADER = loader::main);

/// The subject, as the harness learns of it.
pub const SUBJECT: Subject = Subject::new(
    "@NAME@",
    "@NAME@, a BPF struct tcp_congestion_ops",
    env!("CARGO_MANIFEST_DIR"),
)
.implements(KernelType::TcpCongestionOps)
.loader("@NAME@_loader", LOADER)
.scenarios(scenarios::SCENARIOS)
// A struct field's offset in the verifier's reason moves with the kernel's layout.
.normalise(&[(r"\b(to [a-z_]+ at off )\d+", "${1}<OFFSET>")]);
