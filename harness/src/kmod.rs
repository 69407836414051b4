//! The out-of-tree module, built against a cached kernel and checked for BTF.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::text::tail_of_file;

/// The module's sources, relative to the workspace's kmod/ directory.
const SOURCES: &[&str] = &["bpf_testmod.c", "bpf_testmod.h", "Kbuild"];
pub const MODULE_FILE: &str = "bpf_testmod.ko";

#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error(
        "{ko} has no .BTF section, so the kernel cannot find struct bpf_testmod_ops in it and \
         libbpf will fail with \"failed to find BTF info for struct_ops/bpf_testmod_ops\".\n\
         Build the kernel with CONFIG_DEBUG_INFO_BTF_MODULES=y, keep the module's -g (kmod/Kbuild), \
         and have pahole 1.16 or newer (Debian package dwarves)"
    )]
    NoBtf { ko: String },
    #[error("building the module failed; the last lines of {log}:\n{tail}")]
    Build { log: String, tail: String },
}

/// A bug compiled into a test-only build of the module (the `PLANT_*`
/// switches in kmod/bpf_testmod.c), to prove the debug kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// A read of freed memory on the trigger path.
    UseAfterFree,
    /// The ops read and called without rcu_read_lock().
    MissingRcuReadLock,
    /// Two locks taken in one order on attach and the other on trigger.
    LockOrder,
}

impl PlantedBug {
    fn define(self) -> &'static str {
        match self {
            PlantedBug::UseAfterFree => "PLANT_USE_AFTER_FREE",
            PlantedBug::MissingRcuReadLock => "PLANT_MISSING_RCU_READ_LOCK",
            PlantedBug::LockOrder => "PLANT_LOCK_ORDER",
        }
    }
}

/// Builds kmod/ against `kernel` unless the same sources were built against it before.
pub fn ensure_built(
    kmod_dir: &Path,
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
) -> Result<PathBuf> {
    ensure_built_with(kmod_dir, kernel, cache, progress, None)
}

/// A test-only build of kmod/ with `bug` planted in it.
pub fn ensure_planted(
    kmod_dir: &Path,
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
    bug: PlantedBug,
) -> Result<PathBuf> {
    ensure_built_with(kmod_dir, kernel, cache, progress, Some(bug))
}

fn ensure_built_with(
    kmod_dir: &Path,
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
    bug: Option<PlantedBug>,
) -> Result<PathBuf> {
    let key = module_key(kmod_dir, kernel, bug)?;
    let entry = cache.join("kmod").join(&key);
    let ko = entry.join(MODULE_FILE);
    if ko.is_file() {
        return Ok(ko);
    }
    let parent = cache.join("kmod");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a build directory in {}", parent.display()))?;
    for name in SOURCES {
        std::fs::copy(kmod_dir.join(name), work.path().join(name))
            .with_context(|| format!("copying kmod/{name}"))?;
    }
    let planted = bug.map_or_else(String::new, |bug| format!(" with {bug:?} planted"));
    let step = progress.step(format!(
        "building {MODULE_FILE}{planted} against kernel {}",
        kernel.key
    ));
    let log = work.path().join("build.log");
    let defines = bug.map_or_else(String::new, |bug| format!("-D{}", bug.define()));
    let output = duct::cmd!(
        "make",
        "-C",
        &kernel.source_dir,
        format!("O={}", kernel.build_dir.display()),
        format!("M={}", work.path().display()),
        format!("KCFLAGS={defines}"),
        "modules"
    )
    .stderr_to_stdout()
    .stdout_path(&log)
    .unchecked()
    .run()
    .context("running make for the module (is make installed?)")?;
    if !output.status.success() {
        let tail = tail_of_file(&log, 25);
        // Keep the whole build directory: the log, and the sources as make saw them.
        let kept = work.keep().join("build.log");
        bail!(ModuleError::Build {
            log: kept.display().to_string(),
            tail
        });
    }
    check_btf(&work.path().join(MODULE_FILE))?;
    step.done();
    // Renamed into place only once complete and checked.
    let built = work.keep();
    if let Err(err) = std::fs::rename(&built, &entry) {
        let _ = std::fs::remove_dir_all(&built);
        if !ko.is_file() {
            return Err(err).with_context(|| format!("moving the module to {}", entry.display()));
        }
    }
    Ok(ko)
}

/// Refuses a module without BTF: it would load, but nothing could attach to it.
pub fn check_btf(ko: &Path) -> Result<()> {
    if !crate::elf::has_section(ko, ".BTF")? {
        bail!(ModuleError::NoBtf {
            ko: ko.display().to_string()
        });
    }
    Ok(())
}

fn module_key(kmod_dir: &Path, kernel: &Kernel, bug: Option<PlantedBug>) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(kernel.key.as_bytes());
    // A tree rebuilt in place keeps its key; its stamp says vmlinux changed.
    hasher.update(kernel.stamp.as_bytes());
    if let Some(bug) = bug {
        hasher.update(bug.define().as_bytes());
    }
    for name in SOURCES {
        let path = kmod_dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        hasher.update(name.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(format!("{:x}", hasher.finalize())[..16].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_without_btf_is_refused_with_the_reason() {
        // Any ELF without .BTF stands in for a module built without it.
        let err = check_btf(Path::new("/bin/true")).unwrap_err().to_string();
        assert!(err.contains("has no .BTF section"), "{err}");
        assert!(err.contains("CONFIG_DEBUG_INFO_BTF_MODULES"), "{err}");
    }
}
