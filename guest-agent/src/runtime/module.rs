//! Loading and unloading a module through the syscalls, so that the
//! outcome is an errno a scenario can assert on rather than a tool's wording.

use std::ffi::CString;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::kmod::{delete_module, finit_module, DeleteModuleFlags, ModuleInitFlags};

pub fn insmod(ko: &Path) -> Result<(), String> {
    let file = File::open(ko).map_err(|err| format!("opening {}: {err}", ko.display()))?;
    finit_module(&file, &CString::default(), ModuleInitFlags::empty()).map_err(describe)
}

pub fn rmmod(name: &str) -> Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    delete_module(&name, DeleteModuleFlags::O_NONBLOCK)
}

pub fn is_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name).exists()
}

/// Retries rmmod while the module is busy: a struct_ops map is freed after an
/// RCU grace period, so the module's last reference goes a little after the
/// link does. Returns how long it took, or the last error at the deadline.
pub fn rmmod_within(name: &str, limit: Duration) -> Result<Duration, (Errno, Duration)> {
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

/// `EAGAIN (Try again)`: the name tests assert on and the words people read.
pub fn describe(errno: Errno) -> String {
    format!("{errno:?} ({})", errno.desc())
}
