use std::path::PathBuf;

/// The module's name, as rmmod and /sys/module know it.
pub const MODULE_NAME: &str = "bpf_testmod";

/// The module's proc file; a write calls the attached ops.
pub const TRIGGER_PATH: &str = "/proc/bpf_testmod_trigger";

/// Where the harness tells the loader the module lives, for the fix it prints.
const MODULE_KO_ENV: &str = "BPF_TESTMOD_KO";

/// The module's BTF in sysfs; it exists exactly while the module is loaded.
pub fn module_btf_path() -> PathBuf {
    PathBuf::from("/sys/kernel/btf/bpf_testmod")
}

pub(crate) fn module_ko_hint() -> String {
    std::env::var(MODULE_KO_ENV).unwrap_or_else(|_| "kmod/bpf_testmod.ko".to_owned())
}
