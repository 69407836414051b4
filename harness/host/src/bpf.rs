//! BPF objects a subject asks the harness to compile against each kernel it
//! runs on, as modules are built against it: with that kernel's `vmlinux.h`
//! (from its BTF), the libbpf headers of its own source (`tools/lib/bpf`,
//! whose `bpf_helper_defs.h` is generated from that kernel's uapi), and its
//! type's headers (sched_ext's `tools/sched_ext/include`). Nothing is
//! copied into a subject's tree: the kernel's own schedulers are compiled
//! from the source the harness unpacked, unchanged, and a subject's
//! programs never meet a `vmlinux.h` of another kernel. A loader opens
//! `<name>.bpf.o` from the directory the agent names in
//! [`harness_wire::catalogue::BPF_DIR_ENV`].
//!
//! Each object is compiled with `-DHARNESS_LINUX_VERSION_CODE=N`, the
//! kernel's version as `LINUX_VERSION_CODE` gives it (compare it with
//! libbpf's `KERNEL_VERSION(6, 13, 0)`), so that a program can choose what
//! that kernel's headers declare: sched_ext renamed its kfuncs in 6.13
//! (`scx_bpf_dispatch` became `scx_bpf_dsq_insert`) and later dropped the
//! old names, and no header says which a tree has.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use harness_wire::catalogue::{BpfObjectInfo, BpfSource, SubjectInfo};
use sha2::{Digest, Sha256};

use crate::clang::compiler;
use crate::kernel::Kernel;
use crate::progress::Progress;

/// What the compiler is told, as tools/sched_ext's Makefile tells it: `-g`
/// for CO-RE, `-mcpu=v3` for the 32-bit atomics its exit info uses, and
/// (7.x's Makefile) Microsoft's anonymous struct members, which newer
/// kernels' `vmlinux.h` has and which clang otherwise drops with "declaration
/// does not declare anything".
const CFLAGS: &[&str] = &[
    "-target",
    "bpf",
    "-g",
    "-O2",
    "-mcpu=v3",
    "-mlittle-endian",
    "-D__TARGET_ARCH_x86",
    "-Wall",
    "-Wno-compare-distinct-pointer-types",
    "-fms-extensions",
    "-Wno-microsoft-anon-tag",
];

/// The macro a program reads the kernel's version from (see the module's docs).
pub(crate) const VERSION_MACRO: &str = "HARNESS_LINUX_VERSION_CODE";

/// `-DHARNESS_LINUX_VERSION_CODE=N` for the kernel version `version`
/// (`6.12.118`, `7.0.0-rc2`): `(major << 16) + (minor << 8) + patch`, the
/// patch capped at 255 as the kernel's `KERNEL_VERSION` caps it.
fn version_define(version: &str) -> Result<String> {
    let mut parts = version.split(['.', '-']).map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        bail!(
            "the kernel version {version:?} does not start with MAJOR.MINOR, so its BPF \
             objects cannot be told it ({VERSION_MACRO}): check the top Makefile of its source"
        );
    };
    let patch = parts.next().flatten().unwrap_or(0).min(255);
    Ok(format!(
        "-D{VERSION_MACRO}={}",
        (major << 16) + (minor << 8) + patch
    ))
}

/// The directory of `subject`'s objects built against `kernel`, compiled
/// unless they were before; None when it declares none.
pub(crate) fn ensure_built(
    subject: &SubjectInfo,
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
) -> Result<Option<PathBuf>> {
    if subject.bpf_objects.is_empty() {
        return Ok(None);
    }
    let headers = kernel_headers(kernel, cache, progress)?;
    let includes = include_dirs(subject, kernel, &headers);
    let key = objects_key(subject, kernel, &includes)?;
    let entry = cache.join("bpf").join(&key);
    let built = |object: &BpfObjectInfo| entry.join(format!("{}.bpf.o", object.name)).is_file();
    if subject.bpf_objects.iter().all(built) {
        return Ok(Some(entry));
    }
    let parent = cache.join("bpf");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a build directory in {}", parent.display()))?;
    for object in &subject.bpf_objects {
        let step = progress.step(format!(
            "compiling {}.bpf.o against kernel {}",
            object.name, kernel.key
        ));
        compile(object, kernel, &includes, work.path())?;
        step.done();
    }
    let done = work.keep();
    if let Err(err) = std::fs::rename(&done, &entry) {
        let _ = std::fs::remove_dir_all(&done);
        if !subject.bpf_objects.iter().all(built) {
            return Err(err).with_context(|| format!("moving the objects to {}", entry.display()));
        }
    }
    Ok(Some(entry))
}

