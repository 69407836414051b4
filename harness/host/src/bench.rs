//! `harness bench`: the figures that say whether the harness is fast enough,
//! each as min/median/max over repeated runs on the machine it runs on, against its target.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::artifacts::{self, Artifacts, PrepareOptions};
use crate::catalogue::{self, Catalogue};
use crate::kernel::{self, source::KernelSpec, Flavour};
use crate::kmod;
use crate::progress::Progress;
use crate::vm::VmOptions;

/// What `harness bench` measures, and how often.
#[non_exhaustive]
pub struct BenchOptions {
    /// Repetitions of each cheap figure.
    pub runs: usize,
    /// Also build the kernel from scratch once (a full kernel build: minutes).
    pub(crate) cold_kernel: bool,
    /// The scenario one VM is timed with, and compared with vng on.
    pub(crate) scenario: String,
    /// The directory whose workspace the subjects were found in (the
    /// guest binaries' warm build is timed there).
    pub(crate) dir: std::path::PathBuf,
    /// Scenarios to time on their own too (the catalogue as it was before
    /// new ones, say): the whole suite's ratio to them is printed.
    pub(crate) baseline: Vec<String>,
    /// Also measure what enabling the kernel's struct_ops types costs the
    /// default kernel: agent ready with and without them, and (with
    /// `cold_kernel`) a cold build of each.
    pub(crate) kernel_types_cost: bool,
    /// Where the kernel builds and the rest of the long work report.
    pub(crate) progress: Progress,
}

impl BenchOptions {
    /// One run of each figure, timing `scenario`, with the subjects of the
    /// workspace in `dir`; nothing built cold, no baseline.
    pub fn new(scenario: String, dir: std::path::PathBuf) -> Self {
        BenchOptions {
            runs: 1,
            cold_kernel: false,
            scenario,
            dir,
            baseline: Vec::new(),
            kernel_types_cost: false,
            progress: Progress::silent(),
        }
    }

    /// Repetitions of each cheap figure.
    pub fn runs(mut self, runs: usize) -> Self {
        self.runs = runs;
        self
    }

    /// Also build the kernel from scratch once.
    pub fn cold_kernel(mut self, cold_kernel: bool) -> Self {
        self.cold_kernel = cold_kernel;
        self
    }

    /// Scenarios to time on their own too.
    pub fn baseline(mut self, baseline: Vec<String>) -> Self {
        self.baseline = baseline;
        self
    }

    /// Also measure what enabling the kernel's struct_ops types costs.
    pub fn kernel_types_cost(mut self, kernel_types_cost: bool) -> Self {
        self.kernel_types_cost = kernel_types_cost;
        self
    }

    /// Where the kernel builds and the rest of the long work report.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// One figure: its samples. Figures are judged only against each other,
/// measured in the same run (`Ratio`): these machines vary 2-3x in speed
/// from day to day, so a fixed number of seconds would judge the day.
#[derive(Debug, Clone)]
struct Figure {
    name: String,
    samples: Vec<Duration>,
}

impl Figure {
    fn new(name: &str) -> Self {
        Figure {
            name: name.to_owned(),
            samples: Vec::new(),
        }
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut samples = self.samples.clone();
        samples.sort();
        samples
    }

    fn median(&self) -> Option<Duration> {
        let sorted = self.sorted();
        sorted.get(sorted.len() / 2).copied()
    }

    fn row(&self) -> String {
        let sorted = self.sorted();
        let (Some(min), Some(median), Some(max)) = (sorted.first(), self.median(), sorted.last())
        else {
            return format!("{:<54} (no samples)", self.name);
        };
        format!(
            "{:<54} {:>8} {:>8} {:>8} {:>3}",
            self.name,
            seconds(*min),
            seconds(median),
            seconds(*max),
            sorted.len()
        )
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.2}s", duration.as_secs_f64())
}

fn time<T>(work: impl FnOnce() -> Result<T>) -> Result<(Duration, T)> {
    let start = Instant::now();
    let value = work()?;
    Ok((start.elapsed(), value))
}

/// Two figures' medians set against each other, judged against a target.
#[derive(Debug)]
struct Ratio {
    name: String,
    numerator: Figure,
    denominator: Figure,
    target: f64,
}

impl Ratio {
    fn new(name: &str, numerator: &Figure, denominator: &Figure, target: f64) -> Self {
        Ratio {
            name: name.to_owned(),
            numerator: numerator.clone(),
            denominator: denominator.clone(),
            target,
        }
    }

