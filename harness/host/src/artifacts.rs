//! Everything a VM needs, built or found: the steps of the pipeline up to
//! the boot, each skipped when its output is already there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use harness_wire::cli::{Fault, RunArgs};

use crate::catalogue::Catalogue;
use crate::kernel::config::read_fragment_files;
use crate::kernel::source::KernelSpec;
use crate::kernel::{self, Flavour, Kernel, KernelRecipe};
use crate::progress::Progress;
use crate::{kmod, paths, qemu, setup, virtiofsd};

/// A kernel, the subjects' modules built against it, their binaries, and
/// how the guest's root is shared.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Artifacts {
    /// The cache directory.
    pub cache: PathBuf,
    /// The kernel the VMs boot.
    pub kernel: Kernel,
    /// Every subject's module, built against `kernel`, by module name.
    pub modules: BTreeMap<String, PathBuf>,
    /// Where each subject's BPF objects, built against `kernel`, are, by
    /// subject name (only subjects that declare some).
    pub bpf_dirs: BTreeMap<String, PathBuf>,
    /// The subjects whose BPF objects did not build against `kernel`, with
    /// the compiler's words: their scenarios fail saying so, and the other
    /// subjects' run (a kernel series whose own schedulers need more than
    /// this machine's clang stops only its scheduler subject).
    pub unbuilt: BTreeMap<String, String>,
    /// The subjects, and the binary each boots as the guest's init.
    pub catalogue: Catalogue,
    /// The read-only virtiofsd, or why the VMs use 9p instead.
    pub virtiofsd: Result<PathBuf, String>,
    /// How the kernel was named (reruns must name it the same way).
    pub spec: KernelSpec,
    /// Held while this process uses the kernel's cache entry, so that
    /// `harness cache prune` in another process leaves it alone.
    #[expect(dead_code, reason = "held for its Drop, never read")]
    pub(crate) lease: Arc<crate::cache::Lease>,
}

/// Which kernel to prepare.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PrepareOptions {
    /// Debian's 6.12 (the default), another Debian series, or a kernel tree.
    pub kernel: KernelSpec,
    /// The default kernel, or the debug one (sanitizers, lockdep).
    pub flavour: Flavour,
    /// Without the core's fragments that enable the struct_ops types the
    /// kernel defines (`kernel::config::TYPE_FRAGMENTS`): what
    /// `harness bench` compares the default kernel with.
    pub without_kernel_types: bool,
}

impl PrepareOptions {
    /// `kernel` in `flavour`, with the kernel types the core enables.
    pub fn new(kernel: KernelSpec, flavour: Flavour) -> Self {
        PrepareOptions {
            kernel,
            flavour,
            without_kernel_types: false,
        }
    }

    /// The same kernel, of another flavour.
    pub fn flavour(mut self, flavour: Flavour) -> Self {
        self.flavour = flavour;
        self
    }

    /// The kernel recipe: the core's fragments and the subjects'.
    pub fn recipe(&self, cache: &Path, catalogue: &Catalogue) -> Result<KernelRecipe> {
        let extra: Vec<PathBuf> = catalogue
            .subjects
            .iter()
            .flat_map(|subject| subject.info.fragments.iter().cloned())
            .collect();
        let recipe = KernelRecipe::new(
            self.kernel.resolve(cache)?,
            self.flavour,
            &read_fragment_files(&extra)?,
        )?;
        Ok(match self.without_kernel_types {
            true => recipe.without_type_fragments(),
            false => recipe,
        })
    }
}

/// Builds (or finds in the cache) the kernel and the subjects' modules.
pub fn prepare(
    options: &PrepareOptions,
    catalogue: &Catalogue,
    progress: &Progress,
) -> Result<Artifacts> {
    setup::check()?;
    qemu::find_qemu(std::env::var_os("PATH"))?;
    let cache = paths::cache_dir()?;
    // A bad STRUCT_OPS_ACCEL is reported now, not once per scenario.
    crate::accel::choose(&cache)?;
    let recipe = options.recipe(&cache, catalogue)?;
    crate::kernel_types::check_series(&recipe.source.series()?, catalogue)?;
    // Leased before it is looked at, so a prune elsewhere cannot take it away.
    let key = recipe.key(&cache)?;
    let lease = crate::cache::lease(&cache, &key)?;
    let kernel = kernel::ensure_built_keyed(&recipe, &key, &cache, progress)?;
    if kernel.fresh {
        crate::cache::enforce_limit(&cache, &key);
    }
    crate::kernel_types::check_config(&kernel, catalogue)?;
    let modules = build_modules(&kernel, catalogue, &cache, progress)?;
    let (bpf_dirs, unbuilt) = build_bpf_objects(&kernel, catalogue, &cache, progress);
    let virtiofsd = virtiofsd::find();
    if let Err(reason) = &virtiofsd {
        tracing::info!(
            "note: {reason}; the guest's root is shared over 9p instead (read-only as well)"
        );
    }
    Ok(Artifacts {
        spec: options.kernel.clone(),
        cache,
        kernel,
        modules,
        bpf_dirs,
        unbuilt,
        catalogue: catalogue.clone(),
        virtiofsd,
        lease: Arc::new(lease),
    })
}

