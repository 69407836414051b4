//! The kernel: built once from config fragments and cached by a hash of
//! everything that defines it. A cache hit runs no make at all.

test_support_mod!(config);
mod debian;
mod make;
pub mod source;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::progress::{format_duration, Progress};
use config::{dropped_options, requested_options, select_fragments, Fragment};
pub use config::{Flavour, Series};
#[cfg(feature = "test-support")]
pub use {make::Make, source::KernelSource};
#[cfg(not(feature = "test-support"))]
use {make::Make, source::KernelSource};

/// Bump when the way a kernel is built changes, so old entries are not reused.
const RECIPE: &str = "tinyconfig + fragments, make all, v1";

/// A built kernel in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kernel {
    /// The recipe's hash, which names its cache entry (`kernels/<key>`).
    pub key: String,
    /// The version its source's top Makefile gives, `6.12.117`.
    pub version: String,
    /// The kernel source tree (needed with `build_dir` for out-of-tree modules).
    pub source_dir: PathBuf,
    /// make's O= directory: .config, vmlinux, Module.symvers.
    pub(crate) build_dir: PathBuf,
    /// The compressed image, booted on the debug flavour.
    pub bzimage: PathBuf,
    /// The unstripped kernel: BTF, symbols for gdb, the source of the PVH image.
    pub vmlinux: PathBuf,
    /// How long building it took.
    pub(crate) build_seconds: f64,
    /// Entries written before flavours existed are the default one.
    #[serde(default)]
    pub flavour: Flavour,
    /// What the module cache keys on: the key for a packaged kernel (which
    /// never changes), vmlinux's size and mtime for a tree built in place.
    #[serde(default)]
    pub(crate) stamp: String,
    /// A tree's fingerprint when it was last built (see `tree_fingerprint`).
    #[serde(default)]
    pub(crate) tree_fingerprint: Option<String>,
    /// Whether this process just built the entry (the cache's cap is then
    /// enforced); never stored.
    #[serde(skip)]
    pub(crate) fresh: bool,
}

#[derive(Debug, thiserror::Error)]
enum KernelBuildError {
    #[error(
        "the kernel config lost options the fragments ask for (olddefconfig drops an option whose \
         dependencies are missing):\n  {}\nAdd the missing dependencies to the fragment that asks \
         for it, or remove the option",
        .dropped.join("\n  ")
    )]
    DroppedOptions { dropped: Vec<String> },
    #[error(
        "{vmlinux} has no .BTF section: struct_ops needs the kernel's BTF.\n\
         Keep CONFIG_DEBUG_INFO_BTF=y (harness/host/images/bpf.config) and install pahole 1.16 or newer (Debian package dwarves)"
    )]
    NoBtf { vmlinux: String },
    #[error("make {target} failed (exit {code}); the last lines of {log}:\n{tail}")]
    Make {
        target: String,
        code: i32,
        log: String,
        tail: String,
    },
}

/// The race flavour's `KCSAN_SANITIZE`, which make reads from its
/// environment and expands in each directory's own make, where `$(obj)` is
/// that directory: `y` in `kernel/bpf` and below, `n` elsewhere. A directory
/// whose Makefile sets its own value (`kernel/kcsan`, `kernel/sched`,
/// `kernel/trace`: `n`) keeps it, since a Makefile's assignment overrides
/// the environment, and so does a per-file `KCSAN_SANITIZE_file.o`.
pub(crate) const RACE_INSTRUMENTED: &str = "$(if $(filter kernel/bpf kernel/bpf/%,$(obj)),y,n)";

/// What to build: a source, fragments, and the tools that turn them into a kernel.
pub struct KernelRecipe {
    /// The tarball or tree to build.
    pub(crate) source: KernelSource,
    /// Default or debug.
    pub(crate) flavour: Flavour,
    /// The fragments that apply to this source's series and this flavour.
    pub(crate) fragments: Vec<Fragment>,
}

impl KernelRecipe {
    /// The core's fragments and `extra` (a subject's own), for `source` and `flavour`.
    pub fn new(source: KernelSource, flavour: Flavour, extra: &[Fragment]) -> Result<Self> {
        let mut all = config::core_fragments();
        all.extend(extra.iter().cloned());
        // A syntax error should stop us before any long work, whichever
        // kernel the faulty fragment is for.
        requested_options(&all)?;
        let fragments = select_fragments(&all, flavour, source.series()?)?;
        Ok(KernelRecipe {
            source,
            flavour,
            fragments,
        })
    }

