//! `stage0`: PID 1 of a VM template. It waits on the start port, and when a
//! restored clone gets its start line it sets the clock, mixes in the
//! entropy, mounts the host's root over 9p in place of the initramfs and
//! execs the agent there, which then runs as PID 1 as after a boot.
//!
//! Built by the harness with `rustc` alone, static (`-C
//! target-feature=+crt-static`), so it uses std and a few libc calls only.

#[allow(dead_code)] // the host's half of the contract
mod start;

use std::ffi::CString;
use std::io::Read;
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

/// In order: the filesystems it needs, the port, the ready line, the start
/// line, then the guest made fresh and the agent exec'd.
fn steps() -> Result<(), String> {
    mount_fs("sysfs", "/sys", "sysfs", 0, "")?;
    mount_fs("devtmpfs", "/dev", "devtmpfs", 0, "")?;
    let port = find_port(Path::new("/sys/class/virtio-ports"), START_PORT_NAME)?;
    let mut port =
        std::fs::File::open(&port).map_err(|err| format!("{}: {err}", port.display()))?;
    eprintln!("{TEMPLATE_READY}");
    let line = read_line(&mut port)?;
    let start = StartLine::decode(&line)?;
    set_clock(start.realtime_ns)?;
    reseed(&start.entropy)?;
    let options = "trans=virtio,version=9p2000.L,msize=512000,cache=loose";
    mount_fs(ROOT_TAG, NEW_ROOT, "9p", MS_RDONLY, options)?;
    switch_root()?;
    exec(&start)
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

fn exec(start: &StartLine) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&start.init)
        .arg0(&start.init)
        .args(&start.args)
        .exec();
    Err(format!("exec {}: {err}", start.init))
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
