//! What the guest's PID 1 sets up before the agent says ready: the
//! filesystems, module autoloading off, the loopback interface, and the
//! trace events the agent captures with. After a boot the agent does all of it. In a VM template,
//! `stage0` does it before the template is saved, so every VM restored from
//! it starts with it done instead of paying for it again (about 20 ms of a
//! 0.3 s restore under TCG, most of it the trace events' code patches), and
//! tells the agent so on [`PREPARED_FD`].
//!
//! Std only, with no dependencies: the harness compiles this same file into
//! `stage0` (a static binary built with `rustc` alone) from
//! [`SOURCE`].

/// This file's text, which the harness compiles into `stage0`.
pub const SOURCE: &str = include_str!("guest_setup.rs");

/// The descriptor on which `stage0` leaves the agent [`PREPARED_NOTE`] when
/// it mounted [`MOUNTS`], emptied [`MODPROBE`] and armed the trace events
/// before the save (the loopback interface is up too, and the agent finds
/// it so): the read end of a pipe, open across the exec. A booted PID 1
/// starts with the console on 0, 1 and 2 and nothing here. The agent reads
/// and closes it before it opens anything, so its descriptors and its
/// environment (`/proc/1/fd`, `/proc/1/environ`) are as after a boot,
/// which an environment variable would not leave them; for a command other
/// than a run it turns the trace events off again ([`TRACE_OFF`]), as they
/// are after a boot.
pub const PREPARED_FD: i32 = 3;

/// What the pipe on [`PREPARED_FD`] holds, whole, then its end.
pub const PREPARED_NOTE: &[u8] = b"the guest is set up (stage0)\n";

/// A filesystem PID 1 mounts.
#[derive(Debug)]
pub struct GuestMount {
    /// What `mount(2)` is given as the source.
    pub source: &'static str,
    /// Where it is mounted.
    pub target: &'static str,
    /// Its filesystem type.
    pub fstype: &'static str,
    /// `statfs`'s `f_type` of the filesystem, to tell whether it is there.
    pub magic: i64,
    /// Mounted only when the kernel has it ([`kernel_has`]); what needs it
    /// says so when it is missing.
    pub optional: bool,
}

const MS_NOSUID: u64 = 2;
const MS_NODEV: u64 = 4;

impl GuestMount {
    /// Its `mount(2)` flags: no set-uid programs anywhere, and no device
    /// nodes but in `/dev`, where they are the point.
    pub fn flags(&self) -> u64 {
        match self.fstype {
            "devtmpfs" => MS_NOSUID,
            _ => MS_NOSUID | MS_NODEV,
        }
    }

    /// Whether [`MODPROBE`] is emptied right after it is mounted: it is
    /// `/proc`, where that file is, and comes before bpffs.
    pub fn empties_modprobe(&self) -> bool {
        self.fstype == "proc"
    }

    /// Whether it is mounted on a directory of `/` itself. `stage0` moves
    /// these into the host's root before entering it; the others move with
    /// them, as they are mounted inside them.
    pub fn is_top_level(&self) -> bool {
        !self.target[1..].contains('/')
    }
}

/// Where cgroup v2 is mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `statfs`'s `f_type` of cgroup v2.
pub const CGROUP2_MAGIC: i64 = 0x6367_7270;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// In order: later entries live inside earlier ones. No tmpfs over /tmp:
/// the root is the host's filesystem, and a tmpfs would hide build output
/// there.
pub const MOUNTS: &[GuestMount] = &[
    GuestMount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        magic: 0x9fa0,
        optional: false,
    },
    GuestMount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        magic: 0x6265_6572,
        optional: false,
    },
    GuestMount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        magic: TMPFS_MAGIC,
        optional: false,
    },
    GuestMount {
        source: "tracefs",
        target: TRACING,
        fstype: "tracefs",
        magic: 0x7472_6163,
        optional: false,
    },
    GuestMount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        magic: TMPFS_MAGIC,
        optional: false,
    },
    GuestMount {
        source: "debugfs",
        target: "/sys/kernel/debug",
        fstype: "debugfs",
        magic: 0x6462_6720,
        optional: false,
    },
    GuestMount {
        source: "bpf",
        target: "/sys/fs/bpf",
        fstype: "bpf",
        magic: 0xcafe_4a11,
        optional: false,
    },
    // Terminals for what a shell runs (script, a second shell's pty).
    GuestMount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        magic: 0x1cd1,
        optional: false,
    },
    // Workloads' cgroups; a kernel without CONFIG_CGROUPS has neither the
    // filesystem nor the directory.
    GuestMount {
        source: "cgroup2",
        target: CGROUP_ROOT,
        fstype: "cgroup2",
        magic: CGROUP2_MAGIC,
        optional: true,
    },
];