    /// The same without the core's fragments that enable the struct_ops
    /// types the kernel defines ([`config::TYPE_FRAGMENTS`]).
    pub(crate) fn without_type_fragments(self) -> Self {
        let fragments = (self.fragments.into_iter())
            .filter(|fragment| {
                let name = fragment.path.file_name().and_then(|name| name.to_str());
                let core = fragment.path.starts_with("harness/host/images");
                !(core && name.is_some_and(|name| config::TYPE_FRAGMENTS.contains(&name)))
            })
            .collect();
        KernelRecipe { fragments, ..self }
    }

    /// Variables make gets from its environment when it builds this kernel.
    ///
    /// The race flavour instruments, of the kernel's own code, only the BPF
    /// core (`kernel/bpf`), as [`RACE_INSTRUMENTED`] says; a subject's
    /// modules, built apart, are instrumented whole. KCSAN watches one
    /// access in every `skip_watch` it sees: with the whole kernel
    /// instrumented, a module's access is one among the thousands a
    /// syscall, printk and the VFS make around it, and a race whose one side
    /// runs once per attach was almost never watched. A race outside
    /// the module and the BPF core never counted against a scenario anyway.
    pub(crate) fn make_environment(&self) -> &'static [(&'static str, &'static str)] {
        match self.flavour {
            Flavour::Race => &[("KCSAN_SANITIZE", RACE_INSTRUMENTED)],
            Flavour::Default | Flavour::Debug => &[],
        }
    }

    /// The hash of everything that defines the kernel (`cache` remembers
    /// what identifies a tarball's content).
    pub fn key(&self, cache: &Path) -> Result<String> {
        let mut hasher = Sha256::new();
        let mut feed = |label: &str, value: &[u8]| {
            hasher.update(label.as_bytes());
            hasher.update((value.len() as u64).to_le_bytes());
            hasher.update(value);
        };
        feed("recipe", RECIPE.as_bytes());
        feed("source", self.source.identity(cache)?.as_bytes());
        // The options the fragments ask for, not their text: a comment or a
        // move between fragments does not change the kernel.
        for requested in requested_options(&self.fragments)? {
            let value = requested.value.as_deref().unwrap_or("is not set");
            feed("option", format!("{}={value}", requested.option).as_bytes());
        }
        for tool in toolchain_versions() {
            feed("tool", tool.as_bytes());
        }
        // Only the race flavour has any, so no other kernel's key changed.
        for (name, value) in self.make_environment() {
            feed("make environment", format!("{name}={value}").as_bytes());
        }
        Ok(format!("{:x}", hasher.finalize())[..16].to_owned())
    }
}

/// The compiler, linker and pahole versions: each changes the kernel or its BTF.
fn toolchain_versions() -> Vec<String> {
    [
        ("gcc", "--version"),
        ("ld", "--version"),
        ("pahole", "--version"),
    ]
    .iter()
    .map(|(tool, flag)| format!("{tool}: {}", crate::process::first_line_of(tool, flag)))
    .collect()
}

const READY: &str = "kernel.json";
/// vmlinux without its debug info: QEMU boots it directly through its PVH
/// entry point, skipping the firmware's real-mode setup and decompression.
const PVH_IMAGE: &str = "vmlinux.pvh";

impl Kernel {
    /// The image QEMU boots: the stripped vmlinux through its PVH entry point
    /// (no firmware real-mode setup, no decompression), except on the debug
    /// flavour, where KASAN's early shadow is not set up on the PVH path and
    /// the guest triple-faults before printing anything: that one boots the
    /// bzImage.
    pub(crate) fn boot_image(&self) -> Result<PathBuf> {
        match self.flavour {
            Flavour::Default | Flavour::Race => self.pvh_image(),
            Flavour::Debug => Ok(self.bzimage.clone()),
        }
    }

