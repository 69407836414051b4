//! What a subject binary declares about itself, as the host reads it: the
//! binary prints it as JSON when run with [`crate::roles::CATALOGUE`], and a
//! test binary hands it over in memory. The host builds and boots from
//! nothing else, so it never needs to know a subject by name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One struct_ops user: its module (if it defines its type in one), its
/// scenarios, and what the host needs to build and snapshot them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Unique across the subjects of one run.
    pub name: String,
    /// What it proves.
    pub summary: String,
    /// Whether the subject's module is loaded before it starts.
    pub needs_module: bool,
    /// Kernel series whose output differs, and why: each has a snapshot of its own.
    pub differs_on: Vec<(String, String)>,
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
