//! Where the module's pieces are, as the loader finds them.

use std::path::PathBuf;

/// The module's name, as rmmod and /sys/module know it.
pub const MODULE_NAME: &str = "bpf_testmod";

/// The module's proc file; a write calls the attached ops.
pub const TRIGGER_PATH: &str = "/proc/bpf_testmod_trigger";

use crate::contract::MODULE_PATH_ENV;

/// The module's BTF in sysfs; it exists exactly while the module is loaded.
pub fn module_btf_path() -> PathBuf {
    PathBuf::from("/sys/kernel/btf/bpf_testmod")
}

pub fn module_ko_hint() -> String {
    std::env::var(MODULE_PATH_ENV).unwrap_or_else(|_| "kmod/bpf_testmod.ko".to_owned())
}
