//! What a scenario is, and the catalogue of them: every subject (one
//! struct_ops user: its module if it has one, its loader, its scenarios)
//! declares its scenarios once, in its own file under `subjects/`, and the
//! scenario list, `run --list`, the VM tests and the report all derive from
//! those declarations.

use anyhow::Result;

use crate::runtime::context::Context;

/// A kernel module a subject defines its struct_ops type in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSpec {
    /// As rmmod and /sys/module know it; the file is `<name>.ko`.
    pub name: &'static str,
    /// Its sources, relative to the workspace (Kbuild and all).
    pub dir: &'static str,
    /// The variable the subject's loader reads the module's path from, for
    /// the fix it prints when the module is not loaded.
    pub path_env: Option<&'static str>,
    /// What the module prints once loaded, and once unloaded.
    pub loaded_line: &'static str,
    pub unloaded_line: &'static str,
}

impl ModuleSpec {
    pub fn file_name(&self) -> String {
        format!("{}.ko", self.name)
    }
}

/// One struct_ops user.
#[derive(Debug)]
pub struct Subject {
    pub name: &'static str,
    pub summary: &'static str,
    /// The module that defines the struct_ops type, unless the kernel does.
    pub module: Option<ModuleSpec>,
    /// The loader binary (built from bpf/) the scenarios run.
    pub loader: &'static str,
    pub scenarios: &'static [Scenario],
}

/// One scenario: its name, what it proves, what it needs, and its steps and
/// expectations (`run`).
#[derive(Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    /// Whether the subject's module is loaded before `run` starts (and its
    /// unloading checked at the end).
    pub needs_module: bool,
    pub run: fn(&mut Context) -> Result<()>,
    /// Kernel series on which the kernel's own output differs, and why: such
    /// a series has a snapshot of its own (`<scenario>@<series>.snap`).
    pub differs_on: &'static [(&'static str, &'static str)],
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
        }
    }

    /// The same, with kernel series whose output differs, and why.
    pub const fn differs_on(self, series: &'static [(&'static str, &'static str)]) -> Self {
        Scenario {
            differs_on: series,
            ..self
        }
    }

    /// Why this scenario's output differs on `series`, if it does.
    pub fn difference_on(&self, series: &str) -> Option<&'static str> {
        self.differs_on
            .iter()
            .find(|(on, _)| *on == series)
            .map(|(_, why)| *why)
    }

    /// The same, with the subject's module loaded first.
    pub const fn with_module(self) -> Self {
        Scenario {
            needs_module: true,
            ..self
        }
    }
}

/// Every scenario with its subject, in declaration order.
pub fn all() -> impl Iterator<Item = (&'static Subject, &'static Scenario)> {
    crate::subjects::SUBJECTS.iter().flat_map(|subject| {
        subject
            .scenarios
            .iter()
            .map(move |scenario| (*subject, scenario))
    })
}

pub fn find(name: &str) -> Option<(&'static Subject, &'static Scenario)> {
    all().find(|(_, scenario)| scenario.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    all().map(|(_, scenario)| scenario.name)
}

/// `no scenario named X; the scenarios are: ...`
pub fn unknown(name: &str) -> String {
    format!(
        "no scenario named {name}; the scenarios are: {}",
        names().collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_are_unique_across_subjects() {
        let mut names: Vec<&str> = names().collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a scenario name is declared twice");
    }

    #[test]
    fn a_kernel_difference_is_declared_with_its_reason() {
        fn nothing(_: &mut Context) -> Result<()> {
            Ok(())
        }
        let scenario = Scenario::new("x", "y", nothing)
            .with_module()
            .differs_on(&[("7.3", "7.x words it otherwise")]);
        assert!(scenario.needs_module);
        assert_eq!(
            scenario.difference_on("7.3"),
            Some("7.x words it otherwise")
        );
        assert_eq!(scenario.difference_on("6.12"), None);
    }

    #[test]
    fn a_scenario_that_needs_a_module_belongs_to_a_subject_with_one() {
        for (subject, scenario) in all() {
            assert!(
                !scenario.needs_module || subject.module.is_some(),
                "{} needs a module, but {} has none",
                scenario.name,
                subject.name
            );
        }
    }
}
