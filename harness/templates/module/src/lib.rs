//! The subject: struct @NAME@_ops, defined by the @NAME@ module
//! (kmod/@NAME@/), implemented in BPF (src/bpf/@NAME@.bpf.c) and attached by
//! the loader (src/loader/, built with the `loader` feature only).

pub mod contract;
#[cfg(feature = "loader")]
mod loader;
mod scenarios;

use harness::{ModuleSpec, Subject};

harness::loader!(LOADER = loader::main);

/// The subject, as the harness learns of it.
pub const SUBJECT: Subject = Subject::new(
    "@NAME@",
    "struct @NAME@_ops, defined by the @NAME@ module and implemented in BPF",
    env!("CARGO_MANIFEST_DIR"),
)
.module(
    ModuleSpec::new("@NAME@", "kmod/@NAME@")
        .path_env(contract::MODULE_PATH_ENV)
        .loaded_line("@NAME@ loaded")
        .unloaded_line("@NAME@ unloaded"),
)
.loader("@NAME@_loader", LOADER)
.scenarios(scenarios::SCENARIOS);
