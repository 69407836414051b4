//! What a subject binary declares about itself, as the host reads it: the
//! binary prints it as JSON when run with [`crate::roles::CATALOGUE`], and a
//! test binary hands it over in memory. The host builds and boots from
//! nothing else, so it never needs to know a subject by name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::kernel_type::KernelType;

/// One struct_ops user: its module (if it defines its type in one), its
/// scenarios, and what the host needs to build and snapshot them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectInfo {
    /// The subject's name, as `run --list` shows it.
    pub name: String,
    /// One line on what it is.
    pub summary: String,
    /// The module that defines its struct_ops type, unless the kernel does.
    pub module: Option<ModuleInfo>,
    /// Its scenarios, in declaration order.
    pub scenarios: Vec<ScenarioInfo>,
    /// Kernel config fragments it needs beyond the core's (absolute paths).
    pub fragments: Vec<PathBuf>,
    /// Where its snapshots live (absolute).
    pub snapshots: PathBuf,
    /// Its own normalisation rules, `(regex, replacement)`, applied after the core's.
    pub normalise: Vec<(String, String)>,
    /// The struct_ops type the kernel defines that it implements, if it
    /// implements one (a type its module defines is not one of these).
    #[serde(default)]
    pub kernel_type: Option<KernelType>,
    /// Prefixes of kernel log lines that belong to it whoever prints them
    /// (beyond its type's own): they join its steps' output.
    #[serde(default)]
    pub log_prefixes: Vec<String>,
    /// BPF objects the harness compiles against each kernel it runs on.
    #[serde(default)]
    pub bpf_objects: Vec<BpfObjectInfo>,
}

impl SubjectInfo {
    /// Its own log prefixes and its type's.
    pub fn all_log_prefixes(&self) -> Vec<String> {
        let own = self.kernel_type.map_or(&[][..], KernelType::log_prefixes);
        (own.iter().map(|prefix| (*prefix).to_owned()))
            .chain(self.log_prefixes.iter().cloned())
            .collect()
    }
}

/// The environment variable through which a loader learns where the
/// subject's BPF objects, compiled against the running kernel, are.
pub const BPF_DIR_ENV: &str = "HARNESS_BPF_DIR";

/// A BPF object the harness compiles against each kernel it runs on, with
/// that kernel's `vmlinux.h` and libbpf headers (and its type's headers,
/// such as sched_ext's `scx/common.bpf.h`), so it is never built against
/// the wrong kernel: `<name>.bpf.o` in the directory [`BPF_DIR_ENV`] names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfObjectInfo {
    /// `<name>.bpf.o`: the source's name without `.bpf.c`.
    pub name: String,
    /// Its source.
    pub source: BpfSource,
    /// Directories it includes beyond the kernel's headers (absolute).
    pub includes: Vec<PathBuf>,
}

/// Where a BPF object's source is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BpfSource {
    /// In the source tree of the kernel under test, relative to its top
    /// (`tools/sched_ext/scx_simple.bpf.c`): code nobody here wrote.
    Kernel(PathBuf),
    /// In the subject's crate (absolute).
    Subject(PathBuf),
}

/// A module a subject builds against the harness's kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleInfo {
    /// As rmmod and /sys/module know it; the file is `<name>.ko`.
    pub name: String,
    /// Its sources (Kbuild and all), absolute.
    pub dir: PathBuf,
}

impl ModuleInfo {
    /// `<name>.ko`.
    pub fn file_name(&self) -> String {
        format!("{}.ko", self.name)
    }
}

/// One scenario, as the host needs to know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Unique across the subjects of one run.
    pub name: String,
    /// What it proves.
    pub summary: String,
    /// Whether the subject's module is loaded before it starts.
    pub needs_module: bool,
    /// Kernel series whose output differs, and why: each has a snapshot of its own.
    pub differs_on: Vec<(String, String)>,
    /// The VM it runs in: vCPUs and NUMA nodes.
    #[serde(default)]
    pub topology: Topology,
}

/// A VM's CPUs, NUMA nodes and RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Topology {
    /// vCPUs.
    pub cpus: u16,
    /// NUMA nodes, the vCPUs and memory shared out evenly among them.
    pub nodes: u16,
    /// RAM in MiB, 0 for the harness's default (its `VmOptions`).
    #[serde(default)]
    pub memory_mib: u32,
}

impl Topology {
    /// Two vCPUs in one node and the default RAM: what every scenario gets
    /// unless it says otherwise.
    pub const DEFAULT: Topology = Topology {
        cpus: 2,
        nodes: 1,
        memory_mib: 0,
    };
}

impl Default for Topology {
    fn default() -> Self {
        Topology::DEFAULT
    }
}

impl std::fmt::Display for Topology {
    /// `2 cpus`, `4 cpus/2 nodes`, or with RAM of its own `2 cpus/2048M`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.nodes {
            0 | 1 => write!(f, "{} cpus", self.cpus)?,
            nodes => write!(f, "{} cpus/{nodes} nodes", self.cpus)?,
        }
        match self.memory_mib {
            0 => Ok(()),
            memory => write!(f, "/{memory}M"),
        }
    }
}

impl ScenarioInfo {
    /// Why this scenario's output differs on `series`, if it does.
    pub fn difference_on(&self, series: &str) -> Option<&str> {
        self.differs_on
            .iter()
            .find(|(on, _)| on == series)
            .map(|(_, why)| why.as_str())
    }
}
