//! `harness new`: a new cargo project for a struct_ops subject that passes
//! its own scenarios the first time (once their snapshots are accepted):
//! for a type a module defines (`--module NAME`: the module, its header, a
//! BPF implementation, a program the verifier must refuse, a loader, three
//! scenarios), or for a type the kernel defines (`--kernel-type`:
//! `tcp_congestion_ops`, or `sched_ext_ops`, a scheduler the harness
//! compiles against each kernel). Every kind comes with a GitHub workflow
//! that runs its tests through this repository's action.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use harness_wire::kernel_type::KernelType;

/// What kind of subject to scaffold.
pub enum Kind {
    /// A module that defines `struct NAME_ops`.
    Module(String),
    /// A BPF implementation, named `name`, of a type the kernel defines
    /// (one of [`KERNEL_TYPES`]).
    KernelType {
        /// The type it implements.
        kernel_type: KernelType,
        /// The implementation's name (its object, its ops, its files).
        name: String,
    },
}

/// The kernel types `--kernel-type` knows how to scaffold.
pub const KERNEL_TYPES: &[KernelType] = &[KernelType::TcpCongestionOps, KernelType::SchedExtOps];

/// How the new project reaches the harness: the dependency (a Cargo.toml
/// value) and the GitHub action its workflow uses.
pub struct HarnessSource {
    /// `{ path = "..." }` or `{ git = "..." }`.
    pub dependency: String,
    /// The build-script helper's, inside braces: `path = ".../build"` or `git = "..."`.
    pub build_dependency: String,
    /// `OWNER/REPO/.github/actions/vmtest@main`.
    pub action: String,
    /// Whether `action` names the repository for real: only a GitHub
    /// `--harness-git` URL says which it is.
    pub action_known: bool,
}

/// Where this repository's action is, inside it.
const ACTION_PATH: &str = ".github/actions/vmtest";

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../templates/", $path))
    };
}

/// Every file of a project of `kind`: (path in the project, template).
fn files(kind: &Kind) -> Vec<(String, &'static str)> {
    let mut files = vec![
        ("tests/vm.rs".to_owned(), template!("common/vm.rs")),
        (
            ".config/nextest.toml".to_owned(),
            template!("common/nextest.toml"),
        ),
        (".gitignore".to_owned(), template!("common/gitignore")),
        (
            ".github/workflows/vm-tests.yml".to_owned(),
            template!("common/workflow.yml"),
        ),
    ];
    let own = match kind {
        Kind::Module(name) => module_files(name),
        Kind::KernelType {
            kernel_type: KernelType::SchedExtOps,
            name,
        } => sched_ext_files(name),
        Kind::KernelType { name, .. } => tcp_files(name),
    };
    files.extend(own);
    files
}

/// The manifest and build.rs of a subject whose loader uses libbpf-cargo's skeletons.
fn skeleton_files() -> Vec<(String, &'static str)> {
    vec![
        ("Cargo.toml".into(), template!("common/manifest.toml")),
        ("build.rs".into(), template!("common/build.rs")),
    ]
}

fn module_files(name: &str) -> Vec<(String, &'static str)> {
    let mut files = skeleton_files();
    files.extend([
        ("src/lib.rs".into(), template!("module/src/lib.rs")),
        (
            "src/contract.rs".into(),
            template!("module/src/contract.rs"),
        ),
        (
            "src/scenarios.rs".into(),
            template!("module/src/scenarios.rs"),
        ),
        (
            "src/loader/mod.rs".into(),
            template!("module/src/loader/mod.rs"),
        ),
        (
            format!("src/bpf/{name}.bpf.c"),
            template!("module/src/bpf/impl.bpf.c"),
        ),
        (
            "src/bpf/rejected.bpf.c".into(),
            template!("module/src/bpf/rejected.bpf.c"),
        ),
        (
            format!("kmod/{name}/Kbuild"),
            template!("module/kmod/Kbuild"),
        ),
        (
            format!("kmod/{name}/{name}.c"),
            template!("module/kmod/ops.c"),
        ),
        (
            format!("kmod/{name}/{name}.h"),
            template!("module/kmod/ops.h"),
        ),
    ]);
    files
}

