//! A scenario's VM restored from a saved template instead of booted. For a
//! kernel and a VM shape the harness boots one template: the kernel, then
//! `stage0` from an initramfs, which sets up what the agent would after a
//! boot (`harness_wire::guest_setup`), says ready and waits on the start
//! port. QEMU saves it (its memory stays in a file, `x-ignore-shared`; the
//! state file holds the devices). Each scenario's VM maps that memory file
//! copy-on-write, loads the state, and gets a start line: the host's time,
//! fresh entropy, and the agent's command. `stage0` mounts the host's root
//! over 9p, which a save could not have carried mounted (QEMU 7.2 blocks
//! migration while a 9p export is mounted, and a virtiofs device cannot
//! migrate at all), moves its own filesystems into it, and execs the
//! agent, which runs as after a boot with that work done.

// Compiled here for its tests (its `start` a second time, as the guest's
// copy has it); the guest's copy is built by `initramfs`.
#[cfg(test)]
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "../../../stage0/main.rs"]
mod stage0;
pub(crate) use crate::restore_contract as start;
mod template;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

pub(crate) use self::template::{discard, send_start, template_for, Lease, StartPort, Template};

const STAGE0_MAIN: &str = include_str!("../../../stage0/main.rs");
const STAGE0_START: &str = include_str!("../../../stage0/start.rs");
/// Its third file: what it sets up for the agent, from the agent's side.
const STAGE0_GUEST_SETUP: &str = harness_wire::guest_setup::SOURCE;

/// The initramfs of every template: `stage0` as `/init`, built once per
/// source and compiler into the cache.
pub(crate) fn initramfs(cache: &Path) -> Result<PathBuf> {
    // Built, or failed, once a process: a failure is not paid for per VM.
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| build_initramfs(cache).map_err(|err| format!("{err:#}")));
    built.clone().map_err(|err| anyhow::anyhow!("{err}"))
}

