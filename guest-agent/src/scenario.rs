//! What a subject is and what a scenario is. A subject's crate declares one
//! [`Subject`] (its module, loader, scenarios, fragments, normalisation and
//! snapshots) with these builders; the host learns of it through
//! [`Subject::info`] and never by name.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use harness_wire::catalogue::{
    BpfObjectInfo, BpfSource, ModuleInfo, ScenarioInfo, SubjectInfo, Topology,
};
use harness_wire::kernel_type::{ExitKind, KernelType};

use crate::runtime::context::Context;
use crate::runtime::module::ModuleSpec;

/// A subject's loader: its name, as a scenario's actions show it, and its
/// entry point, which gets the words after `__loader` (the subject's binary,
/// re-executed by its own scenarios).
#[derive(Debug, Clone, Copy)]
pub struct Loader {
    /// As the actions show it: `loader once --message ...`.
    pub name: &'static str,
    /// The loader's `main`; `None` when the binary was built without it
    /// (the host runner is: see the `loader` feature in the harness guide's
    /// loaders chapter).
    pub main: Option<fn(Vec<OsString>) -> ExitCode>,
}

/// One struct_ops user: a module that defines a struct_ops type, or a BPF
/// implementation of a type the kernel defines, with its scenarios.
#[derive(Debug)]
pub struct Subject {
    /// As `run --list` shows it.
    pub name: &'static str,
    /// One line on what it is.
    pub(crate) summary: &'static str,
    /// The subject crate's directory (`env!("CARGO_MANIFEST_DIR")`): the
    /// module, fragments and snapshots are found relative to it.
    pub(crate) manifest_dir: &'static str,
    /// The module that defines the struct_ops type, unless the kernel does.
    pub(crate) module: Option<ModuleSpec>,
    /// The loader its scenarios run.
    pub loader: Loader,
    /// Its scenarios, in the order `run --list` shows them.
    pub scenarios: &'static [Scenario],
    /// Kernel config fragments it needs beyond the core's, relative to `manifest_dir`.
    pub fragments: &'static [&'static str],
    /// `(regex, replacement)` for output that differs between runs, after the core's rules.
    pub(crate) normalise: &'static [(&'static str, &'static str)],
    /// Where its snapshots live, relative to `manifest_dir`.
    pub(crate) snapshots: &'static str,
    /// Its verifier budget (`PROGRAM LIMIT` lines), relative to `manifest_dir`.
    pub(crate) verifier_budget: Option<&'static str>,
    /// The struct_ops type the kernel defines that it implements, if any.
    pub(crate) kernel_type: Option<KernelType>,
    /// Prefixes of kernel log lines that belong to it whoever prints them.
    pub(crate) log_prefixes: &'static [&'static str],
    /// BPF objects the harness compiles against each kernel.
    pub(crate) bpf_objects: &'static [BpfObject],
}

/// A BPF object the harness compiles against each kernel a subject runs on
/// (that kernel's `vmlinux.h`, libbpf headers and, for a type the kernel
/// defines, its headers), which its loader opens by name
/// (`harness::loader::object`): for programs that need the kernel's own
/// types, and for code nobody here wrote, compiled from the kernel's source.
#[derive(Debug, Clone, Copy)]
pub struct BpfObject {
    source: ObjectSource,
    includes: &'static [&'static str],
}