    fn write(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (Some(top), Some(bottom)) = (self.numerator.median(), self.denominator.median()) else {
            return Ok(());
        };
        let ratio = top.as_secs_f64() / bottom.as_secs_f64();
        let verdict = if ratio <= self.target { "ok" } else { "MISSED" };
        writeln!(
            f,
            "{:<54} {ratio:>8.2}  target {:.2} {verdict}",
            self.name, self.target
        )
    }
}

/// Measures every figure: the table of figures, then their ratios and
/// targets (its `Display` is what `harness bench` prints).
pub fn run(
    prepare_options: &PrepareOptions,
    catalogue: &Catalogue,
    options: &BenchOptions,
) -> Result<Bench> {
    let quiet = options.progress.clone();
    catalogue.check(&options.scenario)?;
    let artifacts = artifacts::prepare(prepare_options, catalogue, &quiet)?;
    let runs = options.runs.max(1);
    let mut figures = vec![cold_build(prepare_options, options, &artifacts)?];
    figures.extend(warm_builds(prepare_options, &artifacts, options)?);
    let [restored_ready, restored_result] = one_vm(&artifacts, &options.scenario, runs, true)?;
    let [booted_ready, booted_result] = one_vm(&artifacts, &options.scenario, runs, false)?;
    let mut ratios = vec![Ratio::new(
        "agent ready, restored VM / booted VM",
        &restored_ready,
        &booted_ready,
        1.0 / 3.0,
    )];
    figures.extend([restored_ready, restored_result, booted_ready, booted_result]);
    let suite = suite_figure(&artifacts, runs.min(3), true)?;
    let boot_each = suite_figure(&artifacts, runs.min(3), false)?;
    let name = "suite, restored VMs / a boot each";
    ratios.push(Ratio::new(name, &suite, &boot_each, 0.5));
    figures.push(boot_each);
    if !options.baseline.is_empty() {
        let baseline = baseline_figure(&artifacts, &options.baseline, runs.min(3))?;
        let name = "suite, all scenarios / the --baseline ones";
        ratios.push(Ratio::new(name, &suite, &baseline, 1.5));
        figures.push(baseline);
    }
    if prepare_options.flavour != Flavour::Default {
        let default = PrepareOptions {
            flavour: Flavour::Default,
            ..prepare_options.clone()
        };
        let default = artifacts::prepare(&default, catalogue, &quiet)?;
        let baseline = suite_figure(&default, runs.min(3), true)?;
        let name = format!("suite, {} kernel / default kernel", prepare_options.flavour);
        ratios.push(Ratio::new(&name, &suite, &baseline, 2.0));
        figures.push(default_build(&default));
        figures.push(baseline);
    }
    if options.kernel_types_cost {
        let cold = (prepare_options, &figures[0]);
        let (cost, cost_ratios) = kernel_types_cost(cold, catalogue, options, &artifacts)?;
        figures.extend(cost);
        ratios.extend(cost_ratios);
    }
    let (ours, vng) = compare_with_vng(&artifacts, &options.scenario, runs.min(3))?;
    // Last: each edit rebuilds the kernel in place, and a rebuilt vmlinux
    // has new BTF type ids, so `artifacts` (its module) is stale after it.
    if let KernelSpec::Tree(tree) = &prepare_options.kernel {
        let progress = &options.progress;
        figures.push(edit_loop(
            prepare_options,
            (catalogue, progress),
            tree,
            runs.min(3),
        )?);
    }
    let ratio_name = format!("{} end to end, ours / vng", options.scenario);
    ratios.push(Ratio::new(&ratio_name, &ours, &vng, 0.25));
    figures.extend([suite, ours, vng]);
    Ok(Bench { figures, ratios })
}

/// What `harness bench` measured: each figure, then each same-run ratio
/// against its target.
#[derive(Debug)]
pub struct Bench {
    figures: Vec<Figure>,
    ratios: Vec<Ratio>,
}

impl std::fmt::Display for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<54} {:>8} {:>8} {:>8} {:>3}",
            "figure", "min", "median", "max", "n"
        )?;
        for figure in &self.figures {
            writeln!(f, "{}", figure.row())?;
        }
        for ratio in &self.ratios {
            ratio.write(f)?;
        }
        Ok(())
    }
}

