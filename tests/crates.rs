//! The shape of the crates: the core (the harness's crates) names no
//! subject, depends along its contracts (wire, guest runtime, loader
//! helpers, host, tool), and no module imports its way back to itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::visit::{self, Visit};
use syn::{Item, ItemMod, ItemUse, Macro, UseTree};

/// The core's crates: (directory, package name).
const CORE: [(&str, &str); 6] = [
    ("guest-agent/wire", "harness-wire"),
    ("guest-agent", "guest-agent"),
    ("guest-agent/loader", "harness-loader"),
    ("harness/host", "harness-host"),
    ("harness/build", "harness-build"),
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
        // The host reads results, renders them and names splat classes
        // through the contracts alone: it never depends on the guest runtime.
        ("harness-host", set(&["harness-wire"])),
        ("harness-build", set(&[])),
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

/// The modules `module` refers to, narrowed to modules that exist (the
/// longest prefix of each path that is one), leaving out itself and its
/// ancestors (a child using its parent's items is how a module splits into
/// files). The file is read as Rust: see `Paths`.
fn references(
    module: &str,
    code: &str,
    modules: &BTreeSet<String>,
) -> syn::Result<BTreeSet<String>> {
    let mut paths = Paths {
        scope: module
            .split('/')
            .filter(|part| !part.is_empty())
            .map(String::from)
            .collect(),
        modules,
        found: Vec::new(),
    };
    paths.visit_file(&syn::parse_file(code)?);
    let mut found = BTreeSet::new();
    for path in paths.found {
        let longest = (1..=path.len())
            .rev()
            .map(|len| path[..len].join("/"))
            .find(|target| modules.contains(target));
        if let Some(target) = longest {
            let ancestor = module == target || module.starts_with(&format!("{target}/"));
            if !ancestor {
                found.insert(target);
            }
        }
    }
    Ok(found)
}

/// What one file's paths name, from the crate's root: every `use` tree
/// (groups, nesting, `self`, `super`, `crate`, renames, globs, however many
/// lines), every path in code, and every path in a macro's arguments, in
/// inline modules and function bodies too. Comments and strings are no
/// paths; `#[cfg(test)]` items are left out (unit tests may reach anywhere).
struct Paths<'m> {
    /// The module being read, then each inline module the walk is in.
    scope: Vec<String>,
    modules: &'m BTreeSet<String>,
    /// Each path, resolved to segments from the crate's root.
    found: Vec<Vec<String>>,
}