    /// The image to boot directly (PVH), made from vmlinux the first time it is asked for.
    pub(crate) fn pvh_image(&self) -> Result<PathBuf> {
        let entry = self
            .build_dir
            .parent()
            .context("a kernel's build dir has a parent")?;
        let image = entry.join(PVH_IMAGE);
        let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        // A tree rebuilt in place has a newer vmlinux than its old image.
        if image.is_file() && modified(&image) >= modified(&self.vmlinux) {
            return Ok(image);
        }
        // objcopy writes a temporary file beside the image, which is then renamed.
        let partial = tempfile::Builder::new()
            .prefix(".vmlinux.pvh-")
            .tempfile_in(entry)
            .with_context(|| format!("creating a temporary file in {}", entry.display()))?;
        duct::cmd!("objcopy", "--strip-debug", &self.vmlinux, partial.path())
            .stdout_null()
            .run()
            .with_context(|| {
                format!(
                    "stripping {} into {} (objcopy is in binutils)",
                    self.vmlinux.display(),
                    partial.path().display()
                )
            })?;
        partial
            .persist(&image)
            .with_context(|| format!("moving {} into place", image.display()))?;
        Ok(image)
    }
}

/// The kernel for `recipe`: from the immutable cache for a packaged source
/// (a hit runs no make), built in place for a tree (make decides what is
/// stale; nothing runs when the tree has not changed since the last build).
pub(crate) fn ensure_built(
    recipe: &KernelRecipe,
    cache: &Path,
    progress: &Progress,
) -> Result<Kernel> {
    ensure_built_keyed(recipe, &recipe.key(cache)?, cache, progress)
}

/// [`ensure_built`] for a caller that already has the recipe's key (it
/// costs three tool runs to compute).
pub(crate) fn ensure_built_keyed(
    recipe: &KernelRecipe,
    key: &str,
    cache: &Path,
    progress: &Progress,
) -> Result<Kernel> {
    let entry = cache.join("kernels").join(key);
    match &recipe.source {
        KernelSource::Tree(tree) => build_in_place(recipe, tree, key, &entry, cache, progress),
        KernelSource::Tarball(_) => ensure_cached(recipe, key, &entry, cache, progress),
    }
}

/// One build per entry at a time; whoever waited finds the work done.
fn build_lock(entry: &Path, key: &str) -> Result<std::fs::File> {
    crate::paths::lock_exclusive(
        &entry.with_extension("lock"),
        &format!("another process is building kernel {key}"),
    )
}

/// What a new entry grows to, with a margin: the build directory's objects
/// and the images, every flavour (`harness cache list` shows each entry's size).
const BUILD_ROOM: u64 = 3 << 30;

fn ensure_cached(
    recipe: &KernelRecipe,
    key: &str,
    entry: &Path,
    cache: &Path,
    progress: &Progress,
) -> Result<Kernel> {
    if let Some(kernel) = read_ready(entry)? {
        return with_source(kernel, recipe, cache, progress);
    }
    let _lock = build_lock(entry, key)?;
    if let Some(kernel) = read_ready(entry)? {
        return with_source(kernel, recipe, cache, progress);
    }
    // Whatever is there is a build that was interrupted: never use it.
    if entry.exists() {
        std::fs::remove_dir_all(entry)
            .with_context(|| format!("removing the unfinished {}", entry.display()))?;
    }
    let source_dir = recipe.source.prepare(cache, progress)?;
    crate::paths::require_room(cache, BUILD_ROOM, &format!("building kernel {key}"))?;
    seed_from_sibling(entry, &source_dir, recipe)?;
    let kernel = build(recipe, key, entry, source_dir, None, progress)?;
    Ok(Kernel {
        fresh: true,
        ..kernel
    })
}

/// Starts a new entry's build directory as a copy of the finished one
/// built from the same source whose options differ least from what the
/// recipe asks for, so that make rebuilds only what the new configuration
/// changes: Kbuild tracks each object's config options and command line. A
/// changed fragment then costs what it touches; a flavour whose compiler
/// flags differ (KASAN, KCSAN) rebuilds nearly everything, less the host
/// tools. The copy's .config goes, so that the entry is configured afresh.
fn seed_from_sibling(entry: &Path, source_dir: &Path, recipe: &KernelRecipe) -> Result<()> {
    let Some(kernels) = entry.parent() else {
        return Ok(());
    };
    let wanted = requested_options(&recipe.fragments)?;
    let Some((seed, differing)) = closest_sibling(kernels, source_dir, &wanted) else {
        return Ok(());
    };
    let build_dir = entry.join("build");
    std::fs::create_dir_all(entry).with_context(|| format!("creating {}", entry.display()))?;
    tracing::info!(
        "starting from {}'s objects, {differing} requested option(s) apart \
         (make rebuilds what the configuration changes)",
        seed.key
    );
    let copied = duct::cmd!("cp", "-a", "--reflink=auto", &seed.build_dir, &build_dir)
        .stderr_to_stdout()
        .unchecked()
        .run()
        .with_context(|| format!("copying {}", seed.build_dir.display()))?;
    if !copied.status.success() {
        // A partial copy is only slower than none: start clean instead.
        let _ = std::fs::remove_dir_all(&build_dir);
        return Ok(());
    }
    let _ = std::fs::remove_file(build_dir.join(".config"));
    Ok(())
}