fn tcp_files(name: &str) -> Vec<(String, &'static str)> {
    let mut files = skeleton_files();
    files.extend([
        ("src/lib.rs".into(), template!("tcp/src/lib.rs")),
        ("src/contract.rs".into(), template!("tcp/src/contract.rs")),
        ("src/scenarios.rs".into(), template!("tcp/src/scenarios.rs")),
        (
            "src/loader/mod.rs".into(),
            template!("tcp/src/loader/mod.rs"),
        ),
        (
            format!("src/bpf/{name}.bpf.c"),
            template!("tcp/src/bpf/impl.bpf.c"),
        ),
        (
            "src/bpf/rejected.bpf.c".into(),
            template!("tcp/src/bpf/rejected.bpf.c"),
        ),
        ("src/bpf/tcp_cc.h".into(), template!("tcp/src/bpf/tcp_cc.h")),
    ]);
    files
}

/// A scheduler: no build.rs (the harness compiles its BPF against each
/// kernel, with that kernel's headers) and no kernel fragment (the core's
/// kernels have sched_ext).
fn sched_ext_files(name: &str) -> Vec<(String, &'static str)> {
    vec![
        ("Cargo.toml".into(), template!("sched_ext/manifest.toml")),
        ("src/lib.rs".into(), template!("sched_ext/src/lib.rs")),
        (
            "src/contract.rs".into(),
            template!("sched_ext/src/contract.rs"),
        ),
        (
            "src/scenarios.rs".into(),
            template!("sched_ext/src/scenarios.rs"),
        ),
        (
            "src/loader/mod.rs".into(),
            template!("sched_ext/src/loader/mod.rs"),
        ),
        (
            format!("src/bpf/{name}.bpf.c"),
            template!("sched_ext/src/bpf/impl.bpf.c"),
        ),
        (
            "src/bpf/rejected.bpf.c".into(),
            template!("sched_ext/src/bpf/rejected.bpf.c"),
        ),
    ]
}

/// `my_ops` -> `MyOps`, as libbpf-cargo names a skeleton.
fn camel(name: &str) -> String {
    name.split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// A C identifier short enough for every place the name goes (a TCP
/// congestion control's name holds 15 characters).
fn check_name(name: &str) -> Result<()> {
    let valid = name.len() <= 15
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!(
            "{name:?} cannot name a subject: use 1 to 15 lowercase letters, digits and \
             underscores, starting with a letter (it names C identifiers, the module and files)"
        );
    }
    Ok(())
}

/// The project's package name: its directory's name.
fn crate_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| {
            format!(
                "{} has no directory name to name the crate after",
                path.display()
            )
        })?;
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "the directory name {name:?} is not a cargo package name: use letters, digits, - and _"
        );
    }
    Ok(name.to_owned())
}

/// The subject's kind, checked: a known kernel type, valid names.
pub fn kind(
    module: Option<String>,
    kernel_type: Option<String>,
    name: Option<String>,
    path: &Path,
) -> Result<Kind> {
    match (module, kernel_type) {
        (Some(module), None) => {
            check_name(&module)?;
            Ok(Kind::Module(module))
        }
        (None, Some(type_name)) => {
            let known = KernelType::parse(&type_name).filter(|known| KERNEL_TYPES.contains(known));
            let Some(kernel_type) = known else {
                let names: Vec<&str> = KERNEL_TYPES.iter().map(|known| known.name()).collect();
                bail!(
                    "harness new scaffolds the kernel types {}; for {type_name}, start from \
                     --kernel-type tcp_congestion_ops and change the type and its kernel options \
                     (the guide's kernel_types chapter, `cargo doc -p harness --open`, says which)",
                    names.join(", ")
                );
            };
            let name = match name {
                Some(name) => name,
                None => crate_name(path)?.replace('-', "_"),
            };
            check_name(&name)?;
            Ok(Kind::KernelType { kernel_type, name })
        }
        _ => bail!("say what the subject is: --module NAME or --kernel-type TYPE"),
    }
}