#[derive(Debug, Clone, Copy)]
enum ObjectSource {
    Kernel(&'static str),
    Subject(&'static str),
}

impl BpfObject {
    /// A source of the kernel under test, relative to its top
    /// (`tools/sched_ext/scx_simple.bpf.c`).
    pub const fn from_kernel(path: &'static str) -> Self {
        BpfObject {
            source: ObjectSource::Kernel(path),
            includes: &[],
        }
    }

    /// A source of the subject's crate, relative to it (`src/bpf/sched.bpf.c`).
    pub const fn own(path: &'static str) -> Self {
        BpfObject {
            source: ObjectSource::Subject(path),
            includes: &[],
        }
    }

    /// Directories of the subject's crate it includes from, beyond its own.
    pub const fn includes(self, dirs: &'static [&'static str]) -> Self {
        BpfObject {
            includes: dirs,
            ..self
        }
    }

    /// What the host needs to build it; `dir` is the subject's crate.
    pub(crate) fn info(&self, dir: &Path) -> BpfObjectInfo {
        let path = match self.source {
            ObjectSource::Kernel(path) | ObjectSource::Subject(path) => Path::new(path),
        };
        let file = path.file_name().map(|name| name.to_string_lossy());
        let name = file.as_deref().unwrap_or("");
        let name = name.strip_suffix(".bpf.c").unwrap_or(name);
        let name = name.strip_suffix(".c").unwrap_or(name).to_owned();
        let source = match self.source {
            ObjectSource::Kernel(path) => BpfSource::Kernel(path.into()),
            ObjectSource::Subject(path) => BpfSource::Subject(dir.join(path)),
        };
        BpfObjectInfo {
            name,
            source,
            includes: self
                .includes
                .iter()
                .map(|include| dir.join(include))
                .collect(),
        }
    }
}

impl Subject {
    /// A subject with no module, no scenarios yet and snapshots in `tests/snapshots`.
    pub const fn new(
        name: &'static str,
        summary: &'static str,
        manifest_dir: &'static str,
    ) -> Self {
        Subject {
            name,
            summary,
            manifest_dir,
            module: None,
            loader: Loader {
                name: "loader",
                main: None,
            },
            scenarios: &[],
            fragments: &[],
            normalise: &[],
            snapshots: "tests/snapshots",
            verifier_budget: None,
            kernel_type: None,
            log_prefixes: &[],
            bpf_objects: &[],
        }
    }

    /// The struct_ops type the kernel defines that it implements: the core
    /// then knows what its healthy and ejected states look like and which
    /// kernel lines are its (sched_ext's, whoever prints them).
    pub const fn implements(self, kernel_type: KernelType) -> Self {
        Subject {
            kernel_type: Some(kernel_type),
            ..self
        }
    }

    /// Prefixes of kernel log lines that belong to the subject whichever
    /// task, kthread or interrupt prints them: they join its steps' output
    /// (and snapshots), as its type's own do.
    pub const fn log_prefixes(self, prefixes: &'static [&'static str]) -> Self {
        Subject {
            log_prefixes: prefixes,
            ..self
        }
    }

    /// BPF objects the harness compiles against each kernel it runs on.
    pub const fn bpf_objects(self, objects: &'static [BpfObject]) -> Self {
        Subject {
            bpf_objects: objects,
            ..self
        }
    }

    /// A budget file: a program whose verifier cost exceeds its line fails
    /// the scenario that loaded it, with both figures.
    pub const fn verifier_budget(self, path: &'static str) -> Self {
        Subject {
            verifier_budget: Some(path),
            ..self
        }
    }

    /// The module that defines the subject's struct_ops type.
    pub const fn module(self, module: ModuleSpec) -> Self {
        Subject {
            module: Some(module),
            ..self
        }
    }

    /// The loader (`harness::loader!` gives `main` only to the build that has it).
    pub const fn loader(
        self,
        name: &'static str,
        main: Option<fn(Vec<OsString>) -> ExitCode>,
    ) -> Self {
        Subject {
            loader: Loader { name, main },
            ..self
        }
    }

    /// Its scenarios.
    pub const fn scenarios(self, scenarios: &'static [Scenario]) -> Self {
        Subject { scenarios, ..self }
    }

