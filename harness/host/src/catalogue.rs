//! The subjects a run is about, and the one binary each is built into. A
//! subject is a cargo package that says which of its test targets is its
//! binary (`[package.metadata.harness] vm-test = "vm"`); the host builds
//! that target in release (TCG runs a debug build's loops several times
//! slower) with the package's `loader` feature when it has one, asks it
//! what it declares (`<binary> __catalogue`), and boots it as the guest's
//! init. The core knows subjects only through what they declare.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use harness_wire::catalogue::{ScenarioInfo, SubjectInfo};
use harness_wire::roles;
use serde::Deserialize;

use crate::progress::Progress;

/// A subject, and the binary that runs it in the guest.
#[derive(Debug, Clone)]
pub struct Subject {
    /// What the subject declares.
    pub info: SubjectInfo,
    /// Its one binary, built for the guest.
    pub binary: PathBuf,
}

/// The subjects of a run.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    /// In the order `run --list` shows them.
    pub subjects: Vec<Subject>,
}

/// A cargo package that declares a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubjectPackage {
    /// The package's name.
    pub(crate) name: String,
    /// Its Cargo.toml.
    pub(crate) manifest: PathBuf,
    /// The test target that is its binary.
    pub(crate) test: String,
    /// Whether it has a `loader` feature (the guest's build turns it on).
    pub(crate) loader_feature: bool,
}

impl Catalogue {
    /// The subject and scenario named `scenario`.
    pub fn find(&self, scenario: &str) -> Option<(&Subject, &ScenarioInfo)> {
        self.subjects.iter().find_map(|subject| {
            let found = subject.info.scenarios.iter().find(|s| s.name == scenario)?;
            Some((subject, found))
        })
    }

    /// Every scenario's name, in order.
    pub fn names(&self) -> Vec<String> {
        self.scenarios()
            .map(|(_, scenario)| scenario.name.clone())
            .collect()
    }

    /// Every scenario with its subject, in order.
    pub fn scenarios(&self) -> impl Iterator<Item = (&Subject, &ScenarioInfo)> {
        self.subjects
            .iter()
            .flat_map(|subject| subject.info.scenarios.iter().map(move |s| (subject, s)))
    }

    /// `no scenario named X; the scenarios are: ...`, if `name` is not one.
    pub fn check(&self, name: &str) -> Result<()> {
        if self.find(name).is_none() {
            bail!(
                "no scenario named {name}; the scenarios are: {}",
                self.names().join(", ")
            );
        }
        Ok(())
    }

    /// The binary that boots when no scenario says which (exec, shell):
    /// every subject's binary carries the agent.
    pub(crate) fn any_binary(&self) -> Result<&Path> {
        match self.subjects.first() {
            Some(subject) => Ok(&subject.binary),
            None => bail!(
                "no subject to boot: this workspace has no package with \
                 [package.metadata.harness] vm-test = \"<test target>\" (see harness::guide::first_subject, or \
                 `harness new` to start one)"
            ),
        }
    }

    fn check_unique(&self) -> Result<()> {
        let names = self.names();
        for (index, name) in names.iter().enumerate() {
            if names[..index].contains(name) {
                bail!("the scenario name {name} is declared twice; scenario names must be unique across the subjects of a run");
            }
        }
        Ok(())
    }
}

/// The subjects declared in the workspace `dir` is in, each built for the guest.
pub fn discover(dir: &Path, progress: &Progress) -> Result<Catalogue> {
    let mut catalogue = Catalogue::default();
    for package in subject_packages(dir)? {
        let binary = build_guest_binary(&package, progress)?;
        for info in ask_catalogue(&binary)? {
            catalogue.subjects.push(Subject {
                info,
                binary: binary.clone(),
            });
        }
    }
    catalogue.check_unique()?;
    Ok(catalogue)
}

/// `subjects`, declared by the package `package` of the workspace `dir`
/// is in, with that package built for the guest (a test binary's own way).
pub fn of_package(
    dir: &Path,
    package: &str,
    subjects: Vec<SubjectInfo>,
    progress: &Progress,
) -> Result<Catalogue> {
    let packages = subject_packages(dir)?;
    let Some(found) = packages.iter().find(|candidate| candidate.name == package) else {
        bail!(
            "the package {package} has no [package.metadata.harness] vm-test = \"<test target>\": \
             the harness cannot tell which of its test targets to build for the guest"
        );
    };
    let binary = build_guest_binary(found, progress)?;
    let catalogue = Catalogue {
        subjects: subjects
            .into_iter()
            .map(|info| Subject {
                info,
                binary: binary.clone(),
            })
            .collect(),
    };
    catalogue.check_unique()?;
    Ok(catalogue)
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetadataPackage>,
    workspace_members: Vec<String>,
}