/// Writes the project of `kind` into `path` (new, or an empty directory),
/// reaching the harness as `harness` says; the files written.
pub fn scaffold(path: &Path, kind: &Kind, harness: &HarnessSource) -> Result<Vec<PathBuf>> {
    let crate_name = crate_name(path)?;
    let occupied = std::fs::read_dir(path).map(|mut entries| entries.next().is_some());
    if occupied.unwrap_or(false) {
        bail!(
            "{} exists and is not empty: name a new directory",
            path.display()
        );
    }
    let (name, include) = match kind {
        Kind::Module(name) => (name, format!("kmod/{name}")),
        Kind::KernelType { name, .. } => (name, "src/bpf".to_owned()),
    };
    let replacements = [
        ("@CRATE_IDENT@", crate_name.replace('-', "_")),
        ("@CRATE@", crate_name.clone()),
        ("@HARNESS@", harness.dependency.clone()),
        ("@HARNESS_BUILD@", harness.build_dependency.clone()),
        ("@ACTION@", harness.action.clone()),
        ("@PROGRAMS@", format!("{name:?}, \"rejected\"")),
        ("@INCLUDE@", include),
        ("@NAME_UPPER@", name.to_ascii_uppercase()),
        ("@NAME_CAMEL@", camel(name)),
        ("@NAME@", name.clone()),
    ];
    let mut written = Vec::new();
    for (file, template) in files(kind) {
        let text = replacements
            .iter()
            .fold(template.to_owned(), |text, (from, to)| {
                text.replace(from, to)
            });
        let target = path.join(&file);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        written.push(target);
    }
    Ok(written)
}

/// How the new project reaches the harness: `--harness-git`, else
/// `--harness-path`, else this harness's own sources when they are there.
pub fn harness_source(git: Option<String>, path: Option<PathBuf>) -> Result<HarnessSource> {
    if let Some(url) = git {
        let repository = github_repository(&url);
        return Ok(HarnessSource {
            dependency: format!("{{ git = {url:?} }}"),
            build_dependency: format!("git = {url:?}"),
            action_known: repository.is_some(),
            action: action(repository.as_deref().unwrap_or("OWNER/REPO")),
        });
    }
    let path = path.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    if !path.join("Cargo.toml").is_file() {
        bail!(
            "{} holds no harness crate: say where it is with --harness-path DIR or --harness-git URL",
            path.display()
        );
    }
    let path = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    Ok(HarnessSource {
        dependency: format!("{{ path = {:?} }}", path.display().to_string()),
        build_dependency: format!("path = {:?}", path.join("build").display().to_string()),
        action: action("OWNER/REPO"),
        action_known: false,
    })
}

