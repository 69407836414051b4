//! `harness new`: a new cargo project for a struct_ops subject that passes
//! its own scenarios the first time (once their snapshots are accepted):
//! for a type a module defines (`--module NAME`: the module, its header, a
//! BPF implementation, a program the verifier must refuse, a loader, three
//! scenarios), or for a type the kernel defines (`--kernel-type`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What kind of subject to scaffold.
pub enum Kind {
    /// A module that defines `struct NAME_ops`.
    Module(String),
    /// A BPF implementation, named `name`, of a type the kernel defines
    /// (`tcp_congestion_ops`, the one `--kernel-type` scaffolds today).
    KernelType { name: String },
}

/// The kernel types `--kernel-type` knows how to scaffold.
const KERNEL_TYPES: &[&str] = &["tcp_congestion_ops"];

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../templates/", $path))
    };
}

/// Every file of a project of `kind`: (path in the project, template).
fn files(kind: &Kind) -> Vec<(String, &'static str)> {
    let mut files = vec![
        ("Cargo.toml".to_owned(), template!("common/manifest.toml")),
        ("build.rs".to_owned(), template!("common/build.rs")),
        ("tests/vm.rs".to_owned(), template!("common/vm.rs")),
        (
            ".config/nextest.toml".to_owned(),
            template!("common/nextest.toml"),
        ),
        (".gitignore".to_owned(), template!("common/gitignore")),
    ];
    let own: Vec<(String, &'static str)> = match kind {
        Kind::Module(name) => vec![
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
        ],
        Kind::KernelType { name, .. } => vec![
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
            (
                "images/tcp.config".into(),
                template!("tcp/images/tcp.config"),
            ),
        ],
    };
    files.extend(own);
    files
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
            if !KERNEL_TYPES.contains(&type_name.as_str()) {
                bail!(
                    "harness new scaffolds the kernel types {}; for {type_name}, start from \
                     --kernel-type tcp_congestion_ops and change the type and its kernel options \
                     (the README's \"Other kernel types\" says which each needs)",
                    KERNEL_TYPES.join(", ")
                );
            }
            let name = match name {
                Some(name) => name,
                None => crate_name(path)?.replace('-', "_"),
            };
            check_name(&name)?;
            Ok(Kind::KernelType { name })
        }
        _ => bail!("say what the subject is: --module NAME or --kernel-type TYPE"),
    }
}

/// Writes the project of `kind` into `path` (new, or an empty directory),
/// depending on the harness through `harness` (a Cargo.toml value); the
/// files written.
pub fn scaffold(path: &Path, kind: &Kind, harness: &str) -> Result<Vec<PathBuf>> {
    let crate_name = crate_name(path)?;
    let occupied = std::fs::read_dir(path).map(|mut entries| entries.next().is_some());
    if occupied.unwrap_or(false) {
        bail!(
            "{} exists and is not empty: name a new directory",
            path.display()
        );
    }
    let (name, programs, include) = match kind {
        Kind::Module(name) => (
            name,
            format!("{name:?}, \"rejected\""),
            format!("kmod/{name}"),
        ),
        Kind::KernelType { name, .. } => (
            name,
            format!("{name:?}, \"rejected\""),
            "src/bpf".to_owned(),
        ),
    };
    let replacements = [
        ("@CRATE_IDENT@", crate_name.replace('-', "_")),
        ("@CRATE@", crate_name.clone()),
        ("@HARNESS@", harness.to_owned()),
        ("@PROGRAMS@", programs),
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

/// How the new project depends on the harness: `--harness-git`, else
/// `--harness-path`, else this harness's own sources when they are there.
pub fn harness_dependency(git: Option<String>, path: Option<PathBuf>) -> Result<String> {
    if let Some(url) = git {
        return Ok(format!("{{ git = {url:?} }}"));
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
    Ok(format!("{{ path = {:?} }}", path.display().to_string()))
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
        let err = kind(None, Some("sched_ext_ops".into()), None, Path::new("/x/y"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("tcp_congestion_ops"), "{err}");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, kind) in [
            ("mod-subject", Kind::Module("hello".into())),
            (
                "cc-subject",
                Kind::KernelType {
                    name: "my_cc".into(),
                },
            ),
        ] {
            let written = scaffold(&dir.path().join(sub), &kind, "{ path = \"/h\" }").unwrap();
            for file in written {
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(
                    !text.contains('@') || !text.contains("@NAME"),
                    "{}",
                    file.display()
                );
                assert!(
                    !text.contains("@CRATE") && !text.contains("@HARNESS@"),
                    "{}",
                    file.display()
                );
            }
        }
        let err = scaffold(
            &dir.path().join("mod-subject"),
            &Kind::Module("x".into()),
            "{}",
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not empty"), "{err}");
    }
}
