//! QEMU: what a VM is made of (the accelerator, the root share, the spec),
//! its command line (small pure functions) and the process that owns it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// What runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// The host's CPU, through /dev/kvm.
    Kvm,
    /// QEMU's emulator: slower, but works without KVM.
    Tcg,
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// How the host's filesystem becomes the guest's root, read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootShare {
    /// vhost-user-fs through a virtiofsd listening on this socket.
    Virtiofs { socket: PathBuf },
    /// QEMU's own 9p server, read-only.
    NineP,
}

pub(crate) const VIRTIOFS_TAG: &str = "hostroot";
pub(crate) const NINEP_TAG: &str = crate::restore_contract::ROOT_TAG;

/// How the VM comes up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// The kernel boots with the agent as its init.
    Boot,
    /// A template: the kernel boots `stage0` from `initramfs`, with its
    /// memory in the file `memory`, shared, so that a save leaves it there.
    Template { initramfs: PathBuf, memory: PathBuf },
    /// A clone of a template: its memory file mapped copy-on-write, its
    /// devices loaded from `state`.
    Restore {
        initramfs: PathBuf,
        memory: PathBuf,
        state: PathBuf,
    },
}

impl Start {
    /// The template's initramfs and memory, when the VM is one or a clone.
    fn template(&self) -> Option<(&Path, &Path)> {
        match self {
            Start::Boot => None,
            Start::Template { initramfs, memory } => Some((initramfs, memory)),
            Start::Restore {
                initramfs, memory, ..
            } => Some((initramfs, memory)),
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Console {
    /// A log file (scenarios, exec).
    File(PathBuf),
    /// The harness's own terminal, raw, Ctrl-C passed through (a shell).
    Terminal,
}

impl Console {
    pub(crate) fn log(&self) -> Option<&Path> {
        match self {
            Console::File(path) => Some(path),
            Console::Terminal => None,
        }
    }
}

/// A stream QEMU sends the harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Channel {
    /// The serial console.
    Console,
    /// The agent's result port: one JSON message a line.
    Result,
    /// An exec'd command's stdout.
    Stdout,
    /// An exec'd command's stderr.
    Stderr,
    /// A second QMP monitor, which only its events are read from (the
    /// first one answers the harness's commands).
    QmpEvents,
}

impl Channel {
    /// Its chardev id on QEMU's command line.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Channel::Console => "console",
            Channel::Result => "result",
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
            Channel::QmpEvents => "events",
        }
    }

    /// The socket QEMU connects it to, in the VM's socket directory.
    pub(crate) fn socket(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.sock", self.id()))
    }
}

/// Everything that differs between two VMs.
#[derive(Debug, Clone)]
pub(crate) struct VmSpec {
    pub(crate) accel: Accel,
    pub(crate) kernel_image: PathBuf,
    pub(crate) memory_mib: u32,
    pub(crate) cpus: u32,
    /// NUMA nodes (1: none declared).
    pub(crate) nodes: u32,
    pub(crate) root: RootShare,
    /// The words handed to the guest agent (after `--` on the kernel command line).
    pub(crate) init: PathBuf,
    pub(crate) init_args: Vec<String>,
    pub(crate) console: Console,
    pub(crate) result_file: PathBuf,
    /// Where an exec'd command's stdout and stderr land, when streamed.
    pub(crate) output_files: Option<(PathBuf, PathBuf)>,
    /// The socket the host answers the agent on (with a debugger).
    pub(crate) control_socket: Option<PathBuf>,
    /// A gdb stub on this local port.
    pub(crate) gdb_port: Option<u16>,
    pub(crate) qmp_socket: PathBuf,
    /// Where the sockets of the channels QEMU connects to are (console,
    /// result port, an exec'd command's output, the QMP events monitor:
    /// `vm::events`), bound by the harness before QEMU starts.
    pub(crate) sockets: PathBuf,
    /// Print every boot message on the console (slower under emulation).
    pub(crate) verbose_console: bool,
    /// The secondary CPUs' delay loop, preset (see `guest_clock`).
    pub(crate) preset_lpj: Option<u64>,
    /// Booted, or a template, or restored from one (`vm::restore`).
    pub(crate) start: Start,
}

