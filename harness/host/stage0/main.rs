//! `stage0`: PID 1 of a VM template. It sets up what the agent would after
//! a boot (its filesystems, the trace events: `guest_setup`), so the
//! template is saved with it done, then waits on the start port. When a
//! restored clone gets its start line it sets the clock, mixes in the
//! entropy, mounts the host's root over 9p in place of the initramfs, moves
//! its filesystems there and execs the agent, which then runs as PID 1 as
//! after a boot.
//!
//! Built by the harness with `rustc` alone, static (`-C
//! target-feature=+crt-static`), so it uses std and a few libc calls only.

#[allow(dead_code)] // the host's half of the contract
mod start;
// The harness writes the agent's contract's file next to this one; in the
// harness's own tests, the crate it comes from.
// (rustfmt skips it: the file is not here but in the harness's wire crate.)
#[cfg(not(test))]
#[allow(dead_code)] // the agent's half
#[rustfmt::skip]
mod guest_setup;
#[cfg(test)]
use harness_wire::guest_setup;

use std::ffi::CString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use start::{StartLine, ROOT_TAG, STAGE0_ERROR, START_PORT_NAME, TEMPLATE_READY};

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn mount(
        source: *const i8,
        target: *const i8,
        fstype: *const i8,
        flags: u64,
        data: *const i8,
    ) -> i32;
    fn chroot(path: *const i8) -> i32;
    fn clock_settime(clock: i32, time: *const Timespec) -> i32;
    fn ioctl(fd: i32, request: u64, ...) -> i32;
    fn reboot(how: i32) -> i32;
    fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
    fn close(fd: i32) -> i32;
    fn pipe(fds: *mut i32) -> i32;
    fn sync();
}

const MS_RDONLY: u64 = 1;
const MS_MOVE: u64 = 8192;
const CLOCK_REALTIME: i32 = 0;
/// `RNDADDENTROPY`: mix in bytes and credit their entropy.
const RNDADDENTROPY: u64 = 0x4008_5203;
/// `RNDRESEEDCRNG`: reseed the CRNG now from what was mixed in.
const RNDRESEEDCRNG: u64 = 0x5207;
const RB_POWER_OFF: i32 = 0x4321_fedc;
const AF_INET: i32 = 2;
const SOCK_DGRAM: i32 = 2;
const SOCK_CLOEXEC: i32 = 0o2_000_000;
const SIOCGIFFLAGS: u64 = 0x8913;
const SIOCSIFFLAGS: u64 = 0x8914;
const IFF_UP: i16 = 1;
/// Where the host's root is mounted before it becomes `/`.
const NEW_ROOT: &str = "/root";

fn main() {
    if let Err(err) = steps() {
        eprintln!("{STAGE0_ERROR}{err}");
        unsafe {
            sync();
            reboot(RB_POWER_OFF);
        }
    }
}

/// In order: the guest set up, the port, the ready line, the start line,
/// then the guest made fresh and the agent exec'd.
fn steps() -> Result<(), String> {
    set_up_guest()?;
    let start = start_line()?;
    set_clock(start.realtime_ns)?;
    reseed(&start.entropy)?;
    let options = "trans=virtio,version=9p2000.L,msize=512000,cache=loose";
    mount_fs(ROOT_TAG, NEW_ROOT, "9p", MS_RDONLY, options)?;
    move_filesystems_into(NEW_ROOT)?;
    switch_root()?;
    exec(&start)
}

/// Says ready, then waits for the host's start line on the start port,
/// which is closed again before the exec (so the agent's pipe gets the
/// first free descriptor, [`guest_setup::PREPARED_FD`]).
fn start_line() -> Result<StartLine, String> {
    let port = find_port(Path::new("/sys/class/virtio-ports"), START_PORT_NAME)?;
    let mut port =
        std::fs::File::open(&port).map_err(|err| format!("{}: {err}", port.display()))?;
    eprintln!("{TEMPLATE_READY}");
    StartLine::decode(&read_line(&mut port)?)
}