/// [`MOUNTS`] in order, less the optional ones the kernel lacks. Lazy: it
/// reads `/proc/filesystems` when it reaches an optional one, so that
/// `/proc`, the first, can be mounted before.
pub fn mounts_the_kernel_has() -> impl Iterator<Item = &'static GuestMount> {
    MOUNTS.iter().filter(|spec| {
        let filesystems = || std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        !spec.optional || kernel_has(&filesystems(), spec.fstype)
    })
}

/// Whether `/proc/filesystems` (its text `filesystems`) lists `fstype`.
pub fn kernel_has(filesystems: &str, fstype: &str) -> bool {
    filesystems
        .lines()
        .any(|line| line.split_whitespace().last() == Some(fstype))
}

/// Emptied as soon as `/proc` is mounted ([`GuestMount::empties_modprobe`]),
/// before bpffs is: each bpffs mount
/// asks for a `bpf_preload` module, and the kernel ran the host's
/// `/sbin/modprobe` for it, over the shared root, which cost a quarter of a
/// second of every VM's start under TCG. Autoloading never worked in these
/// guests: the host's modprobe looks in the host's `/lib/modules`, not for
/// this kernel's modules (the harness loads the subject's module itself).
pub const MODPROBE: &str = "/proc/sys/kernel/modprobe";

/// The network interface PID 1 brings up: scenarios that open TCP
/// connections need it, and the guest has no other.
pub const LOOPBACK: &str = "lo";

/// Where tracefs is mounted.
pub const TRACING: &str = "/sys/kernel/tracing";

/// The files under [`TRACING`] PID 1 turns on ([`TRACE_ON`]) for a run,
/// each off ([`TRACE_OFF`]) after a boot: the console's printk event;
/// `bpf_trace_printk`'s, which the kernel enables itself when a program
/// using it loads, but from a workqueue (6.12 and later), so a program
/// called at once after its load printed into a disabled event; and events
/// from every task PID 1's tasks fork.
pub const TRACE_SWITCHES: &[&str] = &[
    "events/printk/console/enable",
    "events/bpf_trace/bpf_trace_printk/enable",
    "options/event-fork",
];
/// What a [`TRACE_SWITCHES`] file is given to turn it on.
pub const TRACE_ON: &str = "1";
/// What a [`TRACE_SWITCHES`] file is given to turn it off, as after a boot.
pub const TRACE_OFF: &str = "0";

/// The file under [`TRACING`] PID 1 appends its pid to (never truncates:
/// see the agent's `kernel_output`), so trace events come from it and what
/// it forks only. `stage0` execs the agent, which keeps PID 1.
pub const TRACE_EVENT_PID: &str = "set_event_pid";

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

    #[test]
    fn the_top_level_mounts_hold_all_the_others() {
        let top: Vec<&str> = (MOUNTS.iter().filter(|spec| spec.is_top_level()))
            .map(|spec| spec.target)
            .collect();
        assert_eq!(top, ["/proc", "/sys", "/dev", "/run"]);
        for spec in MOUNTS.iter().filter(|spec| !spec.is_top_level()) {
            let inside = |dir: &&str| spec.target.starts_with(&format!("{dir}/"));
            assert!(
                top.iter().any(inside),
                "{} is in no top-level mount",
                spec.target
            );
        }
    }

    #[test]
    fn modprobe_is_emptied_once_and_before_bpffs_is_mounted() {
        let at = |fstype| MOUNTS.iter().position(|spec| spec.fstype == fstype);
        let emptying: Vec<usize> = (0..MOUNTS.len())
            .filter(|&index| MOUNTS[index].empties_modprobe())
            .collect();
        assert_eq!(emptying.len(), 1);
        assert!(emptying[0] < at("bpf").unwrap());
    }

    #[test]
    fn only_dev_may_hold_device_nodes() {
        for spec in MOUNTS {
            assert_eq!(spec.flags() & MS_NOSUID, MS_NOSUID, "{}", spec.target);
            let nodev = spec.flags() & MS_NODEV != 0;
            assert_eq!(nodev, spec.target != "/dev", "{}", spec.target);
        }
    }
}
