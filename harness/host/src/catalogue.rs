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
use sha2::Digest;

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
        let binary = frozen_copy(&build_guest_binary(&package, progress)?)?;
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
    let binary = frozen_copy(&build_guest_binary(found, progress)?)?;
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

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace's packages that declare a subject, in the workspace's order.
pub(crate) fn subject_packages(dir: &Path) -> Result<Vec<SubjectPackage>> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .cargo_path(cargo())
        .current_dir(dir)
        .no_deps()
        .exec()
        .with_context(|| {
            format!(
                "cargo metadata in {} failed (is it inside a cargo project?)",
                dir.display()
            )
        })?;
    Ok(subjects_in(&metadata))
}

fn subjects_in(metadata: &cargo_metadata::Metadata) -> Vec<SubjectPackage> {
    // `workspace_packages` keeps the workspace's order of members.
    (metadata.workspace_packages().into_iter())
        .filter_map(|package| {
            let test = package.metadata.get("harness")?.get("vm-test")?.as_str()?;
            Some(SubjectPackage {
                name: package.name.to_string(),
                manifest: package.manifest_path.clone().into_std_path_buf(),
                test: test.to_owned(),
                loader_feature: package.features.contains_key("loader"),
            })
        })
        .collect()
}

/// `cargo test --release --no-run` of the package's VM test target (with
/// its loader), which cargo makes a no-op when nothing changed; its path.
pub(crate) fn build_guest_binary(package: &SubjectPackage, progress: &Progress) -> Result<PathBuf> {
    let task = progress.task(format!(
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
    let built = run_cargo_build(&args, &task)
        .with_context(|| format!("running cargo to build {}", package.name))?;
    if !built.success {
        task.finish("failed");
        bail!(
            "building {}'s guest binary failed ({}):\n{}\n\
             The compiler's words are above. A missing clang, libelf or kernel header package \
             is installed by `harness setup`; a header of your own is looked for in the -I \
             directories build.rs gives clang; `cargo check --features loader --tests` shows \
             the loader's errors sooner",
            package.name,
            shell_words(&args),
            built.stderr.trim_end()
        );
    }
    let binary = (built.executables.iter())
        .find(|(name, _)| *name == package.test)
        .map(|(_, path)| path.clone())
        .with_context(|| {
            format!(
                "cargo built {} but named no test executable {}",
                package.name, package.test
            )
        })?;
    task.done();
    Ok(binary)
}

/// Where the copies [`frozen_copy`] makes live, next to `binary`'s profile
/// directory (`target/release/harness-binaries`), so that the VM logs found
/// from a binary's path stay in `target/vm-logs`.
fn frozen_dir(binary: &Path) -> Result<PathBuf> {
    let profile = (binary.parent().and_then(Path::parent))
        .with_context(|| format!("{} is in no cargo profile directory", binary.display()))?;
    Ok(profile.join("harness-binaries"))
}

/// Copies unused this long are removed whenever a run makes or finds one.
const FROZEN_UNUSED_FOR: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The lock of the copies' directory: shared while a run finds or makes its
/// copy and marks it used, exclusive while unused ones are removed, so a
/// copy is never removed between a run finding it and marking it.
const FROZEN_LOCK: &str = ".lock";

/// A copy of `binary` named by its content, which no later build touches:
/// the run's VMs start it, not cargo's output, which a `cargo build` while
/// the run goes on (the developer's own, or another run's) relinks in
/// place. A guest that read the binary while it was rewritten failed its
/// scenario with libbpf's "invalid ELF" (-4001).
pub(crate) fn frozen_copy(binary: &Path) -> Result<PathBuf> {
    let bytes = read_unchanged(binary)?;
    let hash = format!("{:x}", sha2::Sha256::digest(&bytes));
    let dir = frozen_dir(binary)?;
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    let copy = dir.join(format!("{name}-{}", &hash[..16]));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = crate::cache::open_lock_file(&dir.join(FROZEN_LOCK))?;
    lock.lock_shared()
        .with_context(|| format!("locking {}", dir.display()))?;
    let whole = std::fs::metadata(&copy).is_ok_and(|meta| meta.len() == bytes.len() as u64);
    if !whole {
        // A run that starts now finds the copy complete or not at all.
        crate::paths::write_executable_atomically(&copy, &bytes)?;
    }
    // Its last use, for the removal of unused copies.
    std::fs::File::open(&copy)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("marking {} used", copy.display()))?;
    lock.unlock().context("unlocking the copies' lock")?;
    if lock.try_lock().is_ok() {
        remove_unused_copies(&dir);
    }
    Ok(copy)
}

/// `path`'s bytes, read again while cargo's output changed under the read
/// (another run's cargo may relink it once this run's build is done).
fn read_unchanged(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let stamp = || {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        anyhow::Ok((meta.ino(), meta.len(), meta.modified().ok()))
    };
    for _ in 0..5 {
        let before = stamp()?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if stamp()? == before && bytes.len() as u64 == before.1 {
            return Ok(bytes);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bail!(
        "{} kept changing while it was read (is a cargo build of it running?)",
        path.display()
    )
}

/// Removes the copies in `dir` no run has used for [`FROZEN_UNUSED_FOR`]
/// (its lock held exclusively).
fn remove_unused_copies(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let unused = (entry.metadata().and_then(|meta| meta.modified()).ok())
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|unused| unused > FROZEN_UNUSED_FOR);
        if unused && entry.file_name() != FROZEN_LOCK {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a `cargo test --no-run --message-format=json-...` said.
struct CargoBuild {
    success: bool,
    /// Its stderr: the compiler's rendered diagnostics.
    stderr: String,
    /// Each test target's name and executable.
    executables: Vec<(String, PathBuf)>,
}

/// Runs cargo with `args`, reporting each crate it compiles to `task` as
/// cargo finishes it (a cold release build takes minutes).
fn run_cargo_build(args: &[String], task: &crate::progress::Task) -> Result<CargoBuild> {
    use std::io::Read as _;
    let mut child = std::process::Command::new(cargo())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut stderr_pipe = child.stderr.take().context("cargo's stderr")?;
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let stdout = std::io::BufReader::new(child.stdout.take().context("cargo's stdout")?);
    let mut executables = Vec::new();
    for message in cargo_metadata::Message::parse_stream(stdout) {
        if let cargo_metadata::Message::CompilerArtifact(artifact) = message? {
            task.update(&format!("compiled {}", artifact.target.name));
            executables.extend(test_executable(&artifact));
        }
    }
    let status = child.wait()?;
    Ok(CargoBuild {
        success: status.success(),
        stderr: stderr.join().unwrap_or_default(),
        executables,
    })
}

/// A test target's name and executable, from its artifact message.
fn test_executable(artifact: &cargo_metadata::Artifact) -> Option<(String, PathBuf)> {
    let is_test = (artifact.target.kind.iter()).any(|kind| kind.to_string() == "test");
    let executable = artifact.executable.clone()?;
    is_test.then(|| (artifact.target.name.clone(), executable.into_std_path_buf()))
}

fn shell_words(args: &[String]) -> String {
    let mut words = vec!["cargo".to_owned()];
    words.extend(args.iter().cloned());
    harness_wire::shell::quote_words(&words)
}

/// The executable of the test target `test` in cargo's JSON messages.
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
        let messages = concat!(
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/a#0.1.0","manifest_path":"/w/a/Cargo.toml","target":{"kind":["custom-build"],"crate_types":["bin"],"name":"build-script-build","src_path":"/w/a/build.rs","edition":"2021","doc":false,"doctest":false,"test":false},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/t/release/build/a/build-script-build"],"executable":null,"fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/a#0.1.0","manifest_path":"/w/a/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"vm","src_path":"/w/a/tests/vm.rs","edition":"2021","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":true},"features":["loader"],"filenames":["/t/release/deps/vm-0123"],"executable":"/t/release/deps/vm-0123","fresh":false}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#
        );
        let found: Vec<(String, PathBuf)> =
            cargo_metadata::Message::parse_stream(messages.as_bytes())
                .filter_map(|message| match message.unwrap() {
                    cargo_metadata::Message::CompilerArtifact(artifact) => {
                        test_executable(&artifact)
                    }
                    _ => None,
                })
                .collect();
        assert_eq!(
            found,
            vec![("vm".to_owned(), PathBuf::from("/t/release/deps/vm-0123"))]
        );
    }

    #[test]
    fn this_workspaces_subject_packages_are_found() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let found = subject_packages(&root).unwrap();
        // The core names no subject: what is checked is that the
        // workspace's subject packages (its bpf/ members) are found.
        let bpf = root.join("bpf").canonicalize().unwrap();
        assert!(found.len() >= 3, "{found:?}");
        for package in &found {
            let manifest = package.manifest.canonicalize().unwrap();
            assert!(manifest.starts_with(&bpf), "{}", manifest.display());
            assert!(
                package.test == "vm" && package.loader_feature,
                "{}",
                package.name
            );
        }
    }

    /// A guest binary as cargo leaves it in `target`, holding `content`.
    fn built_in(target: &Path, content: &str) -> PathBuf {
        let deps = target.join("release/deps");
        std::fs::create_dir_all(&deps).unwrap();
        let built = deps.join("vm-0123");
        std::fs::write(&built, content).unwrap();
        built
    }

    #[test]
    fn a_run_starts_a_copy_of_its_binary_that_a_rebuild_leaves_alone() {
        let target = tempfile::tempdir().unwrap();
        let built = built_in(target.path(), "the first build");
        let first = frozen_copy(&built).unwrap();
        assert_eq!(
            first.parent().unwrap(),
            target.path().join("release/harness-binaries")
        );
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "the first build");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&first.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o755);
        // Its logs go where the built binary's go.
        assert_eq!(
            crate::run_dirs::logs_root(&first),
            crate::run_dirs::logs_root(&built)
        );
        // The same build again: the same copy.
        assert_eq!(frozen_copy(&built).unwrap(), first);
        // A rebuild: a copy of its own, and the first one as it was.
        std::fs::write(&built, "a rebuild").unwrap();
        let second = frozen_copy(&built).unwrap();
        assert_ne!(second, first);
        assert_eq!(std::fs::read_to_string(&second).unwrap(), "a rebuild");
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "the first build");
    }

    #[test]
    fn copies_unused_for_a_week_are_removed() {
        let target = tempfile::tempdir().unwrap();
        let built = built_in(target.path(), "an old build");
        let old = frozen_copy(&built).unwrap();
        let eight_days = std::time::Duration::from_secs(8 * 24 * 3600);
        let file = std::fs::File::options().write(true).open(&old).unwrap();
        file.set_modified(std::time::SystemTime::now() - eight_days)
            .unwrap();
        std::fs::write(&built, "today's build").unwrap();
        let today = frozen_copy(&built).unwrap();
        assert!(!old.exists(), "{} was kept", old.display());
        assert!(today.exists());
    }
}