#[derive(Deserialize)]
struct MetadataPackage {
    id: String,
    name: String,
    manifest_path: PathBuf,
    #[serde(default)]
    features: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace's packages that declare a subject, in the workspace's order.
pub(crate) fn subject_packages(dir: &Path) -> Result<Vec<SubjectPackage>> {
    let output = duct::cmd!(cargo(), "metadata", "--no-deps", "--format-version", "1")
        .dir(dir)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("running cargo metadata in {}", dir.display()))?;
    if !output.status.success() {
        bail!(
            "cargo metadata in {} failed (is it inside a cargo project?):\n{}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    Ok(subjects_in(metadata))
}

fn subjects_in(metadata: Metadata) -> Vec<SubjectPackage> {
    let members = &metadata.workspace_members;
    let mut packages: Vec<(usize, SubjectPackage)> = metadata
        .packages
        .into_iter()
        .filter_map(|package| {
            let order = members.iter().position(|id| *id == package.id)?;
            let test = package
                .metadata
                .as_ref()?
                .get("harness")?
                .get("vm-test")?
                .as_str()?
                .to_owned();
            let loader_feature = package.features.contains_key("loader");
            let subject = SubjectPackage {
                name: package.name,
                manifest: package.manifest_path,
                test,
                loader_feature,
            };
            Some((order, subject))
        })
        .collect();
    packages.sort_by_key(|(order, _)| *order);
    packages.into_iter().map(|(_, package)| package).collect()
}

/// `cargo test --release --no-run` of the package's VM test target (with
/// its loader), which cargo makes a no-op when nothing changed; its path.
pub(crate) fn build_guest_binary(package: &SubjectPackage, progress: &Progress) -> Result<PathBuf> {
    let step = progress.step(format!(
        "building {}'s guest binary (cargo test --release --no-run --test {})",
        package.name, package.test
    ));
    let mut args: Vec<String> = [
        "test",
        "--release",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend([
        "--manifest-path".to_owned(),
        package.manifest.display().to_string(),
    ]);
    args.extend([
        "-p".to_owned(),
        package.name.clone(),
        "--test".to_owned(),
        package.test.clone(),
    ]);
    if package.loader_feature {
        args.extend(["--features".to_owned(), format!("{}/loader", package.name)]);
    }
    let output = duct::cmd(cargo(), &args)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("running cargo to build {}", package.name))?;
    if !output.status.success() {
        bail!(
            "building {}'s guest binary failed ({}):\n{}\n\
             The compiler's words are above. A missing clang, libelf or kernel header package \
             is installed by `harness setup`; a header of your own is looked for in the -I \
             directories build.rs gives clang; `cargo check --features loader --tests` shows \
             the loader's errors sooner",
            package.name,
            shell_words(&args),
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let binary = executable_in(&String::from_utf8_lossy(&output.stdout), &package.test)
        .with_context(|| {
            format!(
                "cargo built {} but named no test executable {}",
                package.name, package.test
            )
        })?;
    step.done();
    Ok(binary)
}

fn shell_words(args: &[String]) -> String {
    let mut words = vec!["cargo".to_owned()];
    words.extend(args.iter().cloned());
    harness_wire::shell::quote_words(&words)
}

/// The executable of the test target `test` in cargo's JSON messages.
fn executable_in(messages: &str, test: &str) -> Option<PathBuf> {
    messages.lines().find_map(|line| {
        let message: serde_json::Value = serde_json::from_str(line).ok()?;
        let target = message.get("target")?;
        let is_test = target
            .get("kind")?
            .as_array()?
            .iter()
            .any(|kind| kind == "test");
        if message.get("reason")? != "compiler-artifact" || !is_test || target.get("name")? != test
        {
            return None;
        }
        message.get("executable")?.as_str().map(PathBuf::from)
    })
}

/// What the binary declares: `<binary> __catalogue`.
fn ask_catalogue(binary: &Path) -> Result<Vec<SubjectInfo>> {
    let output = duct::cmd!(binary, roles::CATALOGUE)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("running {} {}", binary.display(), roles::CATALOGUE))?;
    if !output.status.success() {
        bail!(
            "{} {} failed (is its test target's main `harness::main!(...)`?):\n{}",
            binary.display(),
            roles::CATALOGUE,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "reading what {} {} printed",
            binary.display(),
            roles::CATALOGUE
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_executable_is_found_among_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"build-script-build","kind":["custom-build"]},"executable":null}
{"reason":"compiler-artifact","target":{"name":"vm","kind":["test"]},"profile":{"test":true},"executable":"/t/release/deps/vm-0123"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_in(messages, "vm"),
            Some(PathBuf::from("/t/release/deps/vm-0123"))
        );
        assert_eq!(executable_in(messages, "other"), None);
    }

    #[test]
    fn only_workspace_members_that_name_their_vm_test_are_subjects() {
        let metadata: Metadata = serde_json::from_str(
            r#"{"workspace_members":["b 0.1","a 0.1","c 0.1"],"packages":[
              {"id":"a 0.1","name":"a","manifest_path":"/w/a/Cargo.toml","features":{"loader":[]},
               "metadata":{"harness":{"vm-test":"vm"}}},
              {"id":"b 0.1","name":"b","manifest_path":"/w/b/Cargo.toml","features":{},
               "metadata":{"harness":{"vm-test":"tests"}}},
              {"id":"c 0.1","name":"c","manifest_path":"/w/c/Cargo.toml","metadata":null}]}"#,
        )
        .unwrap();
        let found = subjects_in(metadata);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (
                found[0].name.as_str(),
                found[0].test.as_str(),
                found[0].loader_feature
            ),
            ("b", "tests", false)
        );
        assert_eq!(
            (found[1].name.as_str(), found[1].loader_feature),
            ("a", true)
        );
    }
}