pub(crate) fn kernel_cmdline(spec: &VmSpec) -> String {
    let mut words = common_cmdline(spec);
    if spec.start != Start::Boot {
        // stage0, from the initramfs; the agent's words come on its port.
        words.push("rdinit=/init".to_owned());
        return words.join(" ");
    }
    let root = match spec.root {
        RootShare::Virtiofs { .. } => format!("root={VIRTIOFS_TAG} rootfstype=virtiofs"),
        RootShare::NineP => {
            format!("root={NINEP_TAG} rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=512000,cache=loose")
        }
    };
    words.extend([root, "ro".to_owned()]);
    words.extend([format!("init={}", spec.init.display()), "--".to_owned()]);
    words.extend(spec.init_args.iter().cloned());
    words.join(" ")
}

/// The words every VM's kernel gets, booted or a template.
fn common_cmdline(spec: &VmSpec) -> Vec<String> {
    let mut words = vec![
        "console=ttyS0".to_owned(),
        // Each console byte costs a VM exit under emulation: only warnings and
        // worse go there (the agent captures the full log through /dev/kmsg).
        if spec.verbose_console {
            "loglevel=7"
        } else {
            "loglevel=5"
        }
        .to_owned(),
        // Probing for a PS/2 mouse nobody has is a wait in every TCG boot.
        "i8042.noaux".to_owned(),
        // The agent drains the log as it is written; this is room for the
        // bursts it has not reached yet (a larger buffer lengthens a TCG boot).
        // An overwritten record fails the scenario: it could have been a splat.
        "log_buf_len=2M".to_owned(),
        // Panic straight into a reset, which -no-reboot turns into QEMU exiting.
        "panic=-1".to_owned(),
        // setup_IO_APIC's check_timer wants 5 PIT ticks within 40e9/HZ TSC
        // cycles (62 ms of host time under TCG, whose TSC is the host's),
        // and panics "IO-APIC + timer doesn't work!" without them: a loaded
        // host that holds QEMU's timer thread or the vCPU off that long
        // fails the boot (seen twice here: the debug kernel, and the
        // default one in round 150 of a --repeat under a load of 9 on 2
        // cores). QEMU's timer is not broken; KVM guests skip the check too.
        "no_timer_check".to_owned(),
        "oops=panic".to_owned(),
    ];
    // Skips each secondary CPU's 80 ms delay-loop calibration under TCG.
    words.extend(spec.preset_lpj.map(|lpj| format!("lpj={lpj}")));
    words
}

pub(crate) fn qemu_args(spec: &VmSpec) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    let machine = match (&spec.root, spec.nodes) {
        // A template's memory is a file; so is a clone's.
        _ if spec.start != Start::Boot => "q35,memory-backend=mem",
        // vhost-user needs the guest's RAM in shared memory the daemon can map.
        (RootShare::Virtiofs { .. }, 0 | 1) => "q35,memory-backend=mem",
        // With nodes, each node's memory is a backend of its own.
        _ => "q35",
    };
    push(&["-machine", machine]);
    push(&accel_args(spec.accel));
    push(&[
        "-smp",
        &spec.cpus.to_string(),
        "-m",
        &format!("{}M", spec.memory_mib),
    ]);
    args.push("-kernel".into());
    args.push(spec.kernel_image.clone().into());
    args.push("-append".into());
    args.push(kernel_cmdline(spec).into());
    args.extend(template_args(&spec.start, spec.memory_mib));
    args.extend(console_args(spec));
    args.extend(["-serial".into(), "chardev:console".into()]);
    args.extend(["-device".into(), "virtio-serial-pci".into()]);
    args.extend(port_args(spec));
    if let Some(port) = spec.gdb_port {
        args.extend(["-gdb".into(), format!("tcp:127.0.0.1:{port}").into()]);
    }
    let mut qmp = OsString::from("unix:");
    qmp.push(&spec.qmp_socket);
    qmp.push(",server=on,wait=off");
    args.extend(["-qmp".into(), qmp]);
    // A second monitor, only for events: a reader waits on it, while the
    // first one answers the harness's commands.
    let events = Channel::QmpEvents;
    args.extend(channel_args(events, &spec.sockets, None));
    args.extend([
        "-mon".into(),
        format!("chardev={},mode=control", events.id()).into(),
    ]);
    // A guest panic becomes a GUEST_PANICKED event on QMP. QEMU's default
    // for it, shutting down, comes before the kernel flushes its panic
    // message to the console (the notifier runs first): a panic printed
    // from a context that defers printing ended QEMU with status 0 and not
    // a word on the console. With `none` the kernel flushes, then resets
    // (panic=-1), which -no-reboot turns into QEMU exiting.
    args.extend(["-device".into(), "pvpanic-pci".into()]);
    args.extend(["-action".into(), "panic=none".into()]);
    args.extend(root_args(spec));
    args.extend(numa_args(spec));
    args
}