/// What the agent sets up after a boot, done once in the template, so no
/// restored VM pays for it: the filesystems (and module autoloading off),
/// the loopback interface, and the trace events armed for pid 1, which the
/// agent keeps.
fn set_up_guest() -> Result<(), String> {
    use guest_setup::{MODPROBE, TRACE_EVENT_PID, TRACE_ON, TRACE_SWITCHES};
    for spec in guest_setup::mounts_the_kernel_has() {
        std::fs::create_dir_all(spec.target)
            .map_err(|err| format!("creating {}: {err}", spec.target))?;
        mount_fs(spec.source, spec.target, spec.fstype, spec.flags(), "")?;
        if spec.empties_modprobe() {
            write(MODPROBE, "\n")?;
        }
    }
    bring_up_loopback()?;
    for name in TRACE_SWITCHES {
        write(&tracing(name), TRACE_ON)?;
    }
    let pids = tracing(TRACE_EVENT_PID);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&pids)
        .map_err(|err| format!("opening {pids}: {err}"))?;
    writeln!(file, "{}", std::process::id()).map_err(|err| format!("writing {pids}: {err}"))
}

fn tracing(name: &str) -> String {
    format!("{}/{name}", guest_setup::TRACING)
}

fn write(path: &str, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|err| format!("writing {text:?} to {path}: {err}"))
}

/// The filesystems `set_up_guest` mounted, moved into `root` (those inside
/// a top-level one move with it), so the agent finds them there.
fn move_filesystems_into(root: &str) -> Result<(), String> {
    for spec in guest_setup::MOUNTS
        .iter()
        .filter(|spec| spec.is_top_level())
    {
        let target = format!("{root}{}", spec.target);
        mount_fs(spec.target, &target, "", MS_MOVE, "")
            .map_err(|err| format!("moving {}: {err}", spec.target))?;
    }
    Ok(())
}

/// `struct ifreq` as the flags ioctls use it: the name, the flags, and
/// the rest of its 40 bytes.
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: i16,
    rest: [u8; 22],
}

/// `ip link set lo up`, as the agent does it after a boot.
fn bring_up_loopback() -> Result<(), String> {
    use guest_setup::LOOPBACK;
    let fd = unsafe { socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!("a socket to bring {LOOPBACK} up: {err}"));
    }
    let mut request = IfreqFlags {
        name: [0; 16],
        flags: 0,
        rest: [0; 22],
    };
    request.name[..LOOPBACK.len()].copy_from_slice(LOOPBACK.as_bytes());
    let done = unsafe {
        ioctl(fd, SIOCGIFFLAGS, &mut request) == 0 && {
            request.flags |= IFF_UP;
            ioctl(fd, SIOCSIFFLAGS, &request) == 0
        }
    };
    let err = std::io::Error::last_os_error();
    unsafe { close(fd) };
    if !done {
        return Err(format!("bringing {LOOPBACK} up: {err}"));
    }
    Ok(())
}

/// `/dev/vportNpM` of the virtio-serial port called `name`.
pub(crate) fn find_port(class: &Path, name: &str) -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(class).map_err(|err| format!("{}: {err}", class.display()))?;
    for entry in entries.flatten() {
        let named = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if named.trim_end() == name {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
    }
    Err(format!(
        "no virtio-serial port named {name} in {}",
        class.display()
    ))
}

/// One line from the port. A read of nothing means no host is connected
/// yet (a restore connects it), so it waits and reads again.
pub(crate) fn read_line(port: &mut impl Read) -> Result<String, String> {
    let mut line = Vec::new();
    let mut buffer = [0u8; 4096];
    while !line.ends_with(b"\n") {
        match port.read(&mut buffer) {
            Ok(0) => std::thread::sleep(std::time::Duration::from_millis(5)),
            Ok(read) => line.extend_from_slice(&buffer[..read]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("reading the start port: {err}")),
        }
    }
    String::from_utf8(line).map_err(|err| format!("the start line: {err}"))
}

/// The host's wall clock: a restored guest's is the template's.
fn set_clock(realtime_ns: u64) -> Result<(), String> {
    let time = Timespec {
        tv_sec: (realtime_ns / 1_000_000_000) as i64,
        tv_nsec: (realtime_ns % 1_000_000_000) as i64,
    };
    match unsafe { clock_settime(CLOCK_REALTIME, &time) } {
        0 => Ok(()),
        _ => Err(format!(
            "setting the clock: {}",
            std::io::Error::last_os_error()
        )),
    }
}