    /// Kernel config fragments beyond the core's, relative to the crate.
    pub const fn fragments(self, fragments: &'static [&'static str]) -> Self {
        Subject { fragments, ..self }
    }

    /// Normalisation rules of its own.
    pub const fn normalise(self, normalise: &'static [(&'static str, &'static str)]) -> Self {
        Subject { normalise, ..self }
    }

    /// Where its snapshots live, relative to the crate.
    pub const fn snapshots(self, snapshots: &'static str) -> Self {
        Subject { snapshots, ..self }
    }

    /// What the host needs to know of it.
    pub fn info(&self) -> SubjectInfo {
        let dir = Path::new(self.manifest_dir);
        SubjectInfo {
            name: self.name.to_owned(),
            summary: self.summary.to_owned(),
            module: self.module.map(|module| ModuleInfo {
                name: module.name.to_owned(),
                dir: dir.join(module.dir),
            }),
            scenarios: self.scenarios.iter().map(Scenario::info).collect(),
            fragments: self.fragments.iter().map(|path| dir.join(path)).collect(),
            snapshots: dir.join(self.snapshots),
            normalise: self
                .normalise
                .iter()
                .map(|(pattern, replacement)| ((*pattern).to_owned(), (*replacement).to_owned()))
                .collect(),
            kernel_type: self.kernel_type,
            log_prefixes: self.log_prefixes.iter().map(|p| (*p).to_owned()).collect(),
            bpf_objects: self.bpf_objects.iter().map(|o| o.info(dir)).collect(),
        }
    }
}

/// One scenario: its name, what it proves, what it needs, and its steps and
/// expectations (`run`).
#[derive(Debug)]
pub struct Scenario {
    /// Unique across the subjects of a run.
    pub name: &'static str,
    /// What it proves.
    pub(crate) summary: &'static str,
    /// Whether the subject's module is loaded before `run` starts (and its
    /// unloading checked at the end).
    pub(crate) needs_module: bool,
    /// The steps and their expectations.
    pub(crate) run: fn(&mut Context) -> Result<()>,
    /// Kernel series on which the kernel's own output differs, and why: such
    /// a series has a snapshot of its own (`<scenario>@<series>.snap`).
    pub(crate) differs_on: &'static [(&'static str, &'static str)],
    /// Programs (BPF function names) that must run during the scenario.
    pub(crate) exercises: &'static [&'static str],
    /// Whether it provokes races, so that on a KCSAN kernel the agent
    /// samples memory accesses densely while it runs.
    pub(crate) hunts_races: bool,
    /// The ejection the kernel must make during it (its kind, and a regex
    /// its message must match); any other ejection fails it.
    pub(crate) expected_exit: Option<(ExitKind, &'static str)>,
    /// Its VM's vCPUs and NUMA nodes.
    pub topology: Topology,
}

impl Scenario {
    /// A scenario that starts with no module loaded.
    pub const fn new(
        name: &'static str,
        summary: &'static str,
        run: fn(&mut Context) -> Result<()>,
    ) -> Self {
        Scenario {
            name,
            summary,
            needs_module: false,
            run,
            differs_on: &[],
            exercises: &[],
            hunts_races: false,
            expected_exit: None,
            topology: Topology::DEFAULT,
        }
    }

    /// The same, expecting the kernel to eject its subject's implementation
    /// during it, with `kind` and a message matching the regex `message`
    /// (sched_ext's exit kinds). The scenario fails if it does not; without
    /// this, any ejection fails it, naming the kind and the reason.
    pub const fn expects_exit(self, kind: ExitKind, message: &'static str) -> Self {
        Scenario {
            expected_exit: Some((kind, message)),
            ..self
        }
    }

    /// The same, in a VM of `cpus` vCPUs in `nodes` NUMA nodes (default
    /// 2 in 1); each vCPU costs a host thread under TCG.
    pub const fn topology(self, cpus: u16, nodes: u16) -> Self {
        Scenario {
            topology: Topology {
                cpus,
                nodes,
                ..self.topology
            },
            ..self
        }
    }

