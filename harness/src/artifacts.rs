//! Everything a VM needs, built or found: the steps of the pipeline up to
//! the boot, each skipped when its output is already there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use guest_agent::cli::{Fault, RunArgs};

use crate::guest_binaries::{self, GuestBinaries};
use crate::kernel::source::KernelSpec;
use crate::kernel::{self, Flavour, Kernel, KernelRecipe};
use crate::progress::Progress;
use crate::{host_deps, kmod, paths, qemu, virtiofsd};

#[derive(Debug, Clone)]
pub struct Artifacts {
    pub cache: PathBuf,
    pub kernel: Kernel,
    /// Every subject's module, built against `kernel`, by module name.
    pub modules: BTreeMap<&'static str, PathBuf>,
    pub guest: GuestBinaries,
    /// The read-only virtiofsd, or why the VMs use 9p instead.
    pub virtiofsd: Result<PathBuf, String>,
    /// How the kernel was named (reruns must name it the same way).
    pub spec: KernelSpec,
    /// Held while this process uses the kernel's cache entry, so that
    /// `harness cache prune` in another process leaves it alone.
    pub lease: Arc<crate::cache::Lease>,
}

#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// Debian's 6.12 (the default), another Debian series, or a kernel tree.
    pub kernel: KernelSpec,
    /// The default kernel, or the debug one (sanitizers, lockdep).
    pub flavour: Flavour,
}

impl PrepareOptions {
    /// What the environment asks for (the VM tests' way to choose):
    /// STRUCT_OPS_KERNEL and STRUCT_OPS_DEBUG_KERNEL.
    pub fn from_env() -> Result<Self> {
        Ok(PrepareOptions {
            kernel: KernelSpec::from_env()?,
            flavour: Flavour::choose(false),
        })
    }

    pub fn recipe(&self, cache: &std::path::Path) -> Result<KernelRecipe> {
        KernelRecipe::new(
            self.kernel.resolve(cache)?,
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
    let recipe = options.recipe(&cache)?;
    // Leased before it is looked at, so a prune elsewhere cannot take it away.
    let key = recipe.key(&cache)?;
    let lease = crate::cache::lease(&cache, &key)?;
    let kernel = kernel::ensure_built_keyed(&recipe, &key, &cache, progress)?;
    let modules = build_modules(&kernel, &cache, progress)?;
    let guest = guest_binaries::ensure_built(&workspace, progress)?;
    let virtiofsd = virtiofsd::find();
    if let Err(reason) = &virtiofsd {
        eprintln!("[harness] note: {reason}; the guest's root is shared over 9p instead (read-only as well)");
    }
    Ok(Artifacts {
        spec: options.kernel.clone(),
        cache,
        kernel,
        modules,
        guest,
        virtiofsd,
        lease: Arc::new(lease),
    })
}

/// Every subject's module, built against `kernel`.
fn build_modules(
    kernel: &Kernel,
    cache: &std::path::Path,
    progress: &Progress,
) -> Result<BTreeMap<&'static str, PathBuf>> {
    let specs = guest_agent::subjects::SUBJECTS
        .iter()
        .filter_map(|subject| subject.module);
    specs
        .map(|spec| {
            Ok((
                spec.name,
                kmod::ensure_built(&spec, kernel, cache, progress, &[])?,
            ))
        })
        .collect()
}

impl Artifacts {
    /// What the agent is told to run `scenario`: where the loaders are, and
    /// its subject's module.
    pub fn run_args(&self, scenario: &str, fault: Option<Fault>) -> Result<RunArgs> {
        let (subject, _) = guest_agent::scenario::find(scenario)
            .with_context(|| guest_agent::scenario::unknown(scenario))?;
        let module = match subject.module {
            Some(spec) => Some(
                self.modules
                    .get(spec.name)
                    .with_context(|| format!("the module {} was not built", spec.name))?
                    .clone(),
            ),
            None => None,
        };
        Ok(RunArgs {
            scenario: scenario.to_owned(),
            bin_dir: self.guest.bin_dir.clone(),
            module,
            json: false,
            fault,
        })
    }
}

/// Prepared once per process: each nextest test is its own process, and
/// the steps are cache hits after the first.
pub fn prepared() -> Result<&'static Artifacts> {
    static ARTIFACTS: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    ARTIFACTS
        .get_or_init(|| {
            PrepareOptions::from_env()
                .and_then(|options| prepare(&options, &Progress::new()))
                .map_err(|err| format!("{err:#}"))
        })
        .as_ref()
        .map_err(|err| {
            anyhow::anyhow!("preparing the kernel, module and guest binaries failed:\n{err}")
        })
}
