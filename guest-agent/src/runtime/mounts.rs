//! The filesystems the agent needs, mounted only where they are missing so
//! the same code works as PID 1 and under vng (which mounted them already).

use anyhow::{Context, Result};
use harness_wire::guest_setup::{mounts_the_kernel_has, GuestMount, MODPROBE};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::statfs;

/// Mounts each filesystem of [`MOUNTS`](harness_wire::guest_setup::MOUNTS)
/// that the kernel has and is not there yet. As PID 1 after a boot
/// (`fresh_boot`) nothing is, whatever the host's directories underneath
/// say; after a restore, `stage0` mounted them.
pub(crate) fn mount_filesystems(fresh_boot: bool) -> Result<()> {
    for spec in mounts_the_kernel_has() {
        if !fresh_boot && is_mounted(spec) {
            continue;
        }
        // /dev/pts is not there on a fresh devtmpfs; the others are.
        if !std::path::Path::new(spec.target).is_dir() {
            std::fs::create_dir_all(spec.target)
                .with_context(|| format!("creating {}", spec.target))?;
        }
        mount(
            Some(spec.source),
            spec.target,
            Some(spec.fstype),
            MsFlags::from_bits_truncate(spec.flags()),
            None::<&str>,
        )
        .with_context(|| format!("mounting {} on {}", spec.fstype, spec.target))?;
        if fresh_boot && spec.empties_modprobe() {
            no_module_autoloading()?;
        }
    }
    Ok(())
}

/// Turns the kernel's module autoloading off ([`MODPROBE`] says why).
fn no_module_autoloading() -> Result<()> {
    std::fs::write(MODPROBE, "\n").with_context(|| format!("emptying {MODPROBE}"))
}

/// By filesystem type. Only meaningful once the guest's own /proc and /sys
/// are up: over 9p, statfs on the host's /proc reports the host's procfs.
fn is_mounted(spec: &GuestMount) -> bool {
    statfs(spec.target).is_ok_and(|stat| stat.filesystem_type().0 == spec.magic)
}