/// The finished entry in `kernels` built from `source_dir` whose .config
/// differs from `wanted` in the fewest options (the most recently built of
/// those), and that count.
fn closest_sibling(
    kernels: &Path,
    source_dir: &Path,
    wanted: &[config::Requested],
) -> Option<(Kernel, usize)> {
    let mut candidates: Vec<(usize, std::time::SystemTime, Kernel)> = std::fs::read_dir(kernels)
        .ok()?
        .flatten()
        .filter_map(|dir| {
            let ready = dir.path().join(READY);
            let built = ready.metadata().and_then(|meta| meta.modified()).ok()?;
            let kernel = read_ready(&dir.path()).ok().flatten()?;
            let usable = kernel.source_dir == source_dir && kernel.tree_fingerprint.is_none();
            let config = std::fs::read_to_string(kernel.build_dir.join(".config")).ok()?;
            usable.then(|| (config::differing(&config, wanted), built, kernel))
        })
        .collect();
    candidates.sort_by_key(|(differing, built, _)| (*differing, std::cmp::Reverse(*built)));
    candidates
        .into_iter()
        .next()
        .map(|(differing, _, kernel)| (kernel, differing))
}

/// A tree's own build directory, reused from edit to edit: make runs only
/// when the tree changed since the last build, and then rebuilds only what
/// the change made stale.
fn build_in_place(
    recipe: &KernelRecipe,
    tree: &Path,
    key: &str,
    entry: &Path,
    cache: &Path,
    progress: &Progress,
) -> Result<Kernel> {
    let _lock = build_lock(entry, key)?;
    let fingerprint = source::tree_fingerprint(tree)?;
    if let Some(kernel) = read_ready(entry)? {
        if kernel.tree_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            return Ok(kernel);
        }
    }
    let source_dir = recipe.source.prepare(cache, progress)?;
    build(recipe, key, entry, source_dir, Some(fingerprint), progress)
}

/// Out-of-tree modules build against the source tree as well as the build
/// directory. A CI cache may restore `kernels/` alone; extract the source
/// again (to the same place: its path is keyed by the tarball) rather than
/// rebuild the kernel.
fn with_source(
    kernel: Kernel,
    recipe: &KernelRecipe,
    cache: &Path,
    progress: &Progress,
) -> Result<Kernel> {
    if kernel.source_dir.join("Makefile").is_file() {
        return Ok(kernel);
    }
    let source_dir = recipe.source.prepare(cache, progress)?;
    if source_dir != kernel.source_dir {
        bail!(
            "kernel {} was built from {}, which is gone, and the source now comes from {}; \
             delete {} to rebuild it",
            kernel.key,
            kernel.source_dir.display(),
            source_dir.display(),
            kernel
                .build_dir
                .parent()
                .unwrap_or(&kernel.build_dir)
                .display()
        );
    }
    Ok(kernel)
}

fn read_ready(entry: &Path) -> Result<Option<Kernel>> {
    let ready = entry.join(READY);
    match std::fs::read_to_string(&ready) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", ready.display()))?,
        )),
        Err(_) => Ok(None),
    }
}

