//! The harness's configuration from its command line and environment, in
//! one place: clap reads every environment variable (so `harness --help`
//! lists each one), for the `harness` command and for a subject's test
//! binary alike; the library only takes the values.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use harness_host::artifacts::PrepareOptions;
use harness_host::kernel::source::KernelSpec;
use harness_host::kernel::Flavour;
use harness_host::settings::Settings;

/// Which kernel: the options of `run`, `build`, `exec` and the others.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelArgs {
    /// The kernel: a Debian series (6.12, the default; 7.3; ...), fetched from
    /// Debian when not installed, or the path of a kernel tree, built in place.
    /// `run` takes it several times for a matrix.
    #[arg(long = "kernel", value_name = "SPEC", env = "STRUCT_OPS_KERNEL")]
    pub kernels: Vec<KernelSpec>,
    /// A kernel tree, the same as --kernel DIR.
    #[arg(long, value_name = "DIR", env = "STRUCT_OPS_KERNEL_TREE")]
    pub kernel_tree: Option<PathBuf>,
    /// The debug kernel: the default one plus harness/host/images/debug.config (KASAN, KFENCE,
    /// lockdep, RCU and sleep checks, UBSAN, kmemleak).
    #[arg(long, conflicts_with = "race_kernel", env = "STRUCT_OPS_DEBUG_KERNEL",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub debug_kernel: bool,
    /// The race kernel: the default one plus harness/host/images/race.config (KCSAN, which
    /// cannot share a kernel with KASAN).
    #[arg(long, env = "STRUCT_OPS_RACE_KERNEL",
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub race_kernel: bool,
}

impl KernelArgs {
    /// Every kernel asked for, Debian's default series when none is.
    pub fn options(&self) -> Vec<PrepareOptions> {
        let mut specs = self.kernels.clone();
        specs.extend(self.kernel_tree.clone().map(KernelSpec::Tree));
        if specs.is_empty() {
            specs.push(KernelSpec::default());
        }
        let flavour = Flavour::choose(self.debug_kernel, self.race_kernel);
        specs
            .into_iter()
            .map(|kernel| PrepareOptions::new(kernel, flavour))
            .collect()
    }

    /// The one kernel a command that takes one is about.
    pub fn one(&self, command: &str) -> Result<PrepareOptions> {
        let mut options = self.options();
        if options.len() > 1 {
            bail!("`{command}` takes one kernel; `run` takes several --kernel for a matrix");
        }
        Ok(options.remove(0))
    }
}

/// Where the harness keeps things and how it boots: options of every
/// command, each also an environment variable.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EnvArgs {
    /// The cache for kernels, modules, the KVM verdict and tools (default:
    /// $XDG_CACHE_HOME/struct-ops-vmtest, else ~/.cache/struct-ops-vmtest).
    #[arg(long, value_name = "DIR", env = "STRUCT_OPS_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// The cap on the kernel cache, e.g. 30G (the default); least recently
    /// used entries go first.
    #[arg(
        long,
        value_name = "SIZE",
        env = "STRUCT_OPS_CACHE_LIMIT",
        global = true
    )]
    pub cache_limit: Option<String>,
    /// kvm or tcg, to skip the KVM probe.
    #[arg(long, value_name = "ACCEL", env = "STRUCT_OPS_ACCEL", global = true)]
    pub accel: Option<String>,
    /// The virtiofsd to use (it needs --readonly).
    #[arg(long, value_name = "PATH", env = "STRUCT_OPS_VIRTIOFSD", global = true)]
    pub virtiofsd: Option<PathBuf>,
    /// Every boot message on the VM console.
    #[arg(long, env = "STRUCT_OPS_VERBOSE_CONSOLE", global = true,
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub verbose_console: bool,
    /// Boot each scenario's VM instead of restoring it from the saved
    /// template of its kernel (a booted, ready guest).
    #[arg(long, env = "STRUCT_OPS_BOOT_EACH", global = true,
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub boot_each: bool,
    /// Progress as plain lines, never a live one (CI services set it).
    #[arg(long, env = "CI", global = true, hide_short_help = true,
          action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub ci: bool,
}