    /// The same, in a VM of `mib` MiB of RAM (default 512). A BPF arena on
    /// the debug kernel needs it: KASAN backs the 4 GiB of kernel address
    /// space an arena reserves with 512 MiB of shadow at once.
    pub const fn memory(self, mib: u32) -> Self {
        Scenario {
            topology: Topology {
                memory_mib: mib,
                ..self.topology
            },
            ..self
        }
    }

    /// The same, marked as a scenario that provokes races: on the race
    /// kernel (KCSAN) one memory access in 100 is watched while it runs,
    /// instead of KCSAN's one in 4000, which suits hours of fuzzing, not
    /// seconds of a scenario.
    pub const fn hunts_races(self) -> Self {
        Scenario {
            hunts_races: true,
            ..self
        }
    }

    /// The same, failing unless each of these programs ran at least once
    /// (as its loader reports them: `harness::loader::report_programs`).
    pub const fn exercises(self, programs: &'static [&'static str]) -> Self {
        Scenario {
            exercises: programs,
            ..self
        }
    }

    /// The same, with kernel series whose output differs, and why.
    pub const fn differs_on(self, series: &'static [(&'static str, &'static str)]) -> Self {
        Scenario {
            differs_on: series,
            ..self
        }
    }

    /// The same, with the subject's module loaded first.
    pub const fn with_module(self) -> Self {
        Scenario {
            needs_module: true,
            ..self
        }
    }

    /// What the host needs to know of it.
    pub fn info(&self) -> ScenarioInfo {
        ScenarioInfo {
            name: self.name.to_owned(),
            summary: self.summary.to_owned(),
            needs_module: self.needs_module,
            differs_on: self
                .differs_on
                .iter()
                .map(|(series, why)| ((*series).to_owned(), (*why).to_owned()))
                .collect(),
            topology: self.topology,
        }
    }
}

/// Finds `name` among the scenarios of `subjects`.
pub(crate) fn find<'a>(
    subjects: &[&'a Subject],
    name: &str,
) -> Option<(&'a Subject, &'a Scenario)> {
    subjects.iter().find_map(|subject| {
        let scenario = subject
            .scenarios
            .iter()
            .find(|scenario| scenario.name == name)?;
        Some((*subject, scenario))
    })
}

/// `no scenario named X; the scenarios are: ...`
pub(crate) fn unknown(subjects: &[&Subject], name: &str) -> String {
    let names: Vec<&str> = subjects
        .iter()
        .flat_map(|subject| subject.scenarios.iter().map(|scenario| scenario.name))
        .collect();
    format!(
        "no scenario named {name}; the scenarios are: {}",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &mut Context) -> Result<()> {
        Ok(())
    }

    const SCENARIOS: &[Scenario] = &[
        Scenario::new("a", "first", nothing),
        Scenario::new("b", "second", nothing)
            .with_module()
            .differs_on(&[("7.3", "7.x words it otherwise")]),
    ];

    const SUBJECT: Subject = Subject::new("s", "a subject", "/src/s")
        .module(ModuleSpec::new("m", "kmod/m"))
        .scenarios(SCENARIOS)
        .fragments(&["images/s.config"]);

    #[test]
    fn the_host_learns_paths_relative_to_the_subjects_crate() {
        let info = SUBJECT.info();
        assert_eq!(info.module.unwrap().dir, Path::new("/src/s/kmod/m"));
        assert_eq!(info.fragments, [Path::new("/src/s/images/s.config")]);
        assert_eq!(info.snapshots, Path::new("/src/s/tests/snapshots"));
        let b = &info.scenarios[1];
        assert!(b.needs_module);
        assert_eq!(b.difference_on("7.3"), Some("7.x words it otherwise"));
        assert_eq!(b.difference_on("6.12"), None);
    }

    #[test]
    fn a_scenario_is_found_by_name_or_named_among_the_others() {
        let subjects = [&SUBJECT];
        assert_eq!(find(&subjects, "b").unwrap().1.name, "b");
        assert_eq!(
            unknown(&subjects, "c"),
            "no scenario named c; the scenarios are: a, b"
        );
    }
}