/// A template's or a clone's initramfs and memory file (shared by the
/// template, so a save leaves the guest's memory in it; private to a clone,
/// which then writes to copies of the pages it touches), and a clone's
/// wait for its state.
fn template_args(start: &Start, memory_mib: u32) -> Vec<OsString> {
    let Some((initramfs, memory)) = start.template() else {
        return Vec::new();
    };
    let share = match start {
        Start::Template { .. } => "on",
        _ => "off",
    };
    let mut backend = OsString::from(format!(
        "memory-backend-file,id=mem,size={memory_mib}M,share={share},mem-path="
    ));
    backend.push(memory);
    let mut args: Vec<OsString> = vec!["-initrd".into(), initramfs.into()];
    args.extend(["-object".into(), backend]);
    if let Start::Restore { .. } = start {
        args.extend(["-incoming".into(), "defer".into()]);
    }
    args
}

/// `-numa node` for each node, with its share of the vCPUs and of the
/// memory (shared memory when virtiofsd must map it); none for one node.
fn numa_args(spec: &VmSpec) -> Vec<OsString> {
    if spec.nodes <= 1 {
        return Vec::new();
    }
    let backend = match spec.root {
        RootShare::Virtiofs { .. } => "memory-backend-memfd",
        RootShare::NineP => "memory-backend-ram",
    };
    let share = match spec.root {
        RootShare::Virtiofs { .. } => ",share=on",
        RootShare::NineP => "",
    };
    let size = spec.memory_mib / spec.nodes;
    let mut args = Vec::new();
    for node in 0..spec.nodes {
        let (first, last) = node_cpus(spec.cpus, spec.nodes, node);
        args.push("-object".into());
        args.push(format!("{backend},id=node{node},size={size}M{share}").into());
        args.push("-numa".into());
        args.push(format!("node,nodeid={node},cpus={first}-{last},memdev=node{node}").into());
    }
    args
}

/// The first and last vCPU of `node`: the vCPUs dealt out in equal runs.
fn node_cpus(cpus: u32, nodes: u32, node: u32) -> (u32, u32) {
    let per = (cpus / nodes).max(1);
    let first = (node * per).min(cpus.saturating_sub(1));
    let last = match node + 1 == nodes {
        true => cpus.saturating_sub(1),
        false => (first + per - 1).min(cpus.saturating_sub(1)),
    };
    (first, last)
}

fn console_args(spec: &VmSpec) -> Vec<OsString> {
    match &spec.console {
        Console::File(path) => channel_args(Channel::Console, &spec.sockets, Some(path)),
        // signal=off: Ctrl-C goes to the guest's foreground program, not to QEMU.
        Console::Terminal => vec!["-chardev".into(), "stdio,id=console,signal=off".into()],
    }
}