/// The whole catalogue, 2 VMs at a time, `runs` times: each VM restored
/// from the kernel's template, or (`restoring` false) booted.
fn suite_figure(artifacts: &Artifacts, runs: usize, restoring: bool) -> Result<Figure> {
    let flavour = artifacts.kernel.flavour;
    let per_vm = match crate::suite::scenarios_per_vm(flavour, restoring) {
        1 => String::new(),
        many => format!(", up to {many} scenarios a VM"),
    };
    let how = match restoring {
        true => "restored",
        false => "booted",
    };
    let name = format!(
        "whole scenario suite, {} kernel, warm, {} {how} VMs at a time{per_vm}",
        flavour.name(),
        crate::suite::DEFAULT_JOBS
    );
    let mut suite = Figure::new(&name);
    let names = artifacts.catalogue.names();
    for _ in 0..runs {
        let (took, booted) = time(|| run_named(artifacts, &names, restoring))?;
        suite.samples.push(took);
        if restoring && booted > 0 {
            suite.name = format!("{name} ({booted} of {} booted)", names.len());
        }
    }
    Ok(suite)
}

/// Only the `names` scenarios, 2 VMs at a time, `runs` times.
fn baseline_figure(artifacts: &Artifacts, names: &[String], runs: usize) -> Result<Figure> {
    for name in names {
        artifacts.catalogue.check(name)?;
    }
    let name = format!(
        "the {} --baseline scenarios, warm, 2 VMs at a time",
        names.len()
    );
    let mut figure = Figure::new(&name);
    for _ in 0..runs {
        figure
            .samples
            .push(time(|| run_named(artifacts, names, true))?.0);
    }
    Ok(figure)
}

/// The default flavour's cold build (when its cache entry was built), to
/// set beside the debug one's.
fn default_build(default: &Artifacts) -> Figure {
    let mut figure = Figure::new("kernel build, cold, default flavour (when built)");
    figure
        .samples
        .push(Duration::from_secs_f64(default.kernel.build_seconds));
    figure
}

/// A kernel developer's loop on a tree built in place: touch one file under
/// kernel/bpf, then the time until every scenario has its result (make,
/// the module, the guest binaries, the whole suite).
fn edit_loop(
    prepare_options: &PrepareOptions,
    (catalogue, progress): (&Catalogue, &Progress),
    tree: &Path,
    runs: usize,
) -> Result<Figure> {
    let file = tree.join("kernel/bpf/bpf_struct_ops.c");
    let mut figure = Figure::new("edit loop: touch kernel/bpf/bpf_struct_ops.c to every result");
    for _ in 0..runs {
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|file| file.set_modified(std::time::SystemTime::now()))
            .with_context(|| format!("touching {}", file.display()))?;
        let quiet = progress.clone();
        let prepared = || artifacts::prepare(prepare_options, catalogue, &quiet);
        let (took, ()) = time(|| {
            let artifacts = prepared()?;
            run_named(&artifacts, &artifacts.catalogue.names(), true).map(drop)
        })?;
        figure.samples.push(took);
    }
    Ok(figure)
}

/// The kernel built from scratch in a scratch cache (`--cold-kernel`), or
/// the time the cache entry took when it was built.
fn cold_build(
    prepare_options: &PrepareOptions,
    options: &BenchOptions,
    artifacts: &Artifacts,
) -> Result<Figure> {
    let mut cold = Figure::new("kernel build, cold");
    if options.cold_kernel {
        let recipe = prepare_options.recipe(&artifacts.cache, &artifacts.catalogue)?;
        cold.samples.push(cold_build_of(&recipe, options)?);
        cold.name.push_str(" (measured now)");
    } else {
        cold.samples
            .push(Duration::from_secs_f64(artifacts.kernel.build_seconds));
        // A tree's entry is rebuilt in place: its last build may have been incremental.
        cold.name = match prepare_options.kernel {
            KernelSpec::Tree(_) => "kernel build, the tree's last (cold or incremental)".to_owned(),
            _ => format!("{} (when the cache entry was built)", cold.name),
        };
    }
    Ok(cold)
}

