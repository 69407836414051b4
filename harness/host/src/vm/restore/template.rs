//! A VM template: found in the cache by what its VMs share, or booted to
//! `stage0`'s ready line and saved there.

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::start::{StartLine, ENTROPY_BYTES, STAGE0_ERROR, TEMPLATE_READY};
use crate::boot_times::BootDeadline;
use crate::qemu::{Channel, Console, QemuProcess, Start, VmSpec};
use crate::qmp::QmpClient;
use crate::vm::events::{Event, Listeners, Process};
use harness_wire::wait::{wait_until, Poll};

/// How long QEMU may take to write a template's state, and to quit after (a
/// clone's load has its boot's deadline).
pub(crate) const STATE_WAIT: Duration = Duration::from_secs(60);

/// A saved template: what a clone's QEMU is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) initramfs: PathBuf,
    /// The guest's memory at the save, which each clone maps copy-on-write.
    pub(crate) memory: PathBuf,
    /// Its devices' state.
    pub(crate) state: PathBuf,
}

impl Template {
    /// How a clone of it starts.
    pub(crate) fn start(&self) -> Start {
        Start::Restore {
            initramfs: self.initramfs.clone(),
            memory: self.memory.clone(),
            state: self.state.clone(),
        }
    }
}

/// A shared hold on a template, from its lookup until the clone has loaded
/// it: no process saves or throws it away meanwhile, so a clone's memory
/// and state are always one save's.
#[derive(Debug)]
pub(crate) struct Lease {
    lock: std::fs::File,
    /// The state file's inode when it was found: the template a clone
    /// failed to load, and no newer one, is the one thrown away.
    inode: u64,
}

/// How long a process waits for another that saves or throws away the
/// template it needs.
const LOCK_WAIT: Duration = Duration::from_secs(180);

/// The template for VMs like `spec` (its kernel, accelerator, vCPUs, memory
/// and kernel command line): from the kernel's cache entry
/// (`kernel_entry/templates/<key>`), or booted and saved now, a boot that
/// misses `stalled` failing the save. One process saves it while the
/// others wait. A save that failed in this process is not tried again.
pub(crate) fn template_for(
    cache: &Path,
    kernel_entry: &Path,
    spec: &VmSpec,
    stalled: BootDeadline,
) -> Result<(Template, Lease)> {
    let initramfs = super::initramfs(cache)?;
    let templates = kernel_entry.join("templates");
    let template_spec = |dir: &Path, sockets: &Path| VmSpec {
        start: Start::Template {
            initramfs: initramfs.clone(),
            memory: dir.join("memory"),
        },
        console: Console::File(dir.join("console.log")),
        result_file: dir.join("result.log"),
        // Its clones may run an exec, whose output comes on these ports.
        output_files: Some((dir.join("stdout.log"), dir.join("stderr.log"))),
        control_socket: None,
        gdb_port: None,
        qmp_socket: sockets.join("qmp.sock"),
        sockets: sockets.to_owned(),
        ..spec.clone()
    };
    // The preset delay loop is measured by each process, slightly apart:
    // it only spares a boot's calibration, and a clone boots no more.
    let image = image_identity(&spec.kernel_image)?;
    let key = key(
        &VmSpec {
            preset_lpj: None,
            ..template_spec(Path::new("/"), Path::new("/"))
        },
        &image,
    )?;
    let dir = templates.join(&key);
    let template = Template {
        initramfs: initramfs.clone(),
        memory: dir.join("memory"),
        state: dir.join("state"),
    };
    remembered_failure(&key)?;
    std::fs::create_dir_all(&templates)
        .with_context(|| format!("creating {}", templates.display()))?;
    let lock = crate::cache::open_lock_file(&templates.join(format!("{key}.lock")))?;
    lock_within(&lock, true, &dir)?;
    if let Some(inode) = complete(&template, spec.memory_mib) {
        return Ok((template, Lease { lock, inode }));
    }
    lock.unlock().context("unlocking a template's lock")?;
    lock_within(&lock, false, &dir)?;
    if complete(&template, spec.memory_mib).is_none() {
        let sockets = crate::run_dirs::create_socket_dir("template")?;
        let saved = save(&template_spec(&dir, sockets.path()), &template, stalled)
            .with_context(|| format!("saving a VM template in {}", dir.display()));
        remember(&key, &saved);
        saved?;
        // The image as the key took it, before the save: a tree rebuilt
        // meanwhile is another image. Best effort: without the file, the
        // template is pruned by age alone.
        let _ = std::fs::write(dir.join(IMAGE_FILE), &image.built);
        prune_unused(&templates, &dir, &image.built);
    }
    // Not atomic: a process may throw the new template away in between,
    // and this clone then fails to load it, and boots.
    lock.lock_shared().context("locking a template")?;
    let inode = complete(&template, spec.memory_mib).context("the new template is gone")?;
    Ok((template, Lease { lock, inode }))
}

