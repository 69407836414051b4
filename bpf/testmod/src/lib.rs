//! The tutorial's subject: the `bpf_testmod` module (kmod/bpf_testmod/)
//! defines `struct bpf_testmod_ops`, a BPF program implements it
//! (src/bpf/struct_ops.bpf.c) and the `struct_ops` loader attaches and
//! triggers it. It uses only the harness's public API, as a subject in
//! another repository would: this crate's VM test target is its one binary
//! (`tests/vm.rs`), and its loader is built only with the `loader` feature.

pub mod contract;
#[cfg(feature = "loader")]
mod loader;
mod scenarios;

use harness::{ModuleSpec, Subject};

/// What the module prints once unloaded.
pub const UNLOADED_LINE: &str = "bpf_testmod unloaded";

/// The module that defines `bpf_testmod_ops`.
pub const MODULE: ModuleSpec = ModuleSpec::new("bpf_testmod", "../../kmod/bpf_testmod")
    .path_env(contract::MODULE_PATH_ENV)
    .loaded_line("bpf_testmod loaded with struct_ops support")
    .unloaded_line(UNLOADED_LINE);

harness::loader!(LOADER = loader::main);

/// The subject, as the harness learns of it.
pub const SUBJECT: Subject = Subject::new(
    "bpf_testmod",
    "the tutorial's module defines bpf_testmod_ops; a BPF program implements it",
    env!("CARGO_MANIFEST_DIR"),
)
.module(MODULE)
.loader("struct_ops", LOADER)
.scenarios(scenarios::SCENARIOS)
.verifier_budget("verifier-budget.txt")
// The register the verifier names follows the compiler's allocation.
.normalise(&[(r"\bR\d+ (invalid mem access)", "R<n> ${1}")]);
