//! The second subject: the kernel's own `struct tcp_congestion_ops`,
//! implemented in BPF (vmtest_reno, src/bpf/tcp_ca.bpf.c) and attached by
//! the `tcp_ca` loader. No module: the struct_ops type is built into any
//! kernel with CONFIG_INET and the BPF JIT (images/tcp_ca.config). It uses
//! only the harness's public API, as a subject in another repository would.

pub mod contract;
#[cfg(feature = "loader")]
mod loader;
mod scenarios;

use harness::{KernelType, Subject};

harness::loader!(LOADER = loader::main);

/// The subject, as the harness learns of it.
pub const SUBJECT: Subject = Subject::new(
    "tcp_ca",
    "the kernel's tcp_congestion_ops, implemented in BPF: no module",
    env!("CARGO_MANIFEST_DIR"),
)
.implements(KernelType::TcpCongestionOps)
.loader("tcp_ca", LOADER)
.scenarios(scenarios::SCENARIOS)
.verifier_budget("verifier-budget.txt")
// What the kernel needs for a BPF tcp_congestion_ops (the core asks for it too).
.fragments(&["../../images/tcp_ca.config"])
// A struct field's offset in the verifier's reason moves with the kernel's
// layout (the debug flavour's locks are bigger).
.normalise(&[
    (r"\b(to [a-z_]+ at off )\d+", "${1}<OFFSET>"),
    (r"\b(into ptr_[a-z_]+ at off=)\d+", "${1}<OFFSET>"),
]);