/// Everything before the first VM when it is all cached, and the module.
fn warm_builds(
    prepare_options: &PrepareOptions,
    artifacts: &Artifacts,
    options: &BenchOptions,
) -> Result<Vec<Figure>> {
    let quiet = options.progress.clone();
    let catalogue = &artifacts.catalogue;
    let mut hit = Figure::new("kernel build, warm (cache hit)");
    let mut ready = Figure::new("everything before the first VM, warm");
    let mut module = Figure::new("module build");
    let mut guest = Figure::new("guest binaries build and catalogue, warm (cargo no-op)");
    let first_module = catalogue
        .subjects
        .iter()
        .find_map(|subject| subject.info.module.clone());
    for _ in 0..options.runs.max(1) {
        let cache = &artifacts.cache;
        let recipe = prepare_options.recipe(cache, catalogue)?;
        hit.samples
            .push(time(|| kernel::ensure_built(&recipe, cache, &quiet))?.0);
        ready
            .samples
            .push(time(|| artifacts::prepare(prepare_options, catalogue, &quiet))?.0);
        if let Some(spec) = &first_module {
            let scratch = tempfile::tempdir().context("creating a scratch module cache")?;
            let build = || kmod::ensure_built(spec, &artifacts.kernel, scratch.path(), &quiet, &[]);
            module.samples.push(time(build)?.0);
        }
        guest
            .samples
            .push(time(|| catalogue::discover(&options.dir, &quiet))?.0);
    }
    Ok(vec![hit, ready, module, guest])
}

/// One VM running `scenario`, restored from its template (`restoring`) or
/// booted: to the agent's ready line, and to its result.
fn one_vm(
    artifacts: &Artifacts,
    scenario: &str,
    runs: usize,
    restoring: bool,
) -> Result<[Figure; 2]> {
    let mut agent_ready = Vec::new();
    let mut result = Vec::new();
    let mut accel = None;
    let options = vm_options(restoring);
    let how = match restoring {
        true => "restored",
        false => "booted",
    };
    for _ in 0..runs {
        let run = crate::suite::run_scenario(artifacts, scenario, &options)?;
        if restoring && run.root != "restored" {
            bail!("the {scenario} VM was booted, not restored: the warning above says why");
        }
        if !run.result.passed {
            bail!(
                "the {scenario} scenario failed during the benchmark: {:?}",
                run.result.failures
            );
        }
        agent_ready.extend(run.boot);
        result.push(run.to_result);
        accel = Some(run.accel);
    }
    // Named after the accelerator the VMs really used (a KVM probe may have fallen back).
    let accel = accel.map_or_else(|| "?".to_owned(), |accel| accel.to_string());
    let ready = Figure {
        samples: agent_ready,
        ..Figure::new(&format!(
            "one {how} VM ({accel}, {} kernel): QEMU start to agent ready",
            artifacts.kernel.flavour.name()
        ))
    };
    let result = Figure {
        samples: result,
        ..Figure::new(&format!(
            "one {how} VM ({accel}): QEMU start to result ({scenario})"
        ))
    };
    Ok([ready, result])
}

/// What the core's kernel-type fragments cost the default kernel: its
/// cold build with and without them (with `--cold-kernel`, each in a
/// scratch cache, one after the other), and agent ready on each; their
/// ratios, each judged against 1.15. `cold` is the options and figure of
/// [`cold_build`]: when its recipe is the one with the types, its build is
/// the "with" one, not built again.
fn kernel_types_cost(
    (prepare_options, cold): (&PrepareOptions, &Figure),
    catalogue: &Catalogue,
    options: &BenchOptions,
    artifacts: &Artifacts,
) -> Result<(Vec<Figure>, Vec<Ratio>)> {
    let bare_options = PrepareOptions {
        without_kernel_types: true,
        ..prepare_options.clone()
    };
    // Only the timed scenario's subject: one of a kernel type needs the types.
    let (subject, _) = catalogue.find(&options.scenario).context("checked above")?;
    let bare_catalogue = Catalogue {
        subjects: vec![subject.clone()],
    };
    let bare = artifacts::prepare(&bare_options, &bare_catalogue, &options.progress)?;
    let runs = options.runs.max(1);
    // Booted: a kernel's cost shows in its boot.
    let [mut with_ready, _] = one_vm(artifacts, &options.scenario, runs, false)?;
    let [mut without_ready, _] = one_vm(&bare, &options.scenario, runs, false)?;
    with_ready.name.push_str(", with the kernel types");
    without_ready.name.push_str(", without them");
    let name = "agent ready, with the kernel types / without";
    let mut ratios = vec![Ratio::new(name, &with_ready, &without_ready, 1.15)];
    let mut figures = vec![with_ready, without_ready];
    if options.cold_kernel {
        let mut with_build = Figure::new("kernel build, cold, with the kernel types");
        let mut without_build = Figure::new("kernel build, cold, without them");
        let cache = &artifacts.cache;
        let with_recipe = prepare_options.recipe(cache, &bare_catalogue)?;
        let cold_recipe = prepare_options.recipe(cache, &artifacts.catalogue)?;
        // Each cold build takes many minutes: the one just measured counts.
        if with_recipe.key(cache)? == cold_recipe.key(cache)? {
            with_build.samples.clone_from(&cold.samples);
        } else {
            with_build
                .samples
                .push(cold_build_of(&with_recipe, options)?);
        }
        let bare_recipe = bare_options.recipe(cache, &bare_catalogue)?;
        without_build
            .samples
            .push(cold_build_of(&bare_recipe, options)?);
        let name = "kernel build, cold, with the kernel types / without";
        ratios.push(Ratio::new(name, &with_build, &without_build, 1.15));
        figures.extend([with_build, without_build]);
    }
    Ok((figures, ratios))
}