/// Credits the host's bytes to the RNG and reseeds it at once, so two
/// clones of one template read different numbers from their first read (a
/// template saved early in its boot has no ready CRNG yet: the credit
/// makes it ready).
fn reseed(entropy: &[u8]) -> Result<(), String> {
    let random = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .map_err(|err| format!("/dev/urandom: {err}"))?;
    // struct rand_pool_info: entropy_count (bits), buf_size (bytes), buf.
    let mut pool = Vec::with_capacity(8 + entropy.len());
    pool.extend_from_slice(&(entropy.len() as i32 * 8).to_ne_bytes());
    pool.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    pool.extend_from_slice(entropy);
    use std::os::fd::AsRawFd;
    let fd = random.as_raw_fd();
    if unsafe { ioctl(fd, RNDADDENTROPY, pool.as_ptr()) } != 0 {
        return Err(format!(
            "crediting entropy: {}",
            std::io::Error::last_os_error()
        ));
    }
    match unsafe { ioctl(fd, RNDRESEEDCRNG) } {
        0 => Ok(()),
        _ => Err(format!(
            "reseeding the RNG: {}",
            std::io::Error::last_os_error()
        )),
    }
}

/// The host's root becomes `/`, as `switch_root` does: moved over the
/// initramfs's root, then entered.
fn switch_root() -> Result<(), String> {
    std::env::set_current_dir(NEW_ROOT).map_err(|err| format!("entering {NEW_ROOT}: {err}"))?;
    mount_fs(".", "/", "", MS_MOVE, "")?;
    let dot = CString::new(".").map_err(|err| err.to_string())?;
    if unsafe { chroot(dot.as_ptr()) } != 0 {
        return Err(format!("chroot: {}", std::io::Error::last_os_error()));
    }
    std::env::set_current_dir("/").map_err(|err| format!("entering /: {err}"))
}

/// The agent, told that the guest is set up.
fn exec(start: &StartLine) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    leave_the_note()?;
    let err = std::process::Command::new(&start.init)
        .arg0(&start.init)
        .args(&start.args)
        .exec();
    Err(format!("exec {}: {err}", start.init))
}

/// Leaves [`guest_setup::PREPARED_NOTE`] in a pipe whose read end is
/// [`guest_setup::PREPARED_FD`], open across the exec, for the agent to
/// read and close: no trace of it stays in the agent's environment.
fn leave_the_note() -> Result<(), String> {
    use std::os::fd::FromRawFd;
    let mut ends = [0i32; 2];
    // pipe(2), not pipe2: the read end must stay open across the exec (the
    // write end is closed below).
    if unsafe { pipe(ends.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let [read, write] = ends;
    // SAFETY: the write end was just made, and is this File's alone.
    let mut writer = unsafe { std::fs::File::from_raw_fd(write) };
    writer
        .write_all(guest_setup::PREPARED_NOTE)
        .map_err(|err| format!("writing to the agent's pipe: {err}"))?;
    // Only 0, 1 and 2 (the console) are open by now, as for a booted PID 1.
    if read != guest_setup::PREPARED_FD {
        return Err(format!(
            "the agent's pipe is on descriptor {read}, not {}: stage0 left a file open",
            guest_setup::PREPARED_FD
        ));
    }
    Ok(())
}

fn mount_fs(
    source: &str,
    target: &str,
    fstype: &str,
    flags: u64,
    data: &str,
) -> Result<(), String> {
    let c = |text: &str| CString::new(text).map_err(|err| err.to_string());
    let (source_c, target_c, fstype_c, data_c) = (c(source)?, c(target)?, c(fstype)?, c(data)?);
    let fstype_ptr = match fstype.is_empty() {
        true => std::ptr::null(),
        false => fstype_c.as_ptr(),
    };
    let done = unsafe {
        mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            fstype_ptr,
            flags,
            data_c.as_ptr(),
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(format!(
            "mounting {source} on {target}: {}",
            std::io::Error::last_os_error()
        )),
    }
}