/// The agent's virtio-serial ports: its result, an exec'd command's output,
/// and the control socket the host answers on.
fn port_args(spec: &VmSpec) -> Vec<OsString> {
    use harness_wire::protocol::{
        CONTROL_PORT_NAME, RESULT_PORT_NAME, STDERR_PORT_NAME, STDOUT_PORT_NAME,
    };
    // (chardev id, port name, the chardev's arguments)
    let channel = |channel: Channel, log: &Path| {
        let args = channel_args(channel, &spec.sockets, Some(log));
        (channel.id(), args)
    };
    let (id, args) = channel(Channel::Result, &spec.result_file);
    let mut ports = vec![(id, RESULT_PORT_NAME, args)];
    if let Some((stdout, stderr)) = &spec.output_files {
        let (id, args) = channel(Channel::Stdout, stdout);
        ports.push((id, STDOUT_PORT_NAME, args));
        let (id, args) = channel(Channel::Stderr, stderr);
        ports.push((id, STDERR_PORT_NAME, args));
    }
    if spec.start != Start::Boot {
        let mut chardev = OsString::from("socket,id=start,path=");
        chardev.push(start_socket(&spec.sockets));
        let args = vec!["-chardev".into(), chardev];
        ports.push(("start", crate::restore_contract::START_PORT_NAME, args));
    }
    if let Some(socket) = &spec.control_socket {
        let mut chardev = OsString::from("socket,id=control,server=on,wait=off,path=");
        chardev.push(socket);
        ports.push((
            "control",
            CONTROL_PORT_NAME,
            vec!["-chardev".into(), chardev],
        ));
    }
    let mut args = Vec::new();
    for (id, name, chardev) in ports {
        args.extend(chardev);
        args.push("-device".into());
        args.push(format!("virtserialport,chardev={id},name={name}").into());
    }
    args
}

fn accel_args(accel: Accel) -> Vec<&'static str> {
    match accel {
        Accel::Kvm => vec!["-accel", "kvm", "-cpu", "host"],
        // Several vCPU threads, so the stress scenario really runs in parallel.
        Accel::Tcg => vec!["-accel", "tcg,thread=multi"],
    }
}

/// A chardev QEMU connects to the harness's socket for `channel` (QEMU
/// connects as it starts, so nothing it sends is lost), and also writes to
/// `log`, the file kept with the VM's logs.
fn channel_args(channel: Channel, sockets: &Path, log: Option<&Path>) -> Vec<OsString> {
    let mut chardev = OsString::from(format!("socket,id={},path=", channel.id()));
    chardev.push(channel.socket(sockets));
    if let Some(log) = log {
        chardev.push(",logfile=");
        chardev.push(log);
    }
    vec!["-chardev".into(), chardev]
}

/// The socket a template's or a clone's QEMU connects its start port to:
/// the host writes the start line there (`vm::restore`), and reads nothing.
pub(crate) fn start_socket(sockets: &Path) -> PathBuf {
    sockets.join("start.sock")
}

/// The channels `spec`'s QEMU connects to (`channel_args`), for the harness to listen on.
pub(crate) fn channels(spec: &VmSpec) -> Vec<Channel> {
    let mut channels = vec![Channel::Result, Channel::QmpEvents];
    if let Console::File(_) = spec.console {
        channels.push(Channel::Console);
    }
    if spec.output_files.is_some() {
        channels.extend([Channel::Stdout, Channel::Stderr]);
    }
    channels
}

fn root_args(spec: &VmSpec) -> Vec<OsString> {
    // A template's guest mounts the host's root only once restored (a
    // mounted 9p export blocks a save); its memory is `template_args`'.
    let root = match spec.start {
        Start::Boot => &spec.root,
        _ => &RootShare::NineP,
    };
    match root {
        RootShare::Virtiofs { socket } => {
            let mut chardev = OsString::from("socket,id=rootfs,path=");
            chardev.push(socket);
            let mut args: Vec<OsString> = Vec::new();
            // With several nodes, their own backends hold the memory.
            if spec.nodes <= 1 {
                let memory = format!(
                    "memory-backend-memfd,id=mem,size={}M,share=on",
                    spec.memory_mib
                );
                args.extend(["-object".into(), memory.into()]);
            }
            args.extend([
                "-chardev".into(),
                chardev,
                "-device".into(),
                format!("vhost-user-fs-pci,chardev=rootfs,tag={VIRTIOFS_TAG}").into(),
            ]);
            args
        }
        RootShare::NineP => vec![
            "-fsdev".into(),
            "local,id=rootfs,path=/,security_model=none,readonly=on,multidevs=remap".into(),
            "-device".into(),
            format!("virtio-9p-pci,fsdev=rootfs,mount_tag={NINEP_TAG}").into(),
        ],
    }
}

pub(crate) const QEMU_BINARY: &str = "qemu-system-x86_64";

