//! Everything a VM needs, built or found: the steps of the pipeline up to
//! the boot, each skipped when its output is already there.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Result;

use crate::guest_binaries::{self, GuestBinaries};
use crate::kernel::{self, Flavour, Kernel, KernelRecipe, KernelSource};
use crate::progress::Progress;
use crate::{host_deps, kmod, paths, qemu, virtiofsd};

#[derive(Debug, Clone)]
pub struct Artifacts {
    pub cache: PathBuf,
    pub kernel: Kernel,
    pub kmod: PathBuf,
    pub guest: GuestBinaries,
    /// The read-only virtiofsd, or why the VMs use 9p instead.
    pub virtiofsd: Result<PathBuf, String>,
    /// The kernel tree asked for, if not Debian's (reruns must name it too).
    pub kernel_tree: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// Build this kernel tree instead of Debian's linux-source-6.12.
    pub kernel_tree: Option<PathBuf>,
    /// The default kernel, or the debug one (sanitizers, lockdep).
    pub flavour: Flavour,
}

impl PrepareOptions {
    /// What the environment asks for (the VM tests' way to choose).
    pub fn from_env() -> Self {
        PrepareOptions {
            kernel_tree: None,
            flavour: Flavour::choose(false),
        }
    }

    pub fn recipe(&self) -> Result<KernelRecipe> {
        KernelRecipe::new(
            KernelSource::choose(self.kernel_tree.clone()),
            self.flavour,
            &paths::workspace_root().join("images"),
        )
    }
}

pub fn prepare(options: &PrepareOptions, progress: &Progress) -> Result<Artifacts> {
    host_deps::ensure_installed()?;
    qemu::find_qemu(std::env::var_os("PATH"))?;
    let workspace = paths::workspace_root();
    let cache = paths::cache_dir()?;
    // A bad STRUCT_OPS_ACCEL is reported now, not once per scenario.
    crate::accel::choose(&cache)?;
    let recipe = options.recipe()?;
    let kernel = kernel::ensure_built(&recipe, &cache, progress)?;
    let kmod = kmod::ensure_built(&workspace.join("kmod"), &kernel, &cache, progress)?;
    let guest = guest_binaries::ensure_built(&workspace, progress)?;
    let virtiofsd = virtiofsd::find();
    if let Err(reason) = &virtiofsd {
        eprintln!("[harness] note: {reason}; the guest's root is shared over 9p instead (read-only as well)");
    }
    Ok(Artifacts {
        kernel_tree: options.kernel_tree.clone(),
        cache,
        kernel,
        kmod,
        guest,
        virtiofsd,
    })
}

/// Prepared once per process: each nextest test is its own process, and
/// the steps are cache hits after the first.
pub fn prepared() -> Result<&'static Artifacts> {
    static ARTIFACTS: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    ARTIFACTS
        .get_or_init(|| {
            prepare(&PrepareOptions::from_env(), &Progress::new()).map_err(|err| format!("{err:#}"))
        })
        .as_ref()
        .map_err(|err| {
            anyhow::anyhow!("preparing the kernel, module and guest binaries failed:\n{err}")
        })
}