/// The saves that failed in this process, by key, and why.
static FAILED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn remembered_failure(key: &str) -> Result<()> {
    let failed = FAILED
        .lock()
        .map_err(|_| anyhow::anyhow!("a thread panicked"))?;
    match failed.iter().find(|(failed, _)| failed == key) {
        Some((_, why)) => bail!("{why} (earlier in this run; the next run tries again)"),
        None => Ok(()),
    }
}

fn remember(key: &str, saved: &Result<()>) {
    if let (Err(err), Ok(mut failed)) = (saved, FAILED.lock()) {
        failed.push((key.to_owned(), format!("{err:#}")));
    }
}

/// Takes the template's lock, shared or exclusive, waiting at most
/// `LOCK_WAIT` for the process that holds it.
fn lock_within(lock: &std::fs::File, shared: bool, dir: &Path) -> Result<()> {
    let taken = wait_until(
        Instant::now() + LOCK_WAIT,
        Duration::from_millis(20),
        || {
            let tried = match shared {
                true => lock.try_lock_shared(),
                false => lock.try_lock(),
            };
            match tried {
                Ok(()) => Poll::Ready(Ok(())),
                Err(std::fs::TryLockError::WouldBlock) => Poll::Pending,
                Err(std::fs::TryLockError::Error(err)) => Poll::Ready(Err(err)),
            }
        },
    );
    taken
        .with_context(|| {
            format!(
                "another process held the lock of {} for {LOCK_WAIT:?} (is one stopped?)",
                dir.display()
            )
        })?
        .with_context(|| format!("locking {}", dir.display()))
}

/// The state's inode when the template is whole (its state saved, its
/// memory file the VM's size); its state's time then says it was just
/// used (`prune_unused` goes by it).
fn complete(template: &Template, memory_mib: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let memory = std::fs::metadata(&template.memory).ok()?;
    let state = std::fs::File::options()
        .write(true)
        .open(&template.state)
        .ok()?;
    if memory.len() != u64::from(memory_mib) << 20 {
        return None;
    }
    let _ = state.set_modified(std::time::SystemTime::now());
    Some(state.metadata().ok()?.ino())
}