impl Paths<'_> {
    /// `path` as written in the current scope. A first segment other than
    /// `crate`, `self` or `super` is a child module of the scope when there
    /// is one (2018 paths), otherwise another crate or a local item: none.
    fn note(&mut self, path: &[String]) {
        let mut segments = path.iter().map(String::as_str).peekable();
        let mut resolved = match segments.peek() {
            Some(&"crate") => {
                segments.next();
                Vec::new()
            }
            Some(&"self") => {
                segments.next();
                self.scope.clone()
            }
            Some(&"super") => {
                let mut base = self.scope.clone();
                while segments.next_if_eq(&"super").is_some() {
                    base.pop();
                }
                base
            }
            Some(first) => {
                let child = [self.scope.as_slice(), &[first.to_string()]].concat();
                if !self.modules.contains(&child.join("/")) {
                    return;
                }
                self.scope.clone()
            }
            None => return,
        };
        // `self` further on is the group's own prefix: `a::{self, b}`.
        resolved.extend(segments.filter(|part| *part != "self").map(String::from));
        self.found.push(resolved);
    }

    /// Paths in a macro's arguments, which syn leaves as tokens: each run of
    /// tokens that starts a path (`a::`, `$crate::`) is read as a use tree,
    /// so `crate::a::f(x)` and `crate::{a, b}` both count.
    fn macro_paths(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (at, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.macro_paths(group.stream()),
                TokenTree::Ident(_) if starts_path(&trees, at) => {
                    let rest: TokenStream = trees[at..].iter().cloned().collect();
                    let leading_tree = |input: ParseStream| {
                        let tree: UseTree = input.parse()?;
                        input.parse::<TokenStream>()?;
                        Ok(tree)
                    };
                    if let Ok(tree) = leading_tree.parse2(rest) {
                        let mut paths = Vec::new();
                        use_paths(&tree, &mut Vec::new(), &mut paths);
                        paths.iter().for_each(|path| self.note(path));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether the token at `at` begins a path: followed by `::`, and not
/// itself a later segment of one (a lone `:`, as in `x: crate::T` or
/// `S { field: 1 }`, is no path separator).
fn starts_path(trees: &[TokenTree], at: usize) -> bool {
    let colon = |at: usize, spacing: Spacing| {
        matches!(trees.get(at), Some(TokenTree::Punct(punct))
            if punct.as_char() == ':' && (spacing == Spacing::Alone || punct.spacing() == Spacing::Joint))
    };
    let colons = |at: usize| colon(at, Spacing::Joint) && colon(at + 1, Spacing::Alone);
    colons(at + 1) && !(at >= 2 && colons(at - 2))
}

/// Each path a use tree names, its group prefixes spelled out:
/// `a::{b::{c, d as e}, *}` is `a::b::c`, `a::b::d` and `a`.
fn use_paths(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let with =
        |prefix: &Vec<String>, last: &syn::Ident| [prefix.clone(), vec![last.to_string()]].concat();
    match tree {
        UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            use_paths(&path.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(name) => out.push(with(prefix, &name.ident)),
        UseTree::Rename(rename) => out.push(with(prefix, &rename.ident)),
        UseTree::Glob(_) => out.push(prefix.clone()),
        UseTree::Group(group) => {
            for tree in &group.items {
                use_paths(tree, prefix, out);
            }
        }
    }
}

/// `#[cfg(test)]` on an item: unit tests, which may reach anywhere.
fn test_only(item: &Item) -> bool {
    let attrs = match item {
        Item::Const(item) => &item.attrs,
        Item::Enum(item) => &item.attrs,
        Item::Fn(item) => &item.attrs,
        Item::Impl(item) => &item.attrs,
        Item::Macro(item) => &item.attrs,
        Item::Mod(item) => &item.attrs,
        Item::Static(item) => &item.attrs,
        Item::Struct(item) => &item.attrs,
        Item::Trait(item) => &item.attrs,
        Item::Type(item) => &item.attrs,
        Item::Use(item) => &item.attrs,
        _ => return false,
    };
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .is_ok_and(|arg| arg == "test")
    })
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if !test_only(item) {
            visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, module: &'ast ItemMod) {
        self.scope.push(module.ident.to_string());
        visit::visit_item_mod(self, module);
        self.scope.pop();
    }

    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        // `use ::name` names another crate.
        if item.leading_colon.is_none() {
            let mut paths = Vec::new();
            use_paths(&item.tree, &mut Vec::new(), &mut paths);
            paths.iter().for_each(|path| self.note(path));
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path
            .segments
            .iter()
            .map(|segment| segment.ident.to_string())
            .collect();
        // A lone `name` in code is a local (`watch`, a variable), not the module.
        let lone_name =
            segments.len() == 1 && !["crate", "self", "super"].contains(&segments[0].as_str());
        if path.leading_colon.is_none() && !lone_name {
            self.note(&segments);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        self.macro_paths(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
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

/// Each module of the crate whose sources are in `src`, and the modules it refers to.
fn module_edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    crate_files(src, &mut files);
    files.retain(|file| file.extension().is_some_and(|ext| ext == "rs"));
    let modules: BTreeSet<String> = files.iter().map(|file| module_of(src, file)).collect();
    files
        .iter()
        .map(|file| {
            let module = module_of(src, file);
            let code = std::fs::read_to_string(file)
                .unwrap_or_else(|err| panic!("reading {}: {err}", file.display()));
            let refs = references(&module, &code, &modules).unwrap_or_else(|err| {
                panic!(
                    "{} does not parse as Rust ({err}); the cycle check reads each core \
                     source file with syn: fix the file, or the syn features in Cargo.toml",
                    file.display()
                )
            });
            (module, refs)
        })
        .collect()
}

#[test]
fn no_module_of_a_core_crate_imports_its_way_back_to_itself() {
    for (dir, name) in CORE {
        let edges = module_edges(&root().join(dir).join("src"));
        // A crate of one file has no module to cycle through.
        assert!(!edges.is_empty(), "{name}: no modules found in {dir}/src");
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
    let refs = |module: &str, code: &str| {
        (
            module.to_owned(),
            references(module, code, &modules).unwrap(),
        )
    };
    let edges: BTreeMap<String, BTreeSet<String>> = [
        refs("a", "use crate::b::Thing;"),
        refs("b", "fn f() { crate::a::g() }"),
        refs("vm", "use self::watch::W;"),
        refs("vm/watch", "use super::Vm; use crate::vm::X;"),
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

/// A crate's `src/` in a scratch directory: (path under src, contents).
fn scratch_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a scratch directory in $TMPDIR");
    for (path, code) in files {
        let path = dir.path().join("src").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, code).unwrap();
    }
    dir
}

/// The test the cycle check failed: a cycle whose one import is grouped.
#[test]
fn a_cycle_through_a_grouped_import_fails_the_check() {
    let tree = scratch_crate(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use crate::{b, c};\npub struct Thing;\n"),
        ("b.rs", "use crate::a::Thing;\n"),
        ("c.rs", "pub fn f() {}\n"),
    ]);
    let edges = module_edges(&tree.path().join("src"));
    let set = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
    assert_eq!(edges["a"], set(&["b", "c"]));
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
}

/// Each import a different way, the cycle closing only through all of
/// them; and the same names in comments, strings and unit tests, which
/// must add nothing.
#[test]
fn nested_use_trees_and_every_way_to_name_a_module_are_followed() {
    let tree = scratch_crate(&[
        (
            "lib.rs",
            "mod a;\nmod b;\nmod c;\nmod d;\nmod e;\n\
             struct W {\n    a: u8,\n}\n\
             fn w() -> Vec<W> {\n    let a = 1;\n    let mut all = vec![W { a: 1 }];\n    \
             all.push(W { a });\n    all\n}\n",
        ),
        (
            "a.rs",
            "//! `use crate::d;` in a doc comment is no import, nor [`crate::e`].\n\
             use crate::{b, c as see};\n\
             // use crate::d;\n\
             /* use crate::e; */\n\
             pub const NAME: &str = \"use crate::d::{x, y};\";\n\
             #[derive(Default)]\npub struct Name(pub String);\n",
        ),
        (
            "b.rs",
            "use crate::c::{inner::{X, Y}, Z};\n\
             #[cfg(test)]\nmod tests {\n    use crate::d::*;\n}\n",
        ),
        (
            "c/mod.rs",
            "pub mod inner;\npub struct Z;\nfn g() {\n    use inner::X as _;\n}\n",
        ),
        (
            "c/inner.rs",
            "use super::super::{\n    self as root,\n    d::{\n        self,\n    },\n};\n\
             pub struct X;\npub struct Y;\n",
        ),
        (
            "d.rs",
            "mod private {\n    use super::super::e::*;\n}\n",
        ),
        (
            "e.rs",
            "fn h() -> Vec<String> {\n    \
             vec![{\n        let name: crate::a::Name = Default::default();\n        name.0\n    }]\n}\n",
        ),
    ]);
    let edges = module_edges(&tree.path().join("src"));
    let set = |names: &[&str]| {
        names
            .iter()
            .map(|name| name.to_string())
            .collect::<BTreeSet<_>>()
    };
    let expected: BTreeMap<String, BTreeSet<String>> = [
        ("", set(&[])),
        ("a", set(&["b", "c"])),
        ("b", set(&["c", "c/inner"])),
        ("c", set(&["c/inner"])),
        ("c/inner", set(&["d"])),
        ("d", set(&["e"])),
        ("e", set(&["a"])),
    ]
    .into_iter()
    .map(|(module, refs)| (module.to_owned(), refs))
    .collect();
    assert_eq!(edges, expected);
    let cycle = ["a", "b", "c", "c/inner", "d", "e", "a"];
    assert_eq!(find_cycle(&edges), Some(cycle.map(String::from).to_vec()));
}