/// Every subject's module, built against `kernel`.
fn build_modules(
    kernel: &Kernel,
    catalogue: &Catalogue,
    cache: &Path,
    progress: &Progress,
) -> Result<BTreeMap<String, PathBuf>> {
    let specs = catalogue
        .subjects
        .iter()
        .filter_map(|subject| subject.info.module.as_ref());
    specs
        .map(|spec| {
            let built = kmod::ensure_built(spec, kernel, cache, progress, &[])?;
            Ok((spec.name.clone(), built))
        })
        .collect()
}

/// Every subject's BPF objects built against `kernel`, by subject; and
/// the subjects whose objects did not build, with why.
fn build_bpf_objects(
    kernel: &Kernel,
    catalogue: &Catalogue,
    cache: &Path,
    progress: &Progress,
) -> (BTreeMap<String, PathBuf>, BTreeMap<String, String>) {
    let (mut dirs, mut unbuilt) = (BTreeMap::new(), BTreeMap::new());
    for subject in &catalogue.subjects {
        let name = subject.info.name.clone();
        match crate::bpf::ensure_built(&subject.info, kernel, cache, progress) {
            Ok(Some(dir)) => {
                dirs.insert(name, dir);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(
                    "{name}'s BPF objects did not build against kernel {}; its scenarios will \
                     fail saying why, the other subjects' run: {}",
                    kernel.version,
                    format!("{err:#}").lines().next().unwrap_or_default()
                );
                unbuilt.insert(name, format!("{err:#}"));
            }
        }
    }
    (dirs, unbuilt)
}

impl Artifacts {
    /// What the agent is told to run `scenario`: its subject's module.
    pub(crate) fn run_args(&self, scenario: &str, fault: Option<Fault>) -> Result<RunArgs> {
        self.catalogue.check(scenario)?;
        let (subject, _) = self.catalogue.find(scenario).context("checked above")?;
        if let Some(why) = self.unbuilt.get(&subject.info.name) {
            bail!(
                "{}'s BPF objects did not build against kernel {}, so {scenario} cannot run:\n{why}",
                subject.info.name,
                self.kernel.version
            );
        }
        let module = match &subject.info.module {
            Some(spec) => Some(
                self.modules
                    .get(&spec.name)
                    .with_context(|| format!("the module {} was not built", spec.name))?
                    .clone(),
            ),
            None => None,
        };
        Ok(RunArgs {
            scenario: scenario.to_owned(),
            then: Vec::new(),
            module,
            bpf_dir: self.bpf_dirs.get(&subject.info.name).cloned(),
            json: false,
            vm_timeout: None,
            fault,
        })
    }

    /// The binary that runs `scenario` in the guest.
    pub fn binary_for(&self, scenario: &str) -> Result<&Path> {
        self.catalogue.check(scenario)?;
        let (subject, _) = self.catalogue.find(scenario).context("checked above")?;
        Ok(&subject.binary)
    }
}

/// Prepared once per process: each nextest test is its own process, and
/// the steps are cache hits after the first. `catalogue` says which
/// subjects (a test binary's own, or its workspace's).
pub fn prepared(
    options: &PrepareOptions,
    progress: &Progress,
    catalogue: impl FnOnce(&Progress) -> Result<Catalogue>,
) -> Result<&'static Artifacts> {
    static ARTIFACTS: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    ARTIFACTS
        .get_or_init(|| {
            // Checked first: without the packages nothing below can build.
            setup::check()
                .and_then(|()| {
                    let catalogue = catalogue(progress)?;
                    prepare(options, &catalogue, progress)
                })
                .map_err(|err| format!("{err:#}"))
        })
        .as_ref()
        .map_err(|err| {
            anyhow::anyhow!("preparing the kernel, modules and guest binaries failed:\n{err}")
        })
}
