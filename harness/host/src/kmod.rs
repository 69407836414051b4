//! A subject's out-of-tree module, built against a cached kernel and checked
//! for BTF. Any module directory (its Kbuild, sources and subdirectories)
//! builds the same way; test-only builds add preprocessor defines.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use harness_wire::catalogue::ModuleInfo;
use sha2::{Digest, Sha256};

use crate::kernel::Kernel;
use crate::progress::Progress;
use crate::text::tail_of_file;

#[derive(Debug, thiserror::Error)]
enum ModuleError {
    #[error(
        "{ko} has no .BTF section, so the kernel cannot find the module's struct_ops type in it \
         and libbpf will fail with \"failed to find BTF info for struct_ops/...\".\n\
         Build the kernel with CONFIG_DEBUG_INFO_BTF_MODULES=y, keep `ccflags-y := -g` in the \
         module's Kbuild, and have pahole 1.16 or newer (Debian package dwarves)"
    )]
    NoBtf { ko: String },
    #[error("building {module} failed; the last lines of {log}:\n{tail}")]
    Build {
        module: String,
        log: String,
        tail: String,
    },
}

/// Builds `module` against `kernel` unless the same sources (and `defines`,
/// for test-only builds such as `PLANT_USE_AFTER_FREE`) were built against
/// it before.
pub fn ensure_built(
    module: &ModuleInfo,
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
    defines: &[&str],
) -> Result<PathBuf> {
    let sources = source_files(&module.dir)?;
    let key = module_key(&sources, kernel, defines)?;
    let parent = cache.join("kmod");
    let entry = parent.join(&key);
    let ko = entry.join(module.file_name());
    if ko.is_file() {
        return Ok(ko);
    }
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a build directory in {}", parent.display()))?;
    for (source, relative) in &sources {
        let copy = work.path().join(relative);
        if let Some(dir) = copy.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::copy(source, &copy).with_context(|| format!("copying {}", source.display()))?;
    }
    let planted = match defines {
        [] => String::new(),
        defines => format!(" with {}", defines.join(" ")),
    };
    let step = progress.step(format!(
        "building {}{planted} against kernel {}",
        module.file_name(),
        kernel.key
    ));
    if !make_module(kernel, work.path(), defines)? {
        let log = work.path().join("build.log");
        let tail = tail_of_file(&log, 25);
        // Keep the whole build directory: the log, and the sources as make saw them.
        let kept = work.keep().join("build.log");
        bail!(ModuleError::Build {
            module: module.file_name(),
            log: kept.display().to_string(),
            tail
        });
    }
    check_btf(&work.path().join(module.file_name()))?;
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

/// make M=<dir> modules against the kernel's build directory, logging to
/// `dir/build.log`; whether it succeeded.
fn make_module(kernel: &Kernel, dir: &Path, defines: &[&str]) -> Result<bool> {
    let kcflags: Vec<String> = defines.iter().map(|define| format!("-D{define}")).collect();
    let output = duct::cmd!(
        "make",
        "-C",
        &kernel.source_dir,
        format!("O={}", kernel.build_dir.display()),
        format!("M={}", dir.display()),
        format!("KCFLAGS={}", kcflags.join(" ")),
        "modules"
    )
    .stderr_to_stdout()
    .stdout_path(dir.join("build.log"))
    .unchecked()
    .run()
    .context("running make for the module (is make installed?)")?;
    Ok(output.status.success())
}

/// Every source file of the module's directory and its subdirectories, as
/// (path, path relative to the directory), sorted (the key depends on the
/// order). What a build by hand leaves there (objects, `.ko`, hidden files)
/// is not a source.
fn source_files(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mut files = Vec::new();
    collect_sources(dir, Path::new(""), &mut files)
        .with_context(|| format!("reading the module sources in {}", dir.display()))?;
    files.sort_by(|a, b| a.1.cmp(&b.1));
    if !files
        .iter()
        .any(|(_, relative)| relative == Path::new("Kbuild"))
    {
        bail!("{} has no Kbuild: not a module directory", dir.display());
    }
    Ok(files)
}

fn collect_sources(dir: &Path, relative: &Path, files: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir.join(relative))? {
        let entry = entry?;
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        let built = [".o", ".ko", ".mod", ".mod.c", ".order", ".symvers", ".cmd"]
            .iter()
            .any(|suffix| name_text.ends_with(suffix));
        if name_text.starts_with('.') || built {
            continue;
        }
        let path = relative.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_sources(dir, &path, files)?;
        } else if kind.is_file() {
            files.push((dir.join(&path), path));
        }
    }
    Ok(())
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

fn module_key(sources: &[(PathBuf, PathBuf)], kernel: &Kernel, defines: &[&str]) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(kernel.key.as_bytes());
    // A tree rebuilt in place keeps its key; its stamp says vmlinux changed.
    hasher.update(kernel.stamp.as_bytes());
    for define in defines {
        hasher.update(define.as_bytes());
    }
    for (path, relative) in sources {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        hasher.update(relative.as_os_str().as_encoded_bytes());
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

    #[test]
    fn sources_in_subdirectories_count_and_build_outputs_do_not() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["Kbuild", "m.c", "include/m.h", "m.o", "m.ko", ".m.o.cmd"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let relative: Vec<PathBuf> = source_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            relative,
            [
                Path::new("Kbuild"),
                Path::new("include/m.h"),
                Path::new("m.c")
            ]
        );
    }

    #[test]
    fn a_directory_without_kbuild_is_not_a_module() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.c"), "").unwrap();
        let err = source_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no Kbuild"), "{err}");
    }
}
