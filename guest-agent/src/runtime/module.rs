//! Loading and unloading a module through the syscalls, so that the
//! outcome is an errno a scenario can assert on rather than a tool's wording.

use std::ffi::CString;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use harness_wire::protocol::Outcome;
use nix::errno::Errno;
use nix::kmod::{delete_module, finit_module, DeleteModuleFlags, ModuleInitFlags};

/// A kernel module a subject defines its struct_ops type in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSpec {
    /// As rmmod and /sys/module know it; the file is `<name>.ko`.
    pub(crate) name: &'static str,
    /// Its sources (Kbuild and all), relative to the subject's crate.
    pub(crate) dir: &'static str,
    /// The variable the subject's loader reads the module's path from, for
    /// the fix it prints when the module is not loaded.
    pub(crate) path_env: Option<&'static str>,
    /// What the module prints once loaded (checked after insmod), if anything.
    pub(crate) loaded_line: Option<&'static str>,
    /// What the module prints once unloaded (checked after an rmmod that
    /// unloaded it), if anything.
    pub(crate) unloaded_line: Option<&'static str>,
}

impl ModuleSpec {
    /// The module `name`, built from the Kbuild directory `dir`.
    pub const fn new(name: &'static str, dir: &'static str) -> Self {
        ModuleSpec {
            name,
            dir,
            path_env: None,
            loaded_line: None,
            unloaded_line: None,
        }
    }

    /// The variable the loader is told the module's path in.
    pub const fn path_env(self, name: &'static str) -> Self {
        ModuleSpec {
            path_env: Some(name),
            ..self
        }
    }

    /// The line the module prints once loaded; every insmod expects it.
    pub const fn loaded_line(self, line: &'static str) -> Self {
        ModuleSpec {
            loaded_line: Some(line),
            ..self
        }
    }

    /// The line the module prints once unloaded; every rmmod that unloads
    /// it expects it.
    pub const fn unloaded_line(self, line: &'static str) -> Self {
        ModuleSpec {
            unloaded_line: Some(line),
            ..self
        }
    }

    /// `<name>.ko`.
    pub fn file_name(&self) -> String {
        format!("{}.ko", self.name)
    }
}

/// `demo` for `.../demo.ko`.
pub(crate) fn module_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(String::new, |stem| stem.to_string_lossy().into_owned())
}

/// Loads the module file `ko`.
pub(crate) fn insmod(ko: &Path) -> Result<(), Outcome> {
    let file = File::open(ko).map_err(|err| Outcome::Failed {
        reason: format!("opening {}: {err}", ko.display()),
    })?;
    finit_module(&file, &CString::default(), ModuleInitFlags::empty()).map_err(Outcome::errno)
}

/// One attempt to unload the module `name`, without waiting.
pub fn rmmod(name: &str) -> Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    delete_module(&name, DeleteModuleFlags::O_NONBLOCK)
}

/// Whether the module `name` is loaded.
pub(crate) fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name).exists()
}

/// Retries rmmod while the module is busy: a struct_ops map is freed after an
/// RCU grace period, so the module's last reference goes a little after the
/// link does. Returns how long it took, or the last error at the deadline.
pub(crate) fn rmmod_within(name: &str, limit: Duration) -> Result<Duration, (Errno, Duration)> {
    let start = Instant::now();
    loop {
        match rmmod(name) {
            Ok(()) => return Ok(start.elapsed()),
            Err(errno @ (Errno::EAGAIN | Errno::EBUSY)) => {
                if start.elapsed() >= limit {
                    return Err((errno, start.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(errno) => return Err((errno, start.elapsed())),
        }
    }
}
