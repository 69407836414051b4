//! The shape of the crates: the core (the harness's crates) names no
//! subject, depends along its contracts (wire, guest runtime, loader
//! helpers, host, tool), and no module imports its way back to itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The core's crates: (directory, package name).
const CORE: [(&str, &str); 5] = [
    ("guest-agent/wire", "harness-wire"),
    ("guest-agent", "guest-agent"),
    ("guest-agent/loader", "harness-loader"),
    ("harness/host", "harness-host"),
    ("harness", "harness"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of a crate's own (not of the crates nested in it).
fn crate_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let nested = path.join("Cargo.toml").is_file();
        let name = entry.file_name();
        if path.is_dir() && !nested && name != "target" {
            crate_files(&path, files);
        } else if path.is_file() {
            files.push(path);
        }
    }
}

#[test]
fn no_core_crate_names_a_subject() {
    // This repository's subjects, by their names, loaders, modules and
    // scenarios. A kernel type (tcp_congestion_ops) is no subject: `harness
    // new` scaffolds implementations of it.
    let names = [
        "bpf_testmod",
        "tcp_ca",
        "vmtest_reno",
        "struct_ops once",
        "\"trigger\"",
        "\"no_module\"",
        "testmod",
    ];
    let mut found = Vec::new();
    for (dir, _) in CORE {
        let mut files = Vec::new();
        crate_files(&root().join(dir), &mut files);
        assert!(!files.is_empty(), "no files in {dir}");
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for (index, line) in text.lines().enumerate() {
                if let Some(name) = names.iter().find(|name| line.contains(*name)) {
                    let file = file.strip_prefix(root()).unwrap().display();
                    found.push(format!("{file}:{}: {name}", index + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the core names a subject:\n{}",
        found.join("\n")
    );
}

/// The harness's crates each package they depend on, from their Cargo.toml.
fn core_dependencies() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    CORE.iter()
        .map(|(dir, name)| {
            let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
            let uses = CORE
                .iter()
                .map(|(_, other)| *other)
                .filter(|other| other != name)
                .filter(|other| {
                    manifest.lines().any(|line| {
                        line.starts_with(&format!("{other} "))
                            || line.starts_with(&format!("{other}."))
                    })
                })
                .collect();
            (*name, uses)
        })
        .collect()
}

#[test]
fn the_crates_depend_along_the_contracts() {
    let set = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
    let expected: BTreeMap<&str, BTreeSet<&str>> = [
        ("harness-wire", set(&[])),
        ("guest-agent", set(&["harness-wire"])),
        ("harness-loader", set(&["harness-wire"])),
        ("harness-host", set(&["harness-wire", "guest-agent"])),
        (
            "harness",
            set(&[
                "harness-wire",
                "guest-agent",
                "harness-loader",
                "harness-host",
            ]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(core_dependencies(), expected);
}

/// A source file's module path within its crate: `runtime/context` for
/// `src/runtime/context.rs`, `vm` for `src/vm/mod.rs`, "" for lib.rs.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let text = relative.to_string_lossy().into_owned();
    let text = text.trim_end_matches("/mod").to_owned();
    if text == "lib" || text == "main" {
        String::new()
    } else {
        text
    }
}

/// The modules `module` refers to by `crate::a::b` or `super::a` paths,
/// narrowed to modules that exist, leaving out its own ancestors (a child
/// using its parent's items is how a module splits into files).
fn references(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.rsplit_once('/').map_or("", |(parent, _)| parent);
    let mut found = BTreeSet::new();
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        for (at, _) in code.match_indices(prefix) {
            let path: String = code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut target = base.to_owned();
            let mut best = None;
            for part in path.split("::").filter(|part| !part.is_empty()) {
                target = if target.is_empty() {
                    part.to_owned()
                } else {
                    format!("{target}/{part}")
                };
                if modules.contains(&target) {
                    best = Some(target.clone());
                }
            }
            if let Some(target) = best {
                let ancestor = module == target || module.starts_with(&format!("{target}/"));
                if !ancestor {
                    found.insert(target);
                }
            }
        }
    }
    found
}

/// A cycle in `edges`, as the modules along it, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_of_a_core_crate_imports_its_way_back_to_itself() {
    for (dir, name) in CORE {
        let src = root().join(dir).join("src");
        let mut files = Vec::new();
        crate_files(&src, &mut files);
        files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
        let modules: BTreeSet<String> = files.iter().map(|file| module_of(&src, file)).collect();
        let edges = files
            .iter()
            .map(|file| {
                let module = module_of(&src, file);
                let code = std::fs::read_to_string(file).unwrap();
                // Unit tests may reach anywhere; a doc link is no import.
                let code = code.split("#[cfg(test)]").next().unwrap_or_default();
                let code: String = code
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let refs = references(&module, &code, &modules);
                (module, refs)
            })
            .collect();
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "{name}: the modules {} import each other in a cycle",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_cycle_check_finds_a_cycle_through_siblings_and_allows_a_child_its_parent() {
    let modules: BTreeSet<String> = ["a", "b", "vm", "vm/watch"].map(String::from).into();
    let edges: BTreeMap<String, BTreeSet<String>> = [
        (
            "a".to_owned(),
            references("a", "use crate::b::Thing;", &modules),
        ),
        (
            "b".to_owned(),
            references("b", "fn f() { crate::a::g() }", &modules),
        ),
        (
            "vm".to_owned(),
            references("vm", "use self::watch::W;", &modules),
        ),
        (
            "vm/watch".to_owned(),
            references("vm/watch", "use super::Vm; use crate::vm::X;", &modules),
        ),
    ]
    .into();
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    let mut acyclic = edges.clone();
    acyclic.remove("b");
    assert_eq!(find_cycle(&acyclic), None);
}
