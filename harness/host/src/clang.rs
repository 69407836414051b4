//! Which clang compiles the BPF the harness builds itself (the kernel's own
//! schedulers, a subject's `bpf_objects`): the newest on `PATH`, `clang` or
//! a versioned `clang-22`. 7.x's sched_ext headers need a newer one than
//! Debian 12's default clang 14 (their BPF arena code fails there with
//! "static_assert expression is not an integral constant expression"), and
//! clang 19 compiles `scx_qmap`'s arena pointers into code the verifier
//! refuses; setup installs `clang-22` for that (see `setup`'s list).

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::process::{first_line_of, first_version};

/// The newest clang on `PATH` and its version: the first of each name in
/// `PATH`'s order (the one a shell would run), None when there is none
/// that says its version.
pub(crate) fn newest() -> Option<&'static (PathBuf, (u32, u32))> {
    static NEWEST: OnceLock<Option<(PathBuf, (u32, u32))>> = OnceLock::new();
    NEWEST
        .get_or_init(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut seen: Vec<(String, PathBuf)> = Vec::new();
            for dir in std::env::split_paths(&path) {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for name in entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()) {
                    if is_clang(&name) && !seen.iter().any(|(known, _)| *known == name) {
                        seen.push((name.clone(), dir.join(&name)));
                    }
                }
            }
            let versioned = seen.into_iter().filter_map(|(_, path)| {
                let said = first_line_of(&path.to_string_lossy(), "--version");
                Some((path, first_version(&said)?))
            });
            versioned.max_by_key(|(_, version)| *version)
        })
        .as_ref()
}

/// The compiler to run: [`newest`], else plain `clang` (whose absence
/// the command's error then names).
pub(crate) fn compiler() -> String {
    newest().map_or_else(
        || "clang".to_owned(),
        |(path, _)| path.to_string_lossy().into_owned(),
    )
}

/// `clang` or `clang-N`, not `clang-cpp` or `clang-format-19`.
fn is_clang(name: &str) -> bool {
    name == "clang"
        || name.strip_prefix("clang-").is_some_and(|version| {
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clang_and_its_versioned_names_are_compilers() {
        assert!(is_clang("clang") && is_clang("clang-19") && is_clang("clang-14"));
        assert!(!is_clang("clang-cpp") && !is_clang("clang-format-19") && !is_clang("clang-"));
    }
}
