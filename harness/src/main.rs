//! `harness`: finds the subjects of the workspace it is run in, builds what
//! is missing, boots the kernel in QEMU and runs their scenarios.

mod new;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use harness::config::{EnvArgs, KernelArgs};
use harness::wire::cli::DEFAULT_VM_TIMEOUT_SECS;
use harness_host::artifacts::{prepare, Artifacts, PrepareOptions};
use harness_host::cache::{self, Target};
use harness_host::catalogue::{self, Catalogue};
use harness_host::progress::Progress;
use harness_host::repeat::{self, Plan, Repeated, Rounds, RunAt};
use harness_host::report::{self, KernelInfo};
use harness_host::step_in::{self, StepIn};
use harness_host::suite::{Row, SuiteOptions};
use harness_host::{paths, setup, vng};

#[derive(Parser)]
#[command(
    about = "Builds a minimal kernel with BTF, the subjects' modules and binaries (the packages \
             of this workspace with [package.metadata.harness] vm-test), boots them in QEMU and \
             runs their struct_ops scenarios",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    env: EnvArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Start a new subject: a cargo project whose scenarios pass once their
    /// snapshots are accepted, with a GitHub workflow that runs them
    /// (`--module NAME` for a type a module defines, `--kernel-type
    /// tcp_congestion_ops` or `--kernel-type sched_ext_ops` for one the
    /// kernel defines: a BPF congestion control, or a BPF scheduler).
    New {
        /// The new project's directory (its name is the crate's).
        path: PathBuf,
        /// The module that defines `struct NAME_ops`.
        #[arg(long, value_name = "NAME", conflicts_with = "kernel_type")]
        module: Option<String>,
        /// A struct_ops type the kernel defines, implemented in BPF:
        /// tcp_congestion_ops or sched_ext_ops.
        #[arg(long, value_name = "TYPE")]
        kernel_type: Option<String>,
        /// The implementation's name, with --kernel-type (default: the directory's).
        #[arg(long, value_name = "NAME", requires = "kernel_type")]
        name: Option<String>,
        /// Depend on the harness at this path (default: this harness's sources).
        #[arg(long, value_name = "DIR", conflicts_with = "harness_git")]
        harness_path: Option<PathBuf>,
        /// Depend on the harness from this git repository.
        #[arg(long, value_name = "URL")]
        harness_git: Option<String>,
    },
    /// Install the host's missing packages and tools (QEMU, the kernel
    /// source, clang, pahole, bpftool, gdb, virtiofsd, virtme-ng; as root).
    /// apt is asked first: if it would remove or downgrade a package this
    /// machine has, setup stops before changing anything and says why.
    Setup {
        /// Let apt remove or downgrade this package to install the missing
        /// ones (repeat for several); any other removal still stops setup.
        #[arg(long, value_name = "PACKAGE")]
        allow_remove: Vec<String>,
    },
    /// Build what is missing, boot a VM per scenario, run every scenario (or
    /// those named) and report; with several --kernel, on each of them.
    /// --repeat, --until-fail and --retries measure how often each flakes.
    #[command(after_help = repeat::EXIT_CODES)]
    Run(RunArgs),
    /// Run every scenario on each kernel and print what the verifier spent
    /// on each program, program by kernel (budgets: a subject's
    /// verifier-budget file; a program over its line fails its scenario).
    Verifier {
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Build what is missing and print where the kernel, module and guest binaries are.
    Build {
        /// A subject whose BPF objects do not build against the kernel
        /// fails the command only after everything else is built; with
        /// this, it is reported and the command succeeds (its scenarios
        /// then fail saying why): what the nextest setup script does, so
        /// that the other subjects' tests run.
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Measure build, boot and suite times (min/median/max) against their targets, and vng.
    Bench {
        /// Repetitions of each figure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also build the kernel from scratch once, in a scratch cache (a full kernel build: minutes).
        #[arg(long)]
        cold_kernel: bool,
        /// The scenario one VM is timed with, and compared with vng on
        /// (default: the first one `run --list` shows).
        #[arg(long, value_name = "NAME")]
        scenario: Option<String>,
        /// Also time only these scenarios (repeat; the catalogue as it was
        /// before new ones, say) and print the whole suite's ratio to them.
        #[arg(long, value_name = "NAME")]
        baseline: Vec<String>,
        /// Also measure what enabling the kernel's own struct_ops types
        /// (sched_ext, netem, NUMA, IKCONFIG) costs the default kernel:
        /// agent ready with and without them, and with --cold-kernel a cold
        /// build without them too (one more kernel build: the cold one counts as "with").
        #[arg(long)]
        kernel_types_cost: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Print the kernel's cache key (the hash of everything that defines it) without building the kernel; the guest binaries are built (they say which fragments the subjects add).
    CacheKey(KernelArgs),
    /// The kernel cache: list its entries, or prune them.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Boot the kernel and run CMD in it as root, with proc, sys, debugfs,
    /// tracefs and bpffs mounted, in this directory; its output streams here
    /// and the harness exits with its exit code (125 if the VM failed).
    Exec {
        /// Load the subjects' modules first.
        #[arg(long)]
        module: bool,
        /// Wait for gdb once the modules are loaded, and print how to connect.
        #[arg(long)]
        gdb: bool,
        /// Seconds before a hung command and its VM are killed.
        #[arg(long, default_value_t = DEFAULT_VM_TIMEOUT_SECS)]
        timeout: u64,
        #[command(flatten)]
        kernel: KernelArgs,
        /// The command and its arguments (after --).
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// An interactive root shell in the VM, on this terminal, with the
    /// modules loaded; `exit` powers the VM off. Ctrl-C goes to the guest.
    Shell {
        /// Open the shell in this scenario: while its loader is attached (at
        /// its first detach), or after its steps.
        #[arg(long, value_name = "NAME", conflicts_with = "gdb")]
        scenario: Option<String>,
        /// Wait for gdb once the modules are loaded, and print how to connect.
        #[arg(long)]
        gdb: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Print the virtme-ng command that runs SCENARIO by hand on the harness's kernel.
    Vng {
        /// The scenario to run (`harness run --list` names them).
        scenario: String,
        #[command(flatten)]
        kernel: KernelArgs,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Every kernel entry: key, kernel, size, last use, whether a process holds it.
    List,
    /// Remove the least recently used kernel entries, never one another process holds.
    Prune {
        /// Keep the N most recently used entries.
        #[arg(long, value_name = "N", required_unless_present = "max_size")]
        keep: Option<usize>,
        /// Remove entries until the kernels take at most SIZE (e.g. 20G).
        #[arg(long, value_name = "SIZE", conflicts_with = "keep")]
        max_size: Option<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run only this scenario (repeat for several).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Print the results as JSON on stdout (progress still goes to stderr):
    /// a row per scenario, or with --repeat, --until-fail or --retries each
    /// scenario's runs, passes, flaky flag and retried boots, and each run's row.
    #[arg(long)]
    json: bool,
    /// Keep every VM's logs, not only those of failures.
    #[arg(long)]
    keep_logs: bool,
    /// Judge each scenario by its expectations alone: do not compare its
    /// output with its snapshot (by default a snapshot that is new or differs
    /// fails the scenario, as in `cargo nextest run`); the report says so.
    #[arg(long)]
    no_snapshots: bool,
    /// How many VMs run at a time [default: 2].
    #[arg(long)]
    jobs: Option<usize>,
    /// How many scenarios of one subject a VM runs, one after another, while
    /// each passes [default: 1; with --boot-each, 8 on the debug kernel,
    /// whose boot costs more than most scenarios]. 1: every scenario in a
    /// kernel of its own.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    scenarios_per_vm: Option<u16>,
    /// Per-VM timeout in seconds, counted again from each scenario's result;
    /// a VM still running then is killed. One loader command in it may take
    /// 3/8 of this (3/4 on a debug or race kernel), then is killed and
    /// named. A boot whose agent is not ready by
    /// the boot deadline (5x the slowest of the last 20 boots measured here,
    /// at least 10 s, at most half this) is ended sooner and booted again.
    #[arg(long, default_value_t = DEFAULT_VM_TIMEOUT_SECS)]
    timeout: u64,
    /// Run the selected scenarios N times, in rounds, each run in a fresh
    /// VM of its own, restored from its kernel's template or booted (with
    /// --boot-each on the debug kernel, a booted VM runs several scenarios
    /// of one round, never one scenario twice). The report then has a line per
    /// scenario: its runs, passed and failed runs, flaky rounds and the
    /// boots the harness retried (on the race kernel, also how many runs
    /// saw a data race in the subject), and each failing scenario's first
    /// failure in full, with where every failed run's logs are kept (the
    /// logs of passing runs are not, without --keep-logs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    repeat: Option<u32>,
    /// Stop after the first round that is not a clean pass: a run that
    /// failed (its retries still run, to tell flaky from failed), or a boot
    /// the harness retried. With --repeat N, after N rounds at most; alone,
    /// whenever that happens. The report says how many rounds ran.
    #[arg(long)]
    until_fail: bool,
    /// Run a failed scenario again, in a fresh VM, up to N times within its
    /// round; one that then passes is FLAKY, never a pass (exit code 3).
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// The harness's own test of flaky detection: a counter file, and the
    /// VMs that make its count odd fail their first scenario on purpose.
    #[arg(long, value_name = "FILE", hide = true)]
    fail_every_other: Option<PathBuf>,
    #[command(flatten)]
    kernel: KernelArgs,
}

impl RunArgs {
    /// How the selected scenarios are repeated: once, without retries, unless asked.
    fn plan(&self) -> Plan {
        let count = self.repeat.map(|count| count as usize);
        let rounds = match (self.until_fail, count) {
            (true, at_most) => Rounds::UntilFail { at_most },
            (false, count) => Rounds::Fixed(count.unwrap_or(1)),
        };
        Plan::new(rounds, self.retries as usize)
    }
}

/// The command line, with `--help` ending in every environment variable
/// an option reads (collected from the options themselves, so none is
/// missing).
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let command = Cli::command();
    let list = harness::config::environment_help(&command);
    let matches = command.after_help(list).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
}

/// Whether progress is plain lines only (`--ci`, or `CI` set).
static PLAIN_PROGRESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Where the library's progress goes: stderr, live on a terminal.
fn progress() -> Progress {
    harness::view::stderr_progress(PLAIN_PROGRESS.get().copied().unwrap_or(false))
}

fn main() -> ExitCode {
    harness::view::show_diagnostics();
    let cli = parse();
    cli.env.settings().install();
    let _ = PLAIN_PROGRESS.set(cli.env.ci);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `harness new`: writes the project and says what to do next.
fn new_project(path: &Path, kind: &new::Kind, source: &new::HarnessSource) -> Result<ExitCode> {
    let written = new::scaffold(path, kind, source)?;
    println!("wrote {} files in {}; next:", written.len(), path.display());
    println!("  cd {}", path.display());
    println!(
        "  cargo nextest run      # builds what it needs; fails only because the snapshots are new"
    );
    println!("  cargo insta review     # read each snapshot, accept it (or: cargo insta accept)");
    println!("  cargo nextest run      # green");
    if !source.action_known {
        // A workflow on GitHub needs the harness from GitHub too.
        println!(
            "The workflow (.github/workflows/vm-tests.yml) calls the harness's action as {}: \
             put the harness's GitHub repository in place of OWNER/REPO there, and depend on \
             it by git in Cargo.toml (or scaffold with --harness-git URL)",
            source.action
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::New {
            path,
            module,
            kernel_type,
            name,
            harness_path,
            harness_git,
        } => {
            let kind = new::kind(module, kernel_type, name, &path)?;
            let source = new::harness_source(harness_git, harness_path)?;
            new_project(&path, &kind, &source)
        }
        Command::Setup { allow_remove } => {
            setup::install(&setup::Consent::allow_remove(allow_remove))?;
            eprintln!("[harness] everything the harness needs is installed");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_scenarios(args),
        Command::Verifier { kernel } => verifier(kernel),
        Command::Build { keep_going, kernel } => build(&kernel, keep_going),
        Command::Bench {
            runs,
            cold_kernel,
            scenario,
            baseline,
            kernel_types_cost,
            kernel,
        } => bench(
            runs,
            (cold_kernel, kernel_types_cost),
            scenario,
            baseline,
            &kernel,
        ),
        Command::CacheKey(kernel) => {
            let cache = paths::cache_dir()?;
            let recipe = kernel.one("cache-key")?.recipe(&cache, &discover()?)?;
            println!("{}", recipe.key(&cache)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache { command } => run_cache(command),
        Command::Exec {
            module,
            gdb,
            timeout,
            kernel,
            command,
        } => {
            let how = StepIn::default()
                .modules(module)
                .gdb(gdb)
                .timeout(Duration::from_secs(timeout));
            exec(command, &how, &kernel)
        }
        Command::Shell {
            scenario,
            gdb,
            kernel,
        } => shell(scenario, gdb, &kernel),
        Command::Vng { scenario, kernel } => {
            let catalogue = discover()?;
            catalogue.check(&scenario)?;
            let artifacts = prepare(&kernel.one("vng")?, &catalogue, &progress())?;
            println!("{}", vng::vng_command(&artifacts, &scenario)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every scenario on each kernel, then the verifier's cost of each program
/// by kernel, and each failure (a budget exceeded among them).
fn verifier(kernel: KernelArgs) -> Result<ExitCode> {
    setup::ensure()?;
    let catalogue = discover()?;
    let names = catalogue.names();
    let args = RunArgs {
        scenarios: Vec::new(),
        list: false,
        json: false,
        keep_logs: false,
        no_snapshots: false,
        jobs: None,
        scenarios_per_vm: None,
        timeout: DEFAULT_VM_TIMEOUT_SECS,
        repeat: None,
        until_fail: false,
        retries: 0,
        fail_every_other: None,
        kernel,
    };
    let mut runs = Vec::new();
    for options in args.kernel.options() {
        runs.push(run_on_kernel(&args, &options, &catalogue, &names)?);
    }
    let rows: Vec<Vec<&Row>> = runs.iter().map(|run| run.repeated.first_rows()).collect();
    let columns: Vec<_> = (runs.iter().zip(&rows))
        .map(|(run, rows)| (&run.info, &rows[..]))
        .collect();
    print!("{}", report::render_verifier_table(&columns));
    for (run, rows) in runs.iter().zip(&rows) {
        print!("{}", report::render_failures(rows, &run.artifacts));
    }
    let passed = rows.iter().flatten().all(|row| row.passed());
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The subjects of the workspace the harness is run in, built for the guest.
fn discover() -> Result<Catalogue> {
    let dir = std::env::current_dir().context("finding the current directory")?;
    catalogue::discover(&dir, &progress())
}

/// `harness exec`: CMD in a VM, leaving with its exit code.
fn exec(command: Vec<String>, how: &StepIn, kernel: &KernelArgs) -> Result<ExitCode> {
    let artifacts = prepare(&kernel.one("exec")?, &discover()?, &progress())?;
    Ok(exit_with(show_ended(step_in::exec(
        &artifacts, command, how,
    )?)))
}

fn shell(scenario: Option<String>, gdb: bool, kernel: &KernelArgs) -> Result<ExitCode> {
    let catalogue = discover()?;
    if let Some(name) = &scenario {
        catalogue.check(name)?;
    }
    let artifacts = prepare(&kernel.one("shell")?, &catalogue, &progress())?;
    let how = StepIn::default().modules(true).gdb(gdb);
    Ok(exit_with(show_ended(step_in::shell(
        &artifacts, scenario, &how,
    )?)))
}

/// A stepped-in command's report and error on stderr; its exit code.
fn show_ended(ended: step_in::Ended) -> i32 {
    if let Some(report) = &ended.report {
        eprint!("{report}");
    }
    if let Some(error) = &ended.error {
        eprintln!("error: {error}");
    }
    ended.code
}

fn bench(
    runs: usize,
    (cold_kernel, kernel_types_cost): (bool, bool),
    scenario: Option<String>,
    baseline: Vec<String>,
    kernel: &KernelArgs,
) -> Result<ExitCode> {
    setup::ensure()?;
    let catalogue = discover()?;
    let scenario = match scenario {
        Some(name) => name,
        None => catalogue
            .names()
            .into_iter()
            .next()
            .context("no scenario to time: the workspace declares none")?,
    };
    let dir = std::env::current_dir().context("finding the current directory")?;
    let options = harness_host::bench::BenchOptions::new(scenario, dir)
        .runs(runs)
        .cold_kernel(cold_kernel)
        .baseline(baseline)
        .kernel_types_cost(kernel_types_cost)
        .progress(progress());
    print!(
        "{}",
        harness_host::bench::run(&kernel.one("bench")?, &catalogue, &options)?
    );
    Ok(ExitCode::SUCCESS)
}

/// A command's exit code as ours (codes above 255 wrap, as a shell's do).
fn exit_with(code: i32) -> ExitCode {
    ExitCode::from(code.rem_euclid(256) as u8)
}

/// `harness build`: everything each kernel needs; a subject whose BPF did
/// not build fails it at the end, unless `keep_going`.
fn build(kernel: &KernelArgs, keep_going: bool) -> Result<ExitCode> {
    setup::ensure()?;
    let catalogue = discover()?;
    let mut unbuilt = Vec::new();
    for options in kernel.options() {
        let artifacts = prepare(&options, &catalogue, &progress())?;
        print_built(&artifacts);
        let version = &artifacts.kernel.version;
        unbuilt.extend(artifacts.unbuilt.iter().map(|(subject, why)| {
            format!("{subject}'s BPF objects did not build against kernel {version}:\n{why}")
        }));
    }
    match unbuilt.is_empty() || keep_going {
        true => Ok(ExitCode::SUCCESS),
        false => bail!("{}", unbuilt.join("\n")),
    }
}

fn print_built(artifacts: &Artifacts) {
    let kernel = &artifacts.kernel;
    println!(
        "kernel {} ({} flavour, {})",
        kernel.version,
        kernel.flavour.name(),
        kernel.key
    );
    println!("  bzImage  {}", kernel.bzimage.display());
    println!("  vmlinux  {}", kernel.vmlinux.display());
    for (name, path) in &artifacts.modules {
        println!("module     {name}: {}", path.display());
    }
    for subject in &artifacts.catalogue.subjects {
        println!(
            "subject    {}: {}",
            subject.info.name,
            subject.binary.display()
        );
    }
}

fn run_cache(command: CacheCommand) -> Result<ExitCode> {
    let cache = paths::cache_dir()?;
    match command {
        CacheCommand::List => print!("{}", report::render_cache(&cache::entries(&cache)?, &cache)),
        CacheCommand::Prune { keep, max_size } => {
            let target = match (keep, max_size) {
                (Some(keep), _) => Target::Newest(keep),
                (None, Some(size)) => Target::Bytes(cache::parse_size(&size)?),
                (None, None) => bail!("say what to keep: --keep N or --max-size SIZE"),
            };
            let said = cache::prune(&cache, target, None)?;
            if said.is_empty() {
                println!("nothing to remove");
            }
            for line in said {
                println!("{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One kernel's share of a run.
struct KernelRun {
    artifacts: Artifacts,
    info: KernelInfo,
    repeated: Repeated,
}

fn run_scenarios(args: RunArgs) -> Result<ExitCode> {
    setup::ensure()?;
    let catalogue = discover()?;
    if args.list {
        print!("{}", list(&catalogue));
        return Ok(ExitCode::SUCCESS);
    }
    for name in &args.scenarios {
        catalogue.check(name)?;
    }
    let names: Vec<String> = if args.scenarios.is_empty() {
        catalogue.names()
    } else {
        args.scenarios.clone()
    };
    let start = Instant::now();
    let mut runs = Vec::new();
    for options in args.kernel.options() {
        runs.push(run_on_kernel(&args, &options, &catalogue, &names)?);
    }
    let plan = args.plan();
    if args.json {
        println!("{}", render_json(&runs, plan));
    } else {
        print_report(&runs, plan);
        if args.no_snapshots {
            println!(
                "snapshots not compared (--no-snapshots): each pass is the scenario's \
                 expectations alone"
            );
        }
        println!("total {:.1}s", start.elapsed().as_secs_f64());
    }
    let verdict = runs.iter().map(|run| run.repeated.verdict()).max();
    Ok(ExitCode::from(
        verdict.map_or(repeat::exit::PASSED, |verdict| verdict.exit_code()),
    ))
}

/// Every kernel's results as JSON: each row, or with repeats each
/// scenario's figures and runs.
fn render_json(runs: &[KernelRun], plan: Plan) -> String {
    if plan.repeats() {
        let kernels: Vec<_> = runs.iter().map(|run| (&run.info, &run.repeated)).collect();
        return report::repeat::render_json(&kernels, plan);
    }
    let rows: Vec<Vec<&Row>> = runs.iter().map(|run| run.repeated.first_rows()).collect();
    let kernels: Vec<_> = (runs.iter().zip(&rows))
        .map(|(run, rows)| (&run.info, &rows[..]))
        .collect();
    report::render_json(&kernels)
}

/// One line per scenario: subject, scenario, summary.
fn list(catalogue: &Catalogue) -> String {
    let names = catalogue.names();
    let width = report::name_width(names.iter().map(String::as_str));
    let mut text = String::new();
    for (subject, scenario) in catalogue.scenarios() {
        text.push_str(&format!(
            "{:<12} {:<width$} {}\n",
            subject.info.name, scenario.name, scenario.summary
        ));
    }
    text
}

fn run_on_kernel(
    args: &RunArgs,
    options: &PrepareOptions,
    catalogue: &Catalogue,
    names: &[String],
) -> Result<KernelRun> {
    let start = Instant::now();
    let artifacts = prepare(options, catalogue, &progress())?;
    let info = KernelInfo::of(&artifacts);
    eprintln!(
        "[harness] kernel {} ({} flavour) ready to boot after {:.1}s",
        info.version,
        info.flavour,
        start.elapsed().as_secs_f64()
    );
    let mut suite = SuiteOptions::for_flavour(options.flavour);
    suite.vm = (suite.vm.clone())
        .timeout(Duration::from_secs(args.timeout))
        .keep_logs(args.keep_logs)
        .fail_every_other(args.fail_every_other.clone());
    suite.jobs = args.jobs.unwrap_or(suite.jobs);
    suite.per_vm = args.scenarios_per_vm.map_or(suite.per_vm, usize::from);
    suite.snapshots = !args.no_snapshots;
    let width = report::name_width(names.iter().map(String::as_str));
    let plan = args.plan();
    let repeated = repeat::run_repeated(&artifacts, names, &suite, plan, |at, row| {
        eprintln!("{}", progress_line(&info, width, (plan, at), row));
    });
    Ok(KernelRun {
        artifacts,
        info,
        repeated,
    })
}

/// The line a finished run gets while the others run: its verdict and
/// time, which round and retry it was when repeating, and the boot the
/// harness retried before it (with the first boot's logs).
fn progress_line(info: &KernelInfo, width: usize, (plan, at): (Plan, RunAt), row: &Row) -> String {
    let snapshot = match row.snapshot_word() {
        "matched" | "not_compared" | "-" => String::new(),
        word => format!(", snapshot {word}"),
    };
    let mut line = format!(
        "[harness] {} {:<width$} {} ({:.1}s{snapshot})",
        info.version,
        row.scenario,
        row.verdict(),
        row.wall.as_secs_f64()
    );
    if plan.repeats() {
        line.push_str(&format!(" round {}", at.round));
        if let Rounds::Fixed(count)
        | Rounds::UntilFail {
            at_most: Some(count),
        } = plan.rounds
        {
            line.push_str(&format!("/{count}"));
        }
        if at.attempt > 0 {
            line.push_str(&format!(", retry {}/{}", at.attempt, plan.retries));
        }
    }
    if let Some(boot) = row.retried_boot() {
        line.push_str(&format!(
            "; its first boot {} before the agent was ready and was retried (logs: {})",
            boot.cause.as_str(),
            boot.logs.display()
        ));
    }
    line
}

fn print_report(runs: &[KernelRun], plan: Plan) {
    for run in runs {
        print!("{}", report::render_header(&run.info));
    }
    if plan.repeats() {
        for run in runs {
            if runs.len() > 1 {
                println!("\n{} ({} flavour):", run.info.version, run.info.flavour);
            }
            let races = run.info.checks_races();
            print!("{}", report::repeat::render_table(&run.repeated, races));
            print!("{}", report::repeat::render_rounds(&run.repeated, plan));
            print!(
                "{}",
                report::repeat::render_failures(&run.repeated, &run.artifacts)
            );
        }
        return;
    }
    let rows: Vec<Vec<&Row>> = runs.iter().map(|run| run.repeated.first_rows()).collect();
    if let [rows] = &rows[..] {
        print!("{}", report::render_table(rows));
    } else {
        let columns: Vec<_> = (runs.iter().zip(&rows))
            .map(|(run, rows)| (&run.info, &rows[..]))
            .collect();
        print!("{}", report::render_matrix(&columns));
    }
    for (run, rows) in runs.iter().zip(&rows) {
        print!("{}", report::render_failures(rows, &run.artifacts));
        print!("{}", report::render_retried_boots(rows));
    }
}