fn build_initramfs(cache: &Path) -> Result<PathBuf> {
    let version = rustc_version()?;
    let mut hasher = Sha256::new();
    let sources = [STAGE0_MAIN, STAGE0_START, STAGE0_GUEST_SETUP];
    for part in sources
        .into_iter()
        .chain([version.as_str(), &RUSTC_FLAGS.join(" ")])
    {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let key = format!("{:x}", hasher.finalize());
    let dir = cache.join("stage0").join(&key[..16]);
    let initramfs = dir.join("initramfs.cpio");
    if initramfs.is_file() {
        return Ok(initramfs);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let build = tempfile::tempdir_in(&dir)
        .with_context(|| format!("a directory to build stage0 in, in {}", dir.display()))?;
    let binary = compile_stage0(build.path())?;
    let bytes = std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
    let staged = build.path().join("initramfs.cpio");
    std::fs::write(&staged, cpio(&bytes))
        .with_context(|| format!("writing {}", staged.display()))?;
    // A rename, so a concurrent harness sees the whole file or none.
    std::fs::rename(&staged, &initramfs)
        .with_context(|| format!("moving the initramfs to {}", initramfs.display()))?;
    Ok(initramfs)
}

fn rustc_version() -> Result<String> {
    duct::cmd!("rustc", "-vV")
        .read()
        .context("running `rustc -vV` (stage0, the template's init, is built with rustc)")
}

/// Static, small, and no unwinding to carry.
const RUSTC_FLAGS: [&str; 5] = [
    "--edition=2021",
    "-Copt-level=s",
    "-Cpanic=abort",
    "-Cstrip=symbols",
    "-Ctarget-feature=+crt-static",
];

/// `stage0`, static, built with rustc alone from its three files.
fn compile_stage0(dir: &Path) -> Result<PathBuf> {
    let files = [
        ("main.rs", STAGE0_MAIN),
        ("start.rs", STAGE0_START),
        ("guest_setup.rs", STAGE0_GUEST_SETUP),
    ];
    for (file, source) in files {
        let path = dir.join(file);
        std::fs::write(&path, source).with_context(|| format!("writing {}", path.display()))?;
    }
    let binary = dir.join("stage0");
    let mut args: Vec<std::ffi::OsString> = RUSTC_FLAGS.iter().map(Into::into).collect();
    args.extend([
        "-o".into(),
        binary.clone().into(),
        dir.join("main.rs").into(),
    ]);
    let out = duct::cmd("rustc", args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .context("running rustc to build stage0")?;
    if !out.status.success() {
        anyhow::bail!(
            "rustc could not build stage0, the VM template's init (static linking needs \
             glibc's static libraries: `apt-get install libc6-dev`):\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(binary)
}

/// A newc cpio archive: the mount points, `/dev/console` (the kernel opens
/// it for init's output) and `init`.
fn cpio(init: &[u8]) -> Vec<u8> {
    let mut archive = Vec::new();
    let entries: [(&str, u32, &[u8], u32); 6] = [
        ("dev", 0o040_755, b"", 0),
        ("dev/console", 0o020_600, b"", 1),
        ("proc", 0o040_755, b"", 0),
        ("sys", 0o040_755, b"", 0),
        ("root", 0o040_755, b"", 0),
        ("init", 0o100_755, init, 0),
    ];
    for (inode, (name, mode, data, minor)) in entries.into_iter().enumerate() {
        // /dev/console is character device 5:1.
        let rdev = (if minor > 0 { 5 } else { 0 }, minor);
        cpio_entry(&mut archive, inode as u32 + 1, name, mode, data, rdev);
    }
    cpio_entry(&mut archive, 0, "TRAILER!!!", 0, b"", (0, 0));
    archive
}

fn cpio_entry(out: &mut Vec<u8>, inode: u32, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
    let name_size = name.len() + 1;
    let fields = [
        inode,
        mode,
        0,
        0,
        1,
        0,
        data.len() as u32,
        0,
        0,
        rdev.0,
        rdev.1,
        name_size as u32,
        0,
    ];
    let _ = write!(out, "070701");
    for field in fields {
        let _ = write!(out, "{field:08X}");
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpio_archive_is_newc_with_init_and_the_console() {
        let archive = cpio(b"ELF!");
        assert!(archive.starts_with(b"070701"));
        assert_eq!(archive.len() % 4, 0);
        let text = String::from_utf8_lossy(&archive);
        for name in ["dev/console\0", "init\0", "root\0", "TRAILER!!!\0"] {
            assert!(text.contains(name), "{name:?} missing");
        }
        // init's header: its mode, then its size (4 bytes), in hex.
        let at = text.find("init\0").unwrap();
        let header = &text[at - 110..at];
        assert_eq!(&header[14..22], "000081ED", "{header}");
        assert_eq!(&header[54..62], "00000004", "{header}");
        assert!(text[at..].contains("ELF!"));
    }

    #[test]
    fn a_start_line_survives_its_encoding() {
        let line = start::StartLine {
            realtime_ns: 1_796_623_080_027_652_610,
            entropy: vec![0, 1, 254, 255],
            init: "/work/target/release/my-subject".into(),
            args: vec!["run".into(), "--scenario".into(), "a b".into()],
        };
        let encoded = line.encode();
        assert!(encoded.ends_with('\n') && !encoded.trim_end().contains('\n'));
        assert_eq!(start::StartLine::decode(&encoded).unwrap(), line);
        let error = start::StartLine::decode("12 zz").unwrap_err();
        assert!(error.contains("not a hex word"), "{error}");
        let error = start::StartLine::decode("12").unwrap_err();
        assert!(error.contains("no entropy"), "{error}");
    }

    #[test]
    fn stage0_finds_its_port_by_name_and_waits_for_a_whole_line() {
        let class = tempfile::tempdir().unwrap();
        for (port, name) in [
            ("vport0p1", "agent-result"),
            ("vport0p2", start::START_PORT_NAME),
        ] {
            std::fs::create_dir(class.path().join(port)).unwrap();
            std::fs::write(class.path().join(port).join("name"), format!("{name}\n")).unwrap();
        }
        let found = stage0::find_port(class.path(), start::START_PORT_NAME).unwrap();
        assert_eq!(found, Path::new("/dev/vport0p2"));
        let missing = stage0::find_port(class.path(), "nothing").unwrap_err();
        assert!(
            missing.contains("no virtio-serial port named nothing"),
            "{missing}"
        );
        // Reads of nothing (no host yet), then the line in two pieces.
        let mut pieces = vec![
            b"".to_vec(),
            b"12 ab".to_vec(),
            b"".to_vec(),
            b" cd\n".to_vec(),
        ];
        pieces.reverse();
        struct Port(Vec<Vec<u8>>);
        impl std::io::Read for Port {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let piece = self.0.pop().unwrap_or_default();
                buf[..piece.len()].copy_from_slice(&piece);
                Ok(piece.len())
            }
        }
        assert_eq!(stage0::read_line(&mut Port(pieces)).unwrap(), "12 ab cd\n");
    }

    #[test]
    fn stage0_is_built_static_into_an_initramfs() {
        let dir = tempfile::tempdir().unwrap();
        let binary = compile_stage0(dir.path()).unwrap();
        let bytes = std::fs::read(&binary).unwrap();
        let elf = object::File::parse(&*bytes).unwrap();
        use object::Object;
        assert!(
            elf.imports().unwrap().is_empty(),
            "stage0 must not need a dynamic loader"
        );
        let cache = tempfile::tempdir().unwrap();
        let first = initramfs(cache.path()).unwrap();
        assert_eq!(initramfs(cache.path()).unwrap(), first, "built once");
    }
}
