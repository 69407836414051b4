//! What the loader and the scenarios agree on, in one place.

/// The module, which defines struct @NAME@_ops.
pub const MODULE: &str = "@NAME@";
/// What `hold` prints once the implementation is attached.
pub const HOLD_ATTACHED: &str = "attached";
/// The module's proc file: a write calls each op once.
pub const TRIGGER_PATH: &str = "/proc/@NAME@_trigger";
/// The module's BTF: it exists exactly while the module is loaded.
pub const MODULE_BTF: &str = "/sys/kernel/btf/@NAME@";
/// Where the harness tells the loader the module's file is, for the fix it prints.
pub const MODULE_PATH_ENV: &str = "@NAME_UPPER@_KO";
/// Why the verifier refuses src/bpf/rejected.bpf.c.
pub const REJECTED_REASON: &str = "program of this type cannot use helper bpf_skb_load_bytes#26";