/// `recipe` built from scratch in a scratch cache.
fn cold_build_of(recipe: &kernel::KernelRecipe, options: &BenchOptions) -> Result<Duration> {
    let scratch = tempfile::tempdir().context("creating a scratch cache")?;
    let quiet = options.progress.clone();
    Ok(time(|| kernel::ensure_built(recipe, scratch.path(), &quiet))?.0)
}

/// A VM's options: restored from its template, or booted.
fn vm_options(restoring: bool) -> VmOptions {
    VmOptions {
        restore: restoring,
        ..VmOptions::default()
    }
}

/// `names`, as many VMs at a time as `harness run` and the nextest `vm`
/// group, restored or booted.
/// How many of their VMs were booted (restoring, a scenario on several NUMA
/// nodes is; a template that failed says so in a warning).
fn run_named(artifacts: &Artifacts, names: &[String], restoring: bool) -> Result<usize> {
    let flavour = artifacts.kernel.flavour;
    // A benchmark times the scenarios; `harness run` judges their snapshots.
    let suite = crate::suite::SuiteOptions {
        snapshots: false,
        vm: vm_options(restoring),
        per_vm: crate::suite::scenarios_per_vm(flavour, restoring),
        ..crate::suite::SuiteOptions::for_flavour(flavour)
    };
    let rows = crate::suite::run_many(artifacts, names, &suite, |_| {});
    let failed: Vec<&str> = rows
        .iter()
        .filter(|row| !row.passed())
        .map(|row| row.scenario.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("scenarios failed during the benchmark: {failed:?}");
    }
    let booted = rows
        .iter()
        .filter(|row| matches!(&row.outcome, Ok(run) if run.root != "restored"))
        .count();
    Ok(booted)
}

/// The same work both ways: `scenario` end to end (boot, run, power off),
/// ours against `vng --run <kernel> --exec "<agent> run ..."`, on the same
/// kernel build, machine and accelerator.
fn compare_with_vng(
    artifacts: &Artifacts,
    scenario: &str,
    runs: usize,
) -> Result<(Figure, Figure)> {
    let venv = crate::paths::venv_in(&artifacts.cache);
    if !venv.join("bin/vng").exists() {
        bail!(
            "vng is not installed in {}; run `harness setup`",
            venv.display()
        );
    }
    let mut ours = Figure::new(&format!("{scenario} end to end, ours"));
    for _ in 0..runs {
        let (took, run) = time(|| {
            Ok(crate::suite::run_scenario(
                artifacts,
                scenario,
                &vm_options(true),
            )?)
        })?;
        if !run.result.passed {
            bail!(
                "{scenario} failed during the benchmark: {:?}",
                run.result.failures
            );
        }
        if run.root != "restored" {
            bail!("the {scenario} VM was booted, not restored: the warning above says why");
        }
        ours.samples.push(took);
    }
    let mut vng = Figure::new(&format!("{scenario} end to end, vng --exec"));
    let vng_command = crate::vng::vng_command(artifacts, scenario)?;
    for _ in 0..runs {
        let (took, (status, text)) = time(|| {
            crate::process::combined_output(duct::cmd!("bash", "-c", &vng_command).stdin_null())
                .context("running vng")
        })?;
        if !status.success() {
            bail!("{vng_command} failed:\n{text}");
        }
        vng.samples.push(took);
    }
    Ok((ours, vng))
}