/// Where a kernel's `vmlinux.h` and libbpf headers are (`vmlinux.h`,
/// `bpf/*.h`), made the first time they are asked for.
pub(crate) fn kernel_headers(
    kernel: &Kernel,
    cache: &Path,
    progress: &Progress,
) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    hasher.update(kernel.key.as_bytes());
    hasher.update(kernel.stamp.as_bytes());
    let key = format!("{:x}", hasher.finalize())[..16].to_owned();
    let dir = cache.join("bpf-headers").join(key);
    if dir.join("vmlinux.h").is_file() && dir.join("bpf/bpf_helpers.h").is_file() {
        return Ok(dir);
    }
    let parent = cache.join("bpf-headers");
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".making-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let step = progress.step(format!(
        "writing kernel {}'s vmlinux.h and libbpf headers",
        kernel.key
    ));
    write_vmlinux_h(kernel, &work.path().join("vmlinux.h"))?;
    install_libbpf_headers(kernel, work.path())?;
    step.done();
    let made = work.keep();
    if std::fs::rename(&made, &dir).is_err() {
        // Another process made them first.
        let _ = std::fs::remove_dir_all(&made);
    }
    Ok(dir)
}

/// `bpftool btf dump file vmlinux format c`, as tools/sched_ext does.
fn write_vmlinux_h(kernel: &Kernel, to: &Path) -> Result<()> {
    let output = duct::cmd!(
        "bpftool",
        "btf",
        "dump",
        "file",
        &kernel.vmlinux,
        "format",
        "c"
    )
    .stdout_path(to)
    .stderr_capture()
    .unchecked()
    .run()
    .context("running bpftool (Debian package bpftool; `harness setup` installs it)")?;
    if !output.status.success() {
        bail!(
            "bpftool could not dump the BTF of {} into vmlinux.h:\n{}",
            kernel.vmlinux.display(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    Ok(())
}

/// The kernel source's libbpf headers (`make -C tools/lib/bpf
/// install_headers`, which also generates `bpf_helper_defs.h` from that
/// kernel's helpers), into `dir/bpf`; nothing is written into the source.
fn install_libbpf_headers(kernel: &Kernel, dir: &Path) -> Result<()> {
    let out = dir.join("libbpf-out");
    let install = dir.join("libbpf-install");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let output = duct::cmd!(
        "make",
        "-s",
        "-C",
        kernel.source_dir.join("tools/lib/bpf"),
        format!("OUTPUT={}/", out.display()),
        format!("DESTDIR={}", install.display()),
        "prefix=",
        "install_headers"
    )
    .stderr_to_stdout()
    .stdout_capture()
    .unchecked()
    .run()
    .context("running make for libbpf's headers (is make installed?)")?;
    if !output.status.success() {
        bail!(
            "installing libbpf's headers from {} failed:\n{}",
            kernel.source_dir.join("tools/lib/bpf").display(),
            String::from_utf8_lossy(&output.stdout).trim_end()
        );
    }
    std::fs::rename(install.join("include/bpf"), dir.join("bpf"))
        .with_context(|| format!("moving libbpf's headers into {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&install);
    Ok(())
}

/// Every `-I` a subject's objects compile with, in order: each object's own
/// directory comes first (see [`compile`]), then the subject's, the kernel
/// headers, its type's, and the kernel's tools uapi headers.
fn include_dirs(subject: &SubjectInfo, kernel: &Kernel, headers: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for object in &subject.bpf_objects {
        dirs.extend(object.includes.iter().cloned());
    }
    dirs.push(headers.to_path_buf());
    let type_dirs = subject
        .kernel_type
        .map_or(&[][..], |kind| kind.bpf_includes());
    dirs.extend(type_dirs.iter().map(|dir| kernel.source_dir.join(dir)));
    dirs.push(kernel.source_dir.join("tools/include/uapi"));
    dirs.dedup();
    dirs
}

fn source_path(object: &BpfObjectInfo, kernel: &Kernel) -> PathBuf {
    match &object.source {
        BpfSource::Kernel(relative) => kernel.source_dir.join(relative),
        BpfSource::Subject(path) => path.clone(),
    }
}

/// One object, with its source's directory first on the include path (as
/// `#include "x.h"` expects), then `includes`, then the compiler's own
/// system directories last, as tools/sched_ext's Makefile puts them.
fn compile(
    object: &BpfObjectInfo,
    kernel: &Kernel,
    includes: &[PathBuf],
    out: &Path,
) -> Result<()> {
    let source = source_path(object, kernel);
    if !source.is_file() {
        bail!(
            "the BPF source {} does not exist{}",
            source.display(),
            match object.source {
                BpfSource::Kernel(_) => format!(
                    " in kernel {}'s source ({}): this kernel's tree does not have it",
                    kernel.version,
                    kernel.source_dir.display()
                ),
                BpfSource::Subject(_) => String::new(),
            }
        );
    }
    let mut args: Vec<std::ffi::OsString> = CFLAGS.iter().map(Into::into).collect();
    args.push(version_define(&kernel.version)?.into());
    let own = source.parent().map(Path::to_path_buf).unwrap_or_default();
    for dir in std::iter::once(&own).chain(includes) {
        args.push("-I".into());
        args.push(dir.into());
    }
    for dir in system_includes() {
        args.push("-idirafter".into());
        args.push(dir.into());
    }
    let object_path = out.join(format!("{}.bpf.o", object.name));
    args.extend([
        "-c".into(),
        source.clone().into(),
        "-o".into(),
        object_path.into(),
    ]);
    let output = duct::cmd(compiler(), &args)
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()
        .with_context(|| format!("running {} (`harness setup` installs clang-22)", compiler()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        let shown: Vec<&str> = said
            .lines()
            .filter(|line| line.contains("error"))
            .take(12)
            .collect();
        bail!(
            "compiling {} against kernel {} failed:\n{}\nThe whole command: {} {}",
            source.display(),
            kernel.version,
            if shown.is_empty() {
                said.trim_end().to_owned()
            } else {
                shown.join("\n")
            },
            compiler(),
            args.iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

/// The directories clang searches for `<...>` by default (its own and the
/// multiarch ones), which a `-target bpf` compile does not look in: asked
/// of clang once, as tools/sched_ext's Makefile asks, not written down.
fn system_includes() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let output = duct::cmd!(compiler(), "-v", "-E", "-", "-o", "/dev/null")
            .stdin_bytes(Vec::new())
            .stderr_to_stdout()
            .stdout_capture()
            .unchecked()
            .run();
        let text = output
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        search_list(&text)
    })
}

/// The `#include <...> search starts here:` list of `clang -v -E`.
fn search_list(said: &str) -> Vec<PathBuf> {
    said.lines()
        .skip_while(|line| !line.starts_with("#include <...> search starts here:"))
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .map(|line| PathBuf::from(line.trim()))
        .collect()
}

/// Everything the objects depend on: the kernel, the compiler, the flags,
/// and each source and include directory's files (a kernel source's are
/// the kernel's).
fn objects_key(subject: &SubjectInfo, kernel: &Kernel, includes: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut feed = |label: &str, value: &[u8]| {
        hasher.update(label.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value);
    };
    feed("kernel", kernel.key.as_bytes());
    feed("stamp", kernel.stamp.as_bytes());
    feed(
        "clang",
        crate::process::first_line_of(&compiler(), "--version").as_bytes(),
    );
    feed("flags", CFLAGS.join(" ").as_bytes());
    feed("version", version_define(&kernel.version)?.as_bytes());
    for object in &subject.bpf_objects {
        feed("object", object.name.as_bytes());
        let source = source_path(object, kernel);
        feed("source", source.to_string_lossy().as_bytes());
        if let BpfSource::Subject(path) = &object.source {
            let dir = path.parent().unwrap_or(path);
            feed_dir(&mut feed, dir)?;
        }
    }
    for dir in includes
        .iter()
        .filter(|dir| !dir.starts_with(&kernel.source_dir))
    {
        feed_dir(&mut feed, dir)?;
    }
    Ok(format!("{:x}", hasher.finalize())[..16].to_owned())
}

/// Every file directly in `dir`, by name and content, in name order.
fn feed_dir(feed: &mut impl FnMut(&str, &[u8]), dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    for file in files {
        let content =
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        feed("file", file.to_string_lossy().as_bytes());
        feed("content", &content);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_version_is_passed_as_linux_version_code_gives_it() {
        let define = |version| version_define(version).unwrap();
        assert_eq!(define("6.12.118"), "-DHARNESS_LINUX_VERSION_CODE=396406");
        assert_eq!(define("6.12.300"), "-DHARNESS_LINUX_VERSION_CODE=396543");
        assert_eq!(define("6.13"), "-DHARNESS_LINUX_VERSION_CODE=396544");
        assert_eq!(define("7.0.0-rc2"), "-DHARNESS_LINUX_VERSION_CODE=458752");
        assert_eq!(define("7.1-rc1"), "-DHARNESS_LINUX_VERSION_CODE=459008");
        let err = version_define("next-20260101").unwrap_err();
        assert!(err.to_string().contains("MAJOR.MINOR"), "{err}");
    }

    #[test]
    fn clangs_search_list_is_read_off_its_verbose_output() {
        let said = "clang version 14.0.6\n\
            #include \"...\" search starts here:\n\
            #include <...> search starts here:\n \
            /usr/lib/llvm-14/lib/clang/14.0.6/include\n \
            /usr/local/include\n \
            /usr/include/x86_64-linux-gnu\n \
            /usr/include\n\
            End of search list.\n";
        assert_eq!(
            search_list(said),
            [
                "/usr/lib/llvm-14/lib/clang/14.0.6/include",
                "/usr/local/include",
                "/usr/include/x86_64-linux-gnu",
                "/usr/include"
            ]
            .map(PathBuf::from)
        );
    }
}