/// make in `entry/build`: configured first if it has no .config yet (a new
/// entry), then `make all`, which does only what is stale.
fn build(
    recipe: &KernelRecipe,
    key: &str,
    entry: &Path,
    source_dir: PathBuf,
    tree_fingerprint: Option<String>,
    progress: &Progress,
) -> Result<Kernel> {
    let start = Instant::now();
    let version = source::kernel_version(&source_dir)?;
    let build_dir = entry.join("build");
    std::fs::create_dir_all(&build_dir)
        .with_context(|| format!("creating {}", build_dir.display()))?;
    let log = entry.join("build.log");
    tracing::info!(
        "building the {} kernel {version} ({key}) from {} in {}; log: {}",
        recipe.flavour.name(),
        source_dir.display(),
        build_dir.display(),
        log.display()
    );
    let make = Make::new(&source_dir, &build_dir, &log).with_environment(recipe.make_environment());
    if !build_dir.join(".config").is_file() {
        configure(&make, &recipe.fragments, progress)?;
    }
    // `all` also makes Module.symvers, without which out-of-tree modules do not link.
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    make.run(&[&jobs, "all"], progress)?;
    let vmlinux = build_dir.join("vmlinux");
    if !crate::elf::has_section(&vmlinux, ".BTF")? {
        bail!(KernelBuildError::NoBtf {
            vmlinux: vmlinux.display().to_string()
        });
    }
    let kernel = Kernel {
        key: key.to_owned(),
        version,
        source_dir,
        bzimage: build_dir.join("arch/x86/boot/bzImage"),
        stamp: match &tree_fingerprint {
            Some(_) => file_stamp(&vmlinux)?,
            None => key.to_owned(),
        },
        vmlinux,
        build_dir,
        build_seconds: start.elapsed().as_secs_f64(),
        flavour: recipe.flavour,
        tree_fingerprint,
        fresh: false,
    };
    kernel.pvh_image()?;
    // Written last: its presence is what makes the entry usable.
    crate::paths::write_atomically(
        &entry.join(READY),
        serde_json::to_string_pretty(&kernel)?.as_bytes(),
    )?;
    tracing::info!(
        "kernel {} built in {}",
        kernel.version,
        format_duration(start.elapsed())
    );
    Ok(kernel)
}

/// A file's size and modification time: what changes when make relinks it.
fn file_stamp(path: &Path) -> Result<String> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let modified = crate::paths::mtime_nanos(&metadata);
    Ok(format!("{} bytes, modified {modified}", metadata.len()))
}