/// A running QEMU. Dropping it kills it.
pub(crate) struct QemuProcess {
    handle: duct::Handle,
    pub(crate) stderr_log: PathBuf,
}

impl QemuProcess {
    pub(crate) fn spawn(spec: &VmSpec, stderr_log: PathBuf) -> Result<Self> {
        let binary = find_qemu(std::env::var_os("PATH"))?;
        let mut command = duct::cmd(binary, qemu_args(spec));
        // A console on the terminal reads and writes the harness's own.
        if spec.console != Console::Terminal {
            command = command.stdin_null().stdout_null();
        }
        let handle = command
            .stderr_path(&stderr_log)
            .before_spawn(crate::process::die_with_parent)
            .unchecked()
            .start()
            .context("starting QEMU")?;
        Ok(QemuProcess { handle, stderr_log })
    }

    /// The exit status once QEMU has exited, without waiting.
    pub(crate) fn try_wait(&self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self
            .handle
            .try_wait()
            .context("checking on QEMU")?
            .map(|output| output.status))
    }

    pub(crate) fn kill(&self) {
        let _ = self.handle.kill();
    }

    /// QEMU's process id (its vCPU threads are under /proc/PID/task).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.handle.pids().first().copied()
    }

    pub(crate) fn stderr_tail(&self, lines: usize) -> String {
        crate::text::tail_of_file(&self.stderr_log, lines)
    }

    /// QEMU's last words on one line, if they blame KVM: the only evidence
    /// that counts as "KVM is broken" when QEMU dies before the guest speaks.
    pub(crate) fn kvm_complaint(&self) -> Option<String> {
        let tail = self.stderr_tail(5);
        tail.to_lowercase()
            .contains("kvm")
            .then(|| tail.trim().lines().collect::<Vec<_>>().join(" / "))
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// QEMU on `path` (a PATH value), or an error that says how to get it: the
/// one place that decides whether QEMU is there.
pub(crate) fn find_qemu(path: Option<std::ffi::OsString>) -> Result<PathBuf> {
    crate::process::which_in(QEMU_BINARY, path).with_context(|| {
        format!(
            "{QEMU_BINARY} not found in PATH. Install Debian's qemu-system-x86 \
             (`apt-get install qemu-system-x86`; `harness setup` does)"
        )
    })
}

/// The QEMU command line of `spec`, as a shell would take it (kept with
/// the logs; its channels' sockets were the harness's, gone with the VM).
pub(crate) fn shell_line(spec: &VmSpec) -> String {
    let mut words = vec![QEMU_BINARY.to_owned()];
    words.extend(
        qemu_args(spec)
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    format!("{}\n", harness_wire::shell::quote_words(&words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(root: RootShare, accel: Accel) -> VmSpec {
        VmSpec {
            accel,
            kernel_image: "/k/bzImage".into(),
            memory_mib: 512,
            cpus: 2,
            nodes: 1,
            root,
            init: "/w/target/release/guest-agent".into(),
            init_args: vec!["run".into(), "--scenario".into(), "attach".into()],
            console: Console::File("/t/console.log".into()),
            result_file: "/t/result.json".into(),
            output_files: None,
            control_socket: None,
            gdb_port: None,
            qmp_socket: "/t/qmp.sock".into(),
            sockets: "/s".into(),
            verbose_console: false,
            preset_lpj: None,
            start: Start::Boot,
        }
    }

    #[test]
    fn a_preset_delay_loop_goes_before_the_agent_arguments() {
        let mut with_lpj = spec(RootShare::NineP, Accel::Tcg);
        with_lpj.preset_lpj = Some(10_384_456);
        let cmdline = kernel_cmdline(&with_lpj);
        let (kernel, agent) = cmdline.split_once(" -- ").unwrap();
        assert!(
            kernel.split(' ').any(|word| word == "lpj=10384456"),
            "{cmdline}"
        );
        assert!(!agent.contains("lpj"), "{cmdline}");
        assert!(!kernel_cmdline(&spec(RootShare::NineP, Accel::Tcg)).contains("lpj="));
    }

    #[test]
    fn the_boot_does_not_time_the_timer_against_the_host() {
        for accel in [Accel::Tcg, Accel::Kvm] {
            let cmdline = kernel_cmdline(&spec(RootShare::NineP, accel));
            let (kernel, _) = cmdline.split_once(" -- ").unwrap();
            assert!(
                kernel.split(' ').any(|word| word == "no_timer_check"),
                "{cmdline}"
            );
        }
    }

    fn joined(spec: &VmSpec) -> String {
        qemu_args(spec)
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn cmdline_hands_the_agent_its_arguments_after_the_separator() {
        let cmdline = kernel_cmdline(&spec(RootShare::NineP, Accel::Tcg));
        assert!(
            cmdline.starts_with("console=ttyS0 loglevel=5 i8042.noaux log_buf_len=2M panic=-1"),
            "{cmdline}"
        );
        assert!(
            cmdline.contains("root=/dev/root rootfstype=9p"),
            "{cmdline}"
        );
        assert!(
            cmdline.ends_with(" ro init=/w/target/release/guest-agent -- run --scenario attach"),
            "{cmdline}"
        );
    }

    #[test]
    fn ninep_root_is_read_only_on_the_host_side() {
        let args = joined(&spec(RootShare::NineP, Accel::Tcg));
        assert!(
            args.contains("-fsdev local,id=rootfs,path=/,security_model=none,readonly=on"),
            "{args}"
        );
        assert!(!args.contains("memory-backend"), "{args}");
    }

    #[test]
    fn numa_nodes_get_their_share_of_vcpus_and_shared_memory() {
        assert_eq!(node_cpus(4, 2, 0), (0, 1));
        assert_eq!(node_cpus(4, 2, 1), (2, 3));
        assert_eq!(node_cpus(5, 2, 1), (2, 4));
        let root = RootShare::Virtiofs {
            socket: "/t/v.sock".into(),
        };
        let spec = VmSpec {
            cpus: 4,
            nodes: 2,
            ..spec(root, Accel::Tcg)
        };
        let args = joined(&spec);
        assert!(args.contains("-machine q35 "), "{args}");
        assert!(!args.contains("id=mem,"), "{args}");
        for node in [
            "-object memory-backend-memfd,id=node0,size=256M,share=on",
            "-numa node,nodeid=0,cpus=0-1,memdev=node0",
            "-numa node,nodeid=1,cpus=2-3,memdev=node1",
        ] {
            assert!(args.contains(node), "{node} not in {args}");
        }
    }

    #[test]
    fn virtiofs_root_shares_guest_memory_with_the_daemon() {
        let args = joined(&spec(
            RootShare::Virtiofs {
                socket: "/t/vfs.sock".into(),
            },
            Accel::Tcg,
        ));
        assert!(args.contains("-machine q35,memory-backend=mem"), "{args}");
        assert!(
            args.contains("memory-backend-memfd,id=mem,size=512M,share=on"),
            "{args}"
        );
        assert!(
            args.contains("-chardev socket,id=rootfs,path=/t/vfs.sock"),
            "{args}"
        );
        assert!(
            args.contains("vhost-user-fs-pci,chardev=rootfs,tag=hostroot"),
            "{args}"
        );
        assert!(kernel_cmdline(&spec(
            RootShare::Virtiofs {
                socket: "/s".into()
            },
            Accel::Tcg
        ))
        .contains("root=hostroot rootfstype=virtiofs"));
    }

    #[test]
    fn no_qemu_is_a_clear_error() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_qemu(Some(empty.path().as_os_str().to_owned()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("qemu-system-x86_64 not found in PATH"),
            "{err}"
        );
        assert!(err.contains("apt-get install qemu-system-x86"), "{err}");
        assert!(find_qemu(None).is_err());
    }

    #[test]
    fn a_shell_gets_the_terminal_exec_its_output_ports_gdb_its_stub() {
        let mut shell = spec(RootShare::NineP, Accel::Tcg);
        shell.console = Console::Terminal;
        shell.control_socket = Some("/s/control.sock".into());
        shell.gdb_port = Some(41234);
        let args = joined(&shell);
        for expected in [
            "-chardev stdio,id=console,signal=off -serial chardev:console",
            "-chardev socket,id=control,server=on,wait=off,path=/s/control.sock",
            "virtserialport,chardev=control,name=agent-control",
            "-gdb tcp:127.0.0.1:41234",
        ] {
            assert!(args.contains(expected), "missing {expected}: {args}");
        }
        let mut exec = spec(RootShare::NineP, Accel::Tcg);
        exec.output_files = Some(("/t/out".into(), "/t/err".into()));
        let args = joined(&exec);
        assert!(args.contains("-chardev socket,id=stdout,path=/s/stdout.sock,logfile=/t/out -device virtserialport,chardev=stdout,name=agent-stdout"), "{args}");
        let listened = channels(&exec);
        for channel in [Channel::Stdout, Channel::Stderr, Channel::Result] {
            assert!(listened.contains(&channel), "{listened:?}");
        }
        assert!(
            !channels(&shell).contains(&Channel::Console),
            "the terminal is no socket"
        );
        assert!(
            args.contains("virtserialport,chardev=stderr,name=agent-stderr"),
            "{args}"
        );
        assert!(!args.contains("-gdb"), "{args}");
    }

    #[test]
    fn a_template_shares_its_memory_file_and_a_clone_maps_it_privately_and_waits() {
        let (initramfs, memory) = (
            PathBuf::from("/c/stage0/initramfs.cpio"),
            PathBuf::from("/c/t/memory"),
        );
        let mut saved = spec(RootShare::NineP, Accel::Tcg);
        saved.start = Start::Template {
            initramfs: initramfs.clone(),
            memory: memory.clone(),
        };
        let clone = VmSpec {
            start: Start::Restore {
                initramfs,
                memory,
                state: "/c/t/state".into(),
            },
            ..saved.clone()
        };
        for (spec, share) in [(&saved, "on"), (&clone, "off")] {
            let args = joined(spec);
            for expected in [
                "-machine q35,memory-backend=mem ".to_owned(),
                "-initrd /c/stage0/initramfs.cpio".to_owned(),
                format!("memory-backend-file,id=mem,size=512M,share={share},mem-path=/c/t/memory"),
                "-chardev socket,id=start,path=/s/start.sock -device virtserialport,chardev=start,name=agent-start".to_owned(),
                format!("virtio-9p-pci,fsdev=rootfs,mount_tag={NINEP_TAG}"),
            ] {
                assert!(args.contains(&expected), "missing {expected}: {args}");
            }
            let cmdline = kernel_cmdline(spec);
            assert!(cmdline.ends_with(" rdinit=/init"), "{cmdline}");
            assert!(
                !cmdline.contains("init=/w") && !cmdline.contains(" -- "),
                "{cmdline}"
            );
        }
        // Only the clone waits for its state; the two have the same devices.
        assert!(
            joined(&clone).ends_with("-incoming defer")
                || joined(&clone).contains("-incoming defer ")
        );
        assert!(!joined(&saved).contains("-incoming"));
        let devices = |spec: &VmSpec| -> Vec<String> {
            let args: Vec<String> = qemu_args(spec)
                .iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect();
            args.windows(2)
                .filter(|pair| pair[0] == "-device")
                .map(|pair| pair[1].clone())
                .collect()
        };
        assert_eq!(devices(&saved), devices(&clone));
    }

    #[test]
    fn accelerator_flags() {
        assert!(joined(&spec(RootShare::NineP, Accel::Kvm)).contains("-accel kvm -cpu host"));
        assert!(joined(&spec(RootShare::NineP, Accel::Tcg)).contains("-accel tcg,thread=multi"));
    }

    #[test]
    fn console_result_port_qmp_and_pvpanic_are_wired() {
        let args = joined(&spec(RootShare::NineP, Accel::Tcg));
        for expected in [
            "-chardev socket,id=console,path=/s/console.sock,logfile=/t/console.log -serial chardev:console",
            "-chardev socket,id=result,path=/s/result.sock,logfile=/t/result.json",
            "-chardev socket,id=events,path=/s/events.sock -mon chardev=events,mode=control",
            "virtserialport,chardev=result,name=agent-result",
            "-qmp unix:/t/qmp.sock,server=on,wait=off",
            "-device pvpanic-pci",
            "-action panic=none",
            "-no-reboot",
        ] {
            assert!(args.contains(expected), "missing {expected}: {args}");
        }
    }
}
