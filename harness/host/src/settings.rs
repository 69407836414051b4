//! What the harness is configured with. The library reads no environment
//! variable of its own: a front end (the `harness` command through clap,
//! a subject's test binary through the same clap arguments) fills
//! [`Settings`] from its options and environment and installs them once,
//! before anything else; the library reads them from there.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The harness's configuration. `Default` is what an empty environment
/// means: Debian's default kernel series, the default flavour, KVM probed,
/// the cache under `~/.cache`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Settings {
    /// Where kernels, modules, the KVM verdict and tools are cached; the
    /// front end resolves it (`STRUCT_OPS_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/struct-ops-vmtest`, else `~/.cache/struct-ops-vmtest`).
    pub cache_dir: Option<PathBuf>,
    /// The cap on the kernel cache, e.g. `30G` (`STRUCT_OPS_CACHE_LIMIT`).
    pub cache_limit: Option<String>,
    /// `kvm` or `tcg`, to skip the KVM probe (`STRUCT_OPS_ACCEL`).
    pub accel: Option<String>,
    /// Every boot message on the VM console (`STRUCT_OPS_VERBOSE_CONSOLE`).
    pub verbose_console: bool,
    /// The virtiofsd to use (`STRUCT_OPS_VIRTIOFSD`).
    pub virtiofsd: Option<PathBuf>,
    /// Boot every scenario's VM rather than restore it from its kernel's
    /// saved template (`STRUCT_OPS_BOOT_EACH`).
    pub boot_each: bool,
}

impl Settings {
    /// The settings of an empty environment.
    pub fn new() -> Self {
        Settings::default()
    }

    /// Installs these as the process's settings; the first install wins,
    /// and `false` says these were not installed.
    pub fn install(self) -> bool {
        SETTINGS.set(self).is_ok()
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The installed settings, or the defaults while no front end has
/// installed any (a look before the install does not stop it).
pub(crate) fn get() -> &'static Settings {
    static DEFAULTS: OnceLock<Settings> = OnceLock::new();
    SETTINGS
        .get()
        .unwrap_or_else(|| DEFAULTS.get_or_init(Settings::default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_before_the_install_does_not_stop_it() {
        // No test of this crate installs settings (they share a process
        // under `cargo test`): a look leaves the slot empty for the install.
        assert_eq!(get().cache_limit, None);
        assert!(SETTINGS.get().is_none(), "a look installed the defaults");
    }
}