/// tinyconfig, the fragments merged on top, olddefconfig, and the check that
/// every requested option survived.
pub fn configure(make: &Make, fragments: &[Fragment], progress: &Progress) -> Result<()> {
    make.run(&["tinyconfig"], progress)?;
    let merge = make.source_dir.join("scripts/kconfig/merge_config.sh");
    let config = make.build_dir.join(".config");
    let mut merge_args = vec![
        merge.as_os_str().to_owned(),
        "-m".into(),
        "-O".into(),
        make.build_dir.as_os_str().to_owned(),
        config.as_os_str().to_owned(),
    ];
    merge_args.extend(write_fragments(make.build_dir, fragments)?);
    make.run_logged(
        "merge_config.sh",
        duct::cmd("bash", merge_args).dir(make.source_dir),
    )?;
    make.run(&["olddefconfig"], progress)?;
    let final_config = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let dropped = dropped_options(&requested_options(fragments)?, &final_config);
    if !dropped.is_empty() {
        bail!(KernelBuildError::DroppedOptions {
            dropped: dropped.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(())
}

/// The fragments' texts as files in the build directory, in order, for
/// merge_config.sh (the core's live inside the harness, not on disk); kept
/// there, they say what the kernel was configured from.
fn write_fragments(build_dir: &Path, fragments: &[Fragment]) -> Result<Vec<std::ffi::OsString>> {
    let dir = build_dir.join("fragments");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::new();
    for (index, fragment) in fragments.iter().enumerate() {
        let name = fragment
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        let path = dir.join(format!("{index:02}-{name}"));
        std::fs::write(&path, &fragment.text)
            .with_context(|| format!("writing {}", path.display()))?;
        paths.push(path.into_os_string());
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_its_ready_file_is_never_used() {
        let entry = tempfile::tempdir().unwrap();
        // What an interrupted build leaves: a build tree and at most a partial ready file.
        std::fs::create_dir_all(entry.path().join("build")).unwrap();
        std::fs::write(entry.path().join(format!("{READY}.partial")), "{").unwrap();
        assert!(read_ready(entry.path()).unwrap().is_none());
        let kernel = Kernel {
            key: "k".into(),
            version: "6.12.1".into(),
            source_dir: "/s".into(),
            build_dir: entry.path().join("build"),
            bzimage: "/b".into(),
            vmlinux: "/v".into(),
            build_seconds: 1.0,
            flavour: Flavour::Default,
            stamp: "k".into(),
            tree_fingerprint: None,
            fresh: false,
        };
        std::fs::write(
            entry.path().join(READY),
            serde_json::to_string(&kernel).unwrap(),
        )
        .unwrap();
        assert_eq!(read_ready(entry.path()).unwrap().unwrap().key, "k");
    }

    /// A recipe of `flavour` with one fragment, `text`, from a stand-in tarball in `dir`.
    fn one_fragment_recipe(dir: &Path, flavour: Flavour, text: &str) -> KernelRecipe {
        let tarball = dir.join("linux.tar.xz");
        std::fs::write(&tarball, b"not really").unwrap();
        KernelRecipe {
            source: KernelSource::Tarball(tarball),
            flavour,
            fragments: vec![Fragment {
                path: "images/a.config".into(),
                text: text.to_owned(),
            }],
        }
    }

    #[test]
    fn the_key_follows_the_options_not_the_comments() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = |text: &str| one_fragment_recipe(dir.path(), Flavour::Default, text);
        let cache = dir.path().join("cache");
        let key = |text: &str| recipe(text).key(&cache).unwrap();
        let a = key("CONFIG_BPF=y\n");
        assert_eq!(a, key("# why BPF\nCONFIG_BPF=y\n"));
        assert_ne!(a, key("CONFIG_BPF=y\nCONFIG_SMP=y\n"));
        assert_ne!(a, key("CONFIG_BPF=m\n"));
    }

    #[test]
    fn only_the_race_kernels_key_has_a_make_environment() {
        let dir = tempfile::tempdir().unwrap();
        let recipe = |flavour| one_fragment_recipe(dir.path(), flavour, "CONFIG_BPF=y\n");
        let cache = dir.path().join("cache");
        let key = |flavour| recipe(flavour).key(&cache).unwrap();
        assert!(recipe(Flavour::Default).make_environment().is_empty());
        assert!(recipe(Flavour::Debug).make_environment().is_empty());
        // The same options: only the environment tells the two apart.
        assert_eq!(key(Flavour::Default), key(Flavour::Debug));
        assert_ne!(key(Flavour::Default), key(Flavour::Race));
    }

    /// kbuild runs a make per directory with `obj` set to it; the race
    /// kernel's `KCSAN_SANITIZE` comes from the environment, unexpanded, and
    /// each of those makes expands it for its own directory, unless its
    /// Makefile sets its own.
    #[test]
    fn the_race_kernel_instruments_the_bpf_core_and_nothing_else() {
        let source = tempfile::tempdir().unwrap();
        let dirs = [
            "kernel/bpf",
            "kernel/bpf/preload",
            "kernel/bpfx",
            "fs/proc",
            "kernel/kcsan",
        ];
        let mut makefile = String::from("all:\n");
        for dir in dirs {
            makefile.push_str(&format!("\t@$(MAKE) -s -f sub.mk obj={dir}\n"));
        }
        std::fs::write(source.path().join("Makefile"), makefile).unwrap();
        let sub = "ifeq ($(obj),kernel/kcsan)\nKCSAN_SANITIZE := n\nendif\n\
                   all:\n\t@echo \"$(obj): $(KCSAN_SANITIZE)\"\n";
        std::fs::write(source.path().join("sub.mk"), sub).unwrap();
        let log = source.path().join("log");
        let race = KernelRecipe {
            source: KernelSource::Tree(source.path().to_owned()),
            flavour: Flavour::Race,
            fragments: Vec::new(),
        };
        Make::new(source.path(), source.path(), &log)
            .with_environment(race.make_environment())
            .run(&["all"], &Progress::silent())
            .unwrap();
        let log = std::fs::read_to_string(&log).unwrap();
        let said: Vec<&str> = (log.lines())
            .filter(|line| line.ends_with(": y") || line.ends_with(": n"))
            .collect();
        assert_eq!(
            said,
            [
                "kernel/bpf: y",
                "kernel/bpf/preload: y",
                "kernel/bpfx: n",
                "fs/proc: n",
                "kernel/kcsan: n"
            ]
        );
    }
}
