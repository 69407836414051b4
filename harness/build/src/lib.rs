//! A subject's `build.rs` in one call: its BPF programs (`src/bpf/NAME.bpf.c`)
//! compiled with clang into `OUT_DIR/NAME.bpf.o` and their libbpf-rs
//! skeletons `OUT_DIR/NAME.skel.rs`, with the include directories the
//! subject names and the ones this system's headers need (Debian keeps
//! `<asm/types.h>` in its multiarch directory, which clang names).
//!
//! A build.rs's `main` under `#[cfg(feature = "loader")]`, with
//! `harness-build` a build-dependency that feature enables (the host
//! runner's build then needs no clang):
//!
//! ```no_run
//! harness_build::Skeletons::new()
//!     .include("../../kmod/my_module")
//!     .programs(&["my_ops", "rejected"])
//!     .build();
//! ```
#![deny(missing_docs)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The BPF programs of the crate being built, and where their headers are.
#[derive(Debug, Clone)]
#[must_use = "nothing is built until `build`"]
pub struct Skeletons {
    crate_dir: PathBuf,
    out_dir: PathBuf,
    includes: Vec<PathBuf>,
    programs: Vec<String>,
}

impl Default for Skeletons {
    fn default() -> Self {
        Self::new()
    }
}

impl Skeletons {
    /// For the crate cargo is building (`CARGO_MANIFEST_DIR`, `OUT_DIR`).
    pub fn new() -> Self {
        let var = |name: &str| -> PathBuf {
            std::env::var_os(name)
                .unwrap_or_else(|| panic!("{name} is not set: call this from a build script"))
                .into()
        };
        Skeletons {
            crate_dir: var("CARGO_MANIFEST_DIR"),
            out_dir: var("OUT_DIR"),
            includes: Vec::new(),
            programs: Vec::new(),
        }
    }

    /// A directory of headers, relative to the crate (or absolute); a
    /// change in it rebuilds the programs.
    pub fn include(mut self, dir: impl AsRef<Path>) -> Self {
        self.includes.push(self.crate_dir.join(dir));
        self
    }

    /// Programs to build, by name: `src/bpf/NAME.bpf.c` each.
    pub fn programs(mut self, names: &[&str]) -> Self {
        self.programs
            .extend(names.iter().map(|name| (*name).to_owned()));
        self
    }

    /// Builds every program and its skeleton; a failure panics with the
    /// compiler's words and where the headers were looked for, as a build
    /// script's failure does.
    pub fn build(self) {
        let sources = self.crate_dir.join("src/bpf");
        println!("cargo:rerun-if-changed={}", sources.display());
        for dir in &self.includes {
            println!("cargo:rerun-if-changed={}", dir.display());
        }
        let mut includes = self.includes.clone();
        includes.extend(system_includes());
        let args: Vec<OsString> = includes
            .iter()
            .flat_map(|dir| [OsString::from("-I"), dir.clone().into_os_string()])
            .collect();
        for name in &self.programs {
            let source = sources.join(format!("{name}.bpf.c"));
            let built = libbpf_cargo::SkeletonBuilder::new()
                .source(&source)
                .obj(self.out_dir.join(format!("{name}.bpf.o")))
                .clang_args(args.clone())
                .build_and_generate(self.out_dir.join(format!("{name}.skel.rs")));
            if let Err(err) = built {
                panic!(
                    "building {}: {err:#}\nheaders are looked for in: {}\n\
                     a missing clang or kernel header package is installed by `harness setup`",
                    source.display(),
                    show(&includes)
                );
            }
        }
    }
}

/// The system's include directories BPF programs need beyond clang's own:
/// the multiarch one (`/usr/include/x86_64-linux-gnu` on Debian), as
/// `clang -print-multiarch` (or `gcc -dumpmachine`) names it, where it exists.
pub fn system_includes() -> Vec<PathBuf> {
    let triple = [("clang", "-print-multiarch"), ("gcc", "-dumpmachine")]
        .into_iter()
        .find_map(|(program, flag)| {
            let output = Command::new(program).arg(flag).output().ok()?;
            let text = String::from_utf8(output.stdout).ok()?;
            let triple = text.trim().to_owned();
            (output.status.success() && !triple.is_empty()).then_some(triple)
        });
    triple
        .map(|triple| Path::new("/usr/include").join(triple))
        .filter(|dir| dir.is_dir())
        .into_iter()
        .collect()
}

fn show(dirs: &[PathBuf]) -> String {
    let shown: Vec<String> = dirs.iter().map(|dir| dir.display().to_string()).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_multiarch_directory_is_found_where_asm_types_is() {
        // On this project's machines (Debian) <asm/types.h> is in the
        // multiarch directory, which is what the BPF programs need.
        let found = system_includes();
        assert!(
            found.iter().any(|dir| dir.join("asm/types.h").is_file()),
            "no include directory with asm/types.h among {found:?}"
        );
    }
}
