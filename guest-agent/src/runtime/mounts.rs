//! The filesystems the agent needs, mounted only where they are missing so
//! the same code works as PID 1 and under vng (which mounted them already).

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::statfs::statfs;

struct MountSpec {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    /// statfs f_type of this filesystem, to tell whether it is already there.
    magic: i64,
    /// Mounted only when the kernel has it (`/proc/filesystems` lists it);
    /// what needs it says so when it is missing.
    optional: bool,
}

/// In order: later entries live inside earlier ones. No tmpfs over /tmp: the
/// root is the host's filesystem, and a tmpfs would hide build output there.
const MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        magic: 0x9fa0,
        optional: false,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        magic: 0x6265_6572,
        optional: false,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        magic: TMPFS_MAGIC,
        optional: false,
    },
    MountSpec {
        source: "tracefs",
        target: "/sys/kernel/tracing",
        fstype: "tracefs",
        magic: 0x7472_6163,
        optional: false,
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        magic: TMPFS_MAGIC,
        optional: false,
    },
    MountSpec {
        source: "debugfs",
        target: "/sys/kernel/debug",
        fstype: "debugfs",
        magic: 0x6462_6720,
        optional: false,
    },
    MountSpec {
        source: "bpf",
        target: "/sys/fs/bpf",
        fstype: "bpf",
        magic: 0xcafe_4a11,
        optional: false,
    },
    // Terminals for what a shell runs (script, a second shell's pty).
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        magic: 0x1cd1,
        optional: false,
    },
    // Workloads' cgroups (`Workload::in_cgroup`); a kernel without
    // CONFIG_CGROUPS has neither the filesystem nor the directory.
    MountSpec {
        source: "cgroup2",
        target: super::workload::CGROUP_ROOT,
        fstype: "cgroup2",
        magic: super::workload::CGROUP2_MAGIC,
        optional: true,
    },
];

/// Mounts each filesystem of the table that is not there yet. As PID 1
/// (`fresh_boot`) nothing is, whatever the host's directories underneath say.
pub(crate) fn mount_filesystems(fresh_boot: bool) -> Result<()> {
    for spec in MOUNTS {
        if !fresh_boot && is_mounted(spec) {
            continue;
        }
        // Read here, not before the loop: /proc is the table's first mount.
        let filesystems = || std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        if spec.optional && !kernel_has(&filesystems(), spec.fstype) {
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
            if spec.fstype == "devtmpfs" {
                // Device nodes are the point of /dev.
                MsFlags::MS_NOSUID
            } else {
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV
            },
            None::<&str>,
        )
        .with_context(|| format!("mounting {} on {}", spec.fstype, spec.target))?;
        if fresh_boot && spec.fstype == "proc" {
            no_module_autoloading()?;
        }
    }
    Ok(())
}

/// Turns the kernel's module autoloading off (an empty `kernel.modprobe`),
/// before bpffs is mounted: each bpffs mount asks for a `bpf_preload`
/// module, and the kernel ran the host's `/sbin/modprobe` for it, over the
/// shared root, which cost a quarter of a second of every VM's start under
/// TCG. Autoloading never worked in these guests: the host's modprobe looks
/// in the host's `/lib/modules`, not for this kernel's modules (the
/// harness loads the subject's module itself).
fn no_module_autoloading() -> Result<()> {
    std::fs::write(MODPROBE, "\n").with_context(|| format!("emptying {MODPROBE}"))
}

const MODPROBE: &str = "/proc/sys/kernel/modprobe";

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `/proc/filesystems` (its text `filesystems`) lists `fstype`.
fn kernel_has(filesystems: &str, fstype: &str) -> bool {
    filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fstype))
}

/// By filesystem type. Only meaningful once the guest's own /proc and /sys
/// are up: over 9p, statfs on the host's /proc reports the host's procfs.
fn is_mounted(spec: &MountSpec) -> bool {
    statfs(spec.target).is_ok_and(|stat| stat.filesystem_type().0 == spec.magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_filesystem_is_one_the_kernel_lists() {
        let listed = "nodev\tsysfs\nnodev\tcgroup2\n\text4\n";
        assert!(kernel_has(listed, "cgroup2"));
        assert!(kernel_has(listed, "ext4"));
        assert!(!kernel_has("nodev\tcgroup\n", "cgroup2"));
        assert!(MOUNTS
            .iter()
            .any(|spec| spec.fstype == "cgroup2" && spec.optional));
    }
}