/// `OWNER/REPO` of a GitHub URL (`https://github.com/o/r.git`, `git@github.com:o/r`).
fn github_repository(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("github.com")?;
    let rest = rest.trim_start_matches([':', '/']);
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let mut parts = rest.split('/');
    let (Some(owner), Some(repo), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let valid = |part: &str| {
        !part.is_empty() && (part.chars()).all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (valid(owner) && valid(repo)).then(|| format!("{owner}/{repo}"))
}

/// The `uses:` of this repository's action in `repository`, at its main branch.
fn action(repository: &str) -> String {
    format!("{repository}/{ACTION_PATH}@main")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_skeletons_named_as_libbpf_cargo_does() {
        assert_eq!(camel("my_ops"), "MyOps");
        assert!(check_name("hello").is_ok());
        for bad in ["Hello", "1x", "a-b", "much_too_long_a_name"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let err = kind(None, Some("hid_bpf_ops".into()), None, Path::new("/x/y"))
            .err()
            .unwrap();
        let said = err.to_string();
        assert!(said.contains("tcp_congestion_ops, sched_ext_ops"), "{said}");
        let scheduler = kind(
            None,
            Some("struct sched_ext_ops".into()),
            None,
            Path::new("/x/my-sched"),
        );
        assert!(matches!(
            scheduler.unwrap(),
            Kind::KernelType { kernel_type: KernelType::SchedExtOps, name } if name == "my_sched"
        ));
    }

    /// A path dependency, as the tests use.
    fn path_source() -> HarnessSource {
        HarnessSource {
            dependency: "{ path = \"/h\" }".into(),
            build_dependency: "path = \"/h/build\"".into(),
            action: action("OWNER/REPO"),
            action_known: false,
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, kind) in every_kind("my_name") {
            let written = scaffold(&dir.path().join(sub), &kind, &path_source()).unwrap();
            let workflow = dir.path().join(sub).join(".github/workflows/vm-tests.yml");
            assert!(written.contains(&workflow), "{sub}: no workflow");
            for file in written {
                let text = std::fs::read_to_string(&file).unwrap();
                let left = [
                    "@NAME",
                    "@CRATE",
                    "@HARNESS@",
                    "@HARNESS_BUILD@",
                    "@ACTION@",
                    "@PROGRAMS@",
                    "@INCLUDE@",
                ];
                for placeholder in left {
                    assert!(
                        !text.contains(placeholder),
                        "{placeholder} in {}",
                        file.display()
                    );
                }
            }
        }
        let err = scaffold(
            &dir.path().join("mod-subject"),
            &Kind::Module("x".into()),
            &path_source(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
    }

    /// Every kind, with a name of `name`.
    fn every_kind(name: &str) -> [(&'static str, Kind); 3] {
        [
            ("mod-subject", Kind::Module(name.into())),
            (
                "cc-subject",
                Kind::KernelType {
                    kernel_type: KernelType::TcpCongestionOps,
                    name: name.into(),
                },
            ),
            (
                "sched-subject",
                Kind::KernelType {
                    kernel_type: KernelType::SchedExtOps,
                    name: name.into(),
                },
            ),
        ]
    }

    /// rustfmt would change nothing in a scaffold, whatever the length of
    /// its name (a name moves lines past rustfmt's widths); tests/vm_new.rs
    /// runs `cargo fmt --check` and clippy on one name of each kind.
    #[test]
    fn every_kind_is_as_rustfmt_formats_it_with_the_shortest_and_longest_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "abcdefghijklmno"] {
            for (sub, kind) in every_kind(name) {
                let root = dir.path().join(format!("{sub}-{}", name.len()));
                let written = scaffold(&root, &kind, &path_source()).unwrap();
                let sources = written
                    .iter()
                    .filter(|file| file.extension().is_some_and(|ext| ext == "rs"));
                let output = std::process::Command::new("rustfmt")
                    .args(["--check", "--edition", "2021"])
                    .args(sources)
                    .output()
                    .expect("running rustfmt (rustup component add rustfmt)");
                assert!(
                    output.status.success(),
                    "{sub} named {name}: rustfmt would change it:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }

    #[test]
    fn a_scheduler_is_compiled_by_the_harness_so_has_no_build_script() {
        let dir = tempfile::tempdir().unwrap();
        let kind = Kind::KernelType {
            kernel_type: KernelType::SchedExtOps,
            name: "fifo".into(),
        };
        let written = scaffold(&dir.path().join("s"), &kind, &path_source()).unwrap();
        let names: Vec<String> = (written.iter())
            .map(|file| {
                file.strip_prefix(dir.path().join("s"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert!(!names.contains(&"build.rs".to_owned()), "{names:?}");
        for expected in [
            "src/bpf/fifo.bpf.c",
            "src/bpf/rejected.bpf.c",
            "src/loader/mod.rs",
        ] {
            assert!(
                names.contains(&expected.to_owned()),
                "{expected}: {names:?}"
            );
        }
        let lib = std::fs::read_to_string(dir.path().join("s/src/lib.rs")).unwrap();
        assert!(
            lib.contains("BpfObject::own(\"src/bpf/fifo.bpf.c\")"),
            "{lib}"
        );
    }

    #[test]
    fn the_workflow_names_the_action_of_a_github_harness() {
        for url in [
            "https://github.com/someone/struct-ops.git",
            "https://github.com/someone/struct-ops",
            "git@github.com:someone/struct-ops.git",
        ] {
            let source = harness_source(Some(url.into()), None).unwrap();
            assert_eq!(
                source.action, "someone/struct-ops/.github/actions/vmtest@main",
                "{url}"
            );
            assert!(source.action_known, "{url}");
        }
        let elsewhere = harness_source(Some("https://example.com/h.git".into()), None).unwrap();
        assert!(!elsewhere.action_known);
        assert_eq!(elsewhere.action, "OWNER/REPO/.github/actions/vmtest@main");
        assert_eq!(github_repository("https://github.com/only-owner"), None);
    }
}