impl EnvArgs {
    /// The library's settings: these, the cache directory resolved.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::new();
        settings.cache_dir = match &self.cache_dir {
            Some(dir) if !dir.as_os_str().is_empty() => Some(dir.clone()),
            _ => harness_host::paths::cache_dir_from(|name| std::env::var_os(name)).ok(),
        };
        settings.cache_limit = self.cache_limit.clone();
        settings.accel = self.accel.clone();
        settings.virtiofsd = self.virtiofsd.clone();
        settings.verbose_console = self.verbose_console;
        settings.boot_each = self.boot_each;
        settings
    }
}

/// A subject package's own artifacts, for its tests that drive the host
/// directly: its catalogue (`subjects`, in the package at `dir`), and the
/// kernel, modules and guest binary the environment asks for, with the
/// progress on stderr. Panics, naming why, when any of it cannot be had.
#[cfg(feature = "test-support")]
pub fn package_artifacts(
    dir: &std::path::Path,
    package: &str,
    subjects: Vec<harness_wire::catalogue::SubjectInfo>,
) -> harness_host::artifacts::Artifacts {
    let progress = crate::view::stderr_progress(false);
    let catalogue = harness_host::catalogue::of_package(dir, package, subjects, &progress)
        .unwrap_or_else(|err| panic!("{err:#}"));
    let options = from_env().unwrap_or_else(|err| panic!("{err:#}")).0;
    harness_host::artifacts::prepare(&options, &catalogue, &progress)
        .unwrap_or_else(|err| panic!("{err:#}"))
}

/// What a subject's test binary reads: the same options, from the
/// environment alone.
#[derive(Parser, Debug)]
#[command(name = "harness")]
struct FromEnv {
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    env: EnvArgs,
}

/// A test binary's configuration: installs the library's settings from the
/// environment (as the `harness` command reads it) and says which kernel.
pub fn from_env() -> Result<(PrepareOptions, EnvArgs)> {
    let parsed = FromEnv::try_parse_from(["harness"])
        .map_err(|err| anyhow::anyhow!("the harness's environment: {err}"))?;
    parsed.env.settings().install();
    Ok((parsed.kernel.one("the test binary")?, parsed.env))
}

/// `Environment:` and every variable an option of `command` or of its
/// subcommands reads, with the option and its help's first line; then
/// `RUST_LOG`, which chooses the diagnostics shown.
pub fn environment_help(command: &clap::Command) -> String {
    let mut seen = std::collections::BTreeMap::new();
    collect_env(command, &mut seen);
    let mut text = String::from("Environment (each also an option):\n");
    for (name, (option, help)) in &seen {
        text.push_str(&format!("  {name:<28} {option}: {help}\n"));
    }
    text.push_str(&format!(
        "  {:<28} which diagnostics are shown (tracing's filter; default info)",
        "RUST_LOG"
    ));
    text
}

fn collect_env(
    command: &clap::Command,
    seen: &mut std::collections::BTreeMap<String, (String, String)>,
) {
    for arg in command.get_arguments() {
        let Some(name) = arg.get_env() else { continue };
        let option = arg
            .get_long()
            .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"));
        let help = arg
            .get_help()
            .map(|help| help.to_string())
            .unwrap_or_default();
        let first = help
            .split(". ")
            .next()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_owned();
        seen.entry(name.to_string_lossy().into_owned())
            .or_insert((option, first));
    }
    for sub in command.get_subcommands() {
        collect_env(sub, seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_help_lists_every_variable_an_option_reads() {
        let help = environment_help(&FromEnv::command());
        for name in [
            "STRUCT_OPS_KERNEL",
            "STRUCT_OPS_KERNEL_TREE",
            "STRUCT_OPS_DEBUG_KERNEL",
            "STRUCT_OPS_RACE_KERNEL",
            "STRUCT_OPS_CACHE_DIR",
            "STRUCT_OPS_CACHE_LIMIT",
            "STRUCT_OPS_ACCEL",
            "STRUCT_OPS_VIRTIOFSD",
            "STRUCT_OPS_VERBOSE_CONSOLE",
            "CI",
            "RUST_LOG",
        ] {
            assert!(
                help.contains(&format!("  {name} ")),
                "{name} missing from:\n{help}"
            );
        }
        assert!(help.contains("--debug-kernel: The debug kernel"), "{help}");
    }
}
