//! `harness`: builds what is missing, boots the kernel in QEMU and runs the
//! struct_ops scenarios.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use guest_agent::catalogue::{self, SCENARIOS};
use harness::artifacts::{prepare, PrepareOptions};
use harness::kernel::Flavour;
use harness::paths;
use harness::progress::Progress;
use harness::report;
use harness::suite::Row;
use harness::vm::VmOptions;

#[derive(Parser)]
#[command(
    about = "Builds a minimal kernel with BTF, the bpf_testmod module and the BPF loader, \
             boots them in QEMU and runs the struct_ops scenarios",
    long_about = None,
    after_help = "Environment:\n  \
        STRUCT_OPS_CACHE_DIR        cache for kernels, modules, the KVM verdict, tools (default ~/.cache/struct-ops-vmtest)\n  \
        STRUCT_OPS_KERNEL_TREE      kernel tree to build instead of Debian's linux-source-6.12\n  \
        STRUCT_OPS_DEBUG_KERNEL     1 for the debug kernel (as --debug-kernel)\n  \
        STRUCT_OPS_ACCEL            kvm or tcg, to skip the KVM probe\n  \
        STRUCT_OPS_VIRTIOFSD        the virtiofsd to use (needs --readonly)\n  \
        STRUCT_OPS_VERBOSE_CONSOLE  1 for every boot message on the VM console"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build what is missing, boot a VM per scenario, run every scenario (or those named) and report.
    Run(RunArgs),
    /// Build what is missing and print where the kernel, module and guest binaries are.
    Build(BuildArgs),
    /// Measure build, boot and suite times (min/median/max) against their targets, and vng.
    Bench {
        /// Repetitions of each figure.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also build the kernel from scratch once, in a scratch cache (about 7 minutes).
        #[arg(long)]
        cold_kernel: bool,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Print the kernel's cache key (the hash of everything that defines it) without building.
    CacheKey(BuildArgs),
    /// Print the virtme-ng command that runs SCENARIO by hand on the harness's kernel.
    Vng {
        /// The scenario to run (`harness run --list` names them).
        scenario: String,
        #[command(flatten)]
        build: BuildArgs,
    },
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Build this kernel tree instead of Debian's linux-source-6.12 (also: STRUCT_OPS_KERNEL_TREE).
    #[arg(long, value_name = "DIR")]
    kernel_tree: Option<PathBuf>,
    /// The debug kernel: the default one plus images/debug.config (KASAN, KFENCE,
    /// lockdep, RCU and sleep checks); also STRUCT_OPS_DEBUG_KERNEL=1.
    #[arg(long)]
    debug_kernel: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Run only this scenario (repeat for several).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Print the results as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Keep every VM's logs, not only those of failures.
    #[arg(long)]
    keep_logs: bool,
    /// How many VMs run at a time.
    #[arg(long, default_value_t = harness::suite::DEFAULT_JOBS)]
    jobs: usize,
    /// Per-VM timeout in seconds; a VM still running then is killed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[command(flatten)]
    build: BuildArgs,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_scenarios(args),
        Command::Build(build) => {
            let artifacts = prepare(&prepare_options(&build), &Progress::new())?;
            println!(
                "kernel {} ({})",
                artifacts.kernel.version, artifacts.kernel.key
            );
            println!("  bzImage  {}", artifacts.kernel.bzimage.display());
            println!("  vmlinux  {}", artifacts.kernel.vmlinux.display());
            println!("module     {}", artifacts.kmod.display());
            println!("agent      {}", artifacts.guest.agent.display());
            println!("loader     {}", artifacts.guest.loader.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            runs,
            cold_kernel,
            build,
        } => {
            harness::bench::run(
                &prepare_options(&build),
                &harness::bench::BenchOptions { runs, cold_kernel },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CacheKey(build) => {
            let recipe = prepare_options(&build).recipe()?;
            println!("{}", recipe.key(&paths::cache_dir()?)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Vng { scenario, build } => {
            check_scenario_names(std::slice::from_ref(&scenario))?;
            let artifacts = prepare(&prepare_options(&build), &Progress::new())?;
            println!("{}", harness::vng::vng_command(&artifacts, &scenario));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn prepare_options(build: &BuildArgs) -> PrepareOptions {
    PrepareOptions {
        kernel_tree: build.kernel_tree.clone(),
        flavour: Flavour::choose(build.debug_kernel),
    }
}

fn check_scenario_names(names: &[String]) -> Result<()> {
    for name in names {
        if catalogue::find(name).is_none() {
            bail!(
                "no scenario named {name}; the scenarios are: {}",
                catalogue::names().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

fn run_scenarios(args: RunArgs) -> Result<ExitCode> {
    if args.list {
        for scenario in SCENARIOS {
            println!("{:<24} {}", scenario.name, scenario.summary);
        }
        return Ok(ExitCode::SUCCESS);
    }
    check_scenario_names(&args.scenarios)?;
    let names: Vec<String> = if args.scenarios.is_empty() {
        catalogue::names().map(str::to_owned).collect()
    } else {
        args.scenarios.clone()
    };
    let start = Instant::now();
    let artifacts = prepare(&prepare_options(&args.build), &Progress::new())?;
    eprintln!(
        "[harness] ready to boot after {:.1}s",
        start.elapsed().as_secs_f64()
    );
    let options = VmOptions {
        timeout: Duration::from_secs(args.timeout),
        keep_logs: args.keep_logs,
        ..VmOptions::default()
    };
    let rows = harness::suite::run_many(&artifacts, &names, &options, args.jobs, |row| {
        eprintln!(
            "[harness] {:<24} {} ({:.1}s)",
            row.scenario,
            row.verdict(),
            row.wall.as_secs_f64()
        );
    });
    if args.json {
        println!("{}", report::render_json(&rows, &report::KernelInfo::of(&artifacts)));
    } else {
        print!("{}", report::render_header(&report::KernelInfo::of(&artifacts)));
        print!("{}", report::render_table(&rows));
        print!("{}", report::render_failures(&rows, &artifacts));
        println!("total {:.1}s", start.elapsed().as_secs_f64());
    }
    Ok(if rows.iter().all(Row::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