/// How long a template nobody restores from is kept: one whose inputs
/// changed (a new QEMU, stage0 or command line) is never used again.
const UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Removes the templates beside `kept` that no process holds and that were
/// saved from another kernel image than `image` (the kernel's entry holds
/// one image: its tree was rebuilt in place), were not used for
/// `UNUSED_FOR`, or never finished saving. Best effort.
fn prune_unused(templates: &Path, kept: &Path, image: &str) {
    let Ok(entries) = std::fs::read_dir(templates) else {
        return;
    };
    for dir in entries.flatten().map(|entry| entry.path()) {
        let Some(lock) = (dir.is_dir() && dir != kept)
            .then(|| crate::cache::open_lock_file(&dir.with_extension("lock")).ok())
            .flatten()
        else {
            continue;
        };
        let age = std::fs::metadata(dir.join("state"))
            .or_else(|_| std::fs::metadata(&dir))
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        let unfinished = !dir.join("state").exists();
        let old = age.is_some_and(|age| age > UNUSED_FOR || (unfinished && age > STATE_WAIT * 5));
        let rebuilt =
            std::fs::read_to_string(dir.join(IMAGE_FILE)).is_ok_and(|saved| saved != image);
        if (old || rebuilt) && lock.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Throws away the template a clone could not load, so that the next VM
/// saves a new one: once no other process holds it, and only if it is
/// still the one the clone found.
pub(crate) fn discard(template: &Template, lease: Lease) {
    use std::os::unix::fs::MetadataExt;
    let Lease { lock, inode } = lease;
    let Some(dir) = template.state.parent() else {
        return;
    };
    if lock.unlock().is_err() || lock_within(&lock, false, dir).is_err() {
        return;
    }
    let same = std::fs::metadata(&template.state).is_ok_and(|state| state.ino() == inode);
    if same {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What the template's VM is made of, hashed: its QEMU, the host's CPU, its
/// kernel image (path, size and time), `stage0`'s initramfs, and its
/// command line with the paths that differ between two saves of it left
/// out.
fn key(spec: &VmSpec, image: &ImageIdentity) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(qemu_version()?.as_bytes());
    hasher.update(host_cpu().as_bytes());
    hasher.update(image.keyed());
    for arg in crate::qemu::qemu_args(spec) {
        hasher.update(arg.as_encoded_bytes());
        hasher.update([0]);
    }
    Ok(format!("{:x}", hasher.finalize())[..16].to_owned())
}

/// The kernel image a template is saved from: its path, size and time.
struct ImageIdentity {
    path: String,
    /// Size and time alone: the kernel's entry holds one image (one that
    /// differs is the tree's kernel rebuilt in place), whichever path a
    /// process reaches the cache by.
    built: String,
}

impl ImageIdentity {
    /// As the template's key takes it.
    fn keyed(&self) -> String {
        format!("{} {}", self.path, self.built)
    }
}

fn image_identity(kernel_image: &Path) -> Result<ImageIdentity> {
    let image = std::fs::metadata(kernel_image)
        .with_context(|| format!("reading {}", kernel_image.display()))?;
    Ok(ImageIdentity {
        path: kernel_image.display().to_string(),
        built: format!("{} {:?}", image.len(), image.modified().ok()),
    })
}

/// The file in a template's directory that holds its image's
/// `ImageIdentity::built`.
const IMAGE_FILE: &str = "kernel-image";

/// The host CPU's model and flags: a KVM guest saved with `-cpu host` must
/// not be restored on another CPU (a CI runner's cache of kernels travels
/// between machines, and the templates with it).
fn host_cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("model name") || line.starts_with("flags"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n")
}

fn qemu_version() -> Result<String> {
    static VERSION: OnceLock<String> = OnceLock::new();
    if let Some(version) = VERSION.get() {
        return Ok(version.clone());
    }
    let binary = crate::qemu::find_qemu(std::env::var_os("PATH"))?;
    let version = duct::cmd!(binary, "--version")
        .read()
        .context("asking QEMU its version")?;
    Ok(VERSION.get_or_init(|| version).clone())
}

/// Boots the template, waits for `stage0`'s ready line, pauses it and saves
/// it, in an emptied directory (a failed save's leftovers must not be
/// mistaken for a template). A boot that misses `stalled` fails the save
/// (the VM then boots).
fn save(spec: &VmSpec, template: &Template, stalled: BootDeadline) -> Result<()> {
    let dir = template
        .state
        .parent()
        .context("a template has a directory")?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let listeners = Listeners::bind(&spec.sockets, &crate::qemu::channels(spec))?;
    let start_port = StartPort::bind(&spec.sockets)?;
    let (sender, events) = mpsc::channel();
    let started = Instant::now();
    let cmdline = dir.join("qemu.cmdline");
    std::fs::write(&cmdline, crate::qemu::shell_line(spec))
        .with_context(|| format!("writing {}", cmdline.display()))?;
    let qemu = QemuProcess::spawn(spec, dir.join("qemu.stderr"))?;
    let pid = qemu.pid().context("QEMU has no pid")?;
    crate::vm::events::watch_exit(pid, Process::Qemu, &sender)?;
    let mut qmp = QmpClient::connect(&spec.qmp_socket, &qemu, started + Duration::from_secs(10))?;
    listeners.accept(&sender)?;
    // Held until QEMU quits: the port stays connected in the saved state.
    let _port = start_port.accept()?;
    let boot = wait_for_ready(&events, started + stalled.after, stalled);
    boot.with_context(|| {
        format!(
            "the template's boot (its console: {}; QEMU's stderr: {})",
            console(spec),
            qemu.stderr_tail(5).trim()
        )
    })?;
    qmp.stop()?;
    qmp.save_state(&template.state, Instant::now() + STATE_WAIT)?;
    let _ = qmp.quit();
    let exited = wait_until(
        Instant::now() + STATE_WAIT,
        Duration::from_millis(10),
        || match qemu.try_wait() {
            Ok(None) => Poll::Pending,
            _ => Poll::Ready(()),
        },
    );
    exited.context("the template's QEMU did not exit after its save")?;
    tracing::info!(
        "saved a VM template in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

fn console(spec: &VmSpec) -> String {
    spec.console
        .log()
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

/// Until `stage0` says ready, or why it never will.
fn wait_for_ready(
    events: &Receiver<Event>,
    deadline: Instant,
    stalled: BootDeadline,
) -> Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Line(Channel::Console, line)) if line.contains(TEMPLATE_READY) => {
                return Ok(())
            }
            Ok(Event::Line(Channel::Console, line)) if line.contains(STAGE0_ERROR) => {
                bail!("{line}")
            }
            Ok(Event::GuestPanicked) => bail!("the template's kernel panicked"),
            Ok(Event::Exited(_)) => bail!("QEMU exited before stage0 was ready"),
            Ok(_) => {}
            // Disconnected cannot come first: the exit watcher sends Exited.
            Err(_) => bail!("stage0 did not say ready within {stalled} (a stalled boot)"),
        }
    }
}

/// The host's end of a template's or a clone's start port.
pub(crate) struct StartPort(UnixListener, std::path::PathBuf);

impl StartPort {
    /// Listens before QEMU starts, which connects to it as it starts.
    pub(crate) fn bind(sockets: &Path) -> Result<Self> {
        let path = crate::qemu::start_socket(sockets);
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(StartPort(listener, path))
    }

    /// QEMU's connection, waiting at most a few seconds for it.
    pub(crate) fn accept(self) -> Result<UnixStream> {
        let accepted = wait_until(
            Instant::now() + Duration::from_secs(5),
            Duration::from_millis(2),
            || match self.0.accept() {
                Ok((stream, _)) => Poll::Ready(Ok(stream)),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Poll::Pending,
                Err(err) => Poll::Ready(Err(err)),
            },
        );
        let path = self.1.display();
        let stream = accepted
            .with_context(|| format!("QEMU did not connect its start port ({path}) within 5 s"))?
            .with_context(|| format!("accepting QEMU's start port ({path})"))?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// Sends a clone its start line: now, fresh entropy, and `init` with `args`.
pub(crate) fn send_start(port: &mut UnixStream, init: &Path, args: Vec<String>) -> Result<()> {
    let mut entropy = vec![0; ENTROPY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| std::io::Read::read_exact(&mut random, &mut entropy))
        .context("reading the host's /dev/urandom")?;
    let realtime_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the host's clock is before 1970")?
        .as_nanos() as u64;
    let line = StartLine {
        realtime_ns,
        entropy,
        init: init
            .to_str()
            .context("the agent's path is not UTF-8")?
            .to_owned(),
        args,
    };
    port.write_all(line.encode().as_bytes())
        .context("writing the start line to the clone's start port")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_saved_from(templates: &Path, name: &str, image: Option<&str>) -> PathBuf {
        let dir = templates.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("state"), "").unwrap();
        if let Some(image) = image {
            std::fs::write(dir.join(IMAGE_FILE), image).unwrap();
        }
        dir
    }

    #[test]
    fn templates_of_a_kernel_image_rebuilt_in_place_are_removed() {
        let templates = tempfile::tempdir().unwrap();
        let kept = template_saved_from(templates.path(), "kept", Some("bzImage 2 now"));
        let rebuilt = template_saved_from(templates.path(), "rebuilt", Some("bzImage 1 then"));
        let other_vm = template_saved_from(templates.path(), "other-vm", Some("bzImage 2 now"));
        let unrecorded = template_saved_from(templates.path(), "unrecorded", None);
        prune_unused(templates.path(), &kept, "bzImage 2 now");
        assert!(!rebuilt.exists(), "a template of the old image was kept");
        for dir in [kept, other_vm, unrecorded] {
            assert!(dir.exists(), "{} was removed", dir.display());
        }
    }

    #[test]
    fn a_template_in_use_is_never_removed() {
        let templates = tempfile::tempdir().unwrap();
        let kept = template_saved_from(templates.path(), "kept", Some("new"));
        let in_use = template_saved_from(templates.path(), "in-use", Some("old"));
        let lock = crate::cache::open_lock_file(&in_use.with_extension("lock")).unwrap();
        lock.lock_shared().unwrap();
        prune_unused(templates.path(), &kept, "new");
        assert!(in_use.exists());
        drop(lock);
        prune_unused(templates.path(), &kept, "new");
        assert!(!in_use.exists());
    }
}
