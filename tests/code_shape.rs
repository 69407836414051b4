//! The code stays readable: no function in the harness, the agent or the
//! loaders is longer than a screen (80 lines), so each can be read at once.

use std::path::{Path, PathBuf};

const LIMIT: usize = 80;
const FOLDERS: [&str; 6] = [
    "harness/src",
    "harness/host/src",
    "guest-agent/src",
    "guest-agent/wire/src",
    "guest-agent/loader/src",
    "bpf",
];

/// `text` with comments, strings and character literals blanked out (line
/// breaks kept), so that only code braces are left to count.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, span: &[char]| {
        out.extend(span.iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    };
    while i < chars.len() {
        let rest = &chars[i..];
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            (2..rest.len())
                .find(|&j| rest[j - 1] == '*' && rest[j] == '/')
                .map_or(rest.len(), |j| j + 1)
        } else if let Some(len) = raw_string(rest) {
            len
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if let Some(len) = char_literal(rest) {
            len
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        blank(&mut out, &rest[..end]);
        i += end;
    }
    out
}

/// The length of a raw string literal `r#"..."#` at the start of `rest`.
fn raw_string(rest: &[char]) -> Option<usize> {
    if rest.first() != Some(&'r') {
        return None;
    }
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    if rest.get(1 + hashes) != Some(&'"') {
        return None;
    }
    let body = 2 + hashes;
    (body..rest.len())
        .find(|&j| {
            rest[j] == '"'
                && rest[j + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&c| c == '#')
                    .count()
                    == hashes
        })
        .map(|j| j + 1 + hashes)
}

/// The length of a character literal (`'x'`, `'\n'`) at the start of `rest`;
/// a lifetime (`'a`) is not one.
fn char_literal(rest: &[char]) -> Option<usize> {
    match rest {
        ['\'', '\\', _, ..] => rest[2..].iter().position(|&c| c == '\'').map(|j| j + 3),
        ['\'', _, '\'', ..] => Some(3),
        _ => None,
    }
}

/// (name, first line, length in lines) of every function with a body in `code`.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut search = 0;
    while let Some(at) = code[search..].find("fn ").map(|at| at + search) {
        search = at + 3;
        let starts_word =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if !starts_word {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (Some(open), semi) = (code[at..].find('{'), code[at..].find(';')) else {
            continue;
        };
        if semi.is_some_and(|semi| semi < open) {
            continue;
        }
        let mut depth = 0;
        let mut close = at + open;
        for (offset, byte) in bytes[at + open..].iter().enumerate() {
            match byte {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                _ => continue,
            }
            if depth == 0 {
                close = at + open + offset;
                break;
            }
        }
        let first = code[..at].matches('\n').count() + 1;
        let last = code[..close].matches('\n').count() + 1;
        found.push((name, first, last - first + 1));
    }
    found
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_function_is_longer_than_a_screen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for folder in FOLDERS {
        rust_files(&root.join(folder), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut long = Vec::new();
    for file in files {
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for (name, line, length) in functions(&code) {
            if length > LIMIT {
                let file = file.strip_prefix(root).unwrap().display().to_string();
                long.push(format!("{file}:{line} {name}: {length} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {LIMIT} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_measure_sees_through_comments_and_strings() {
    let code = code_only(
        "fn a() {\n    let s = \"}\";\n    let c = '}';\n    // }\n    /* } */\n    let r = r#\"}\"#;\n}\nfn b<'x>(v: &'x u8) { }\n",
    );
    let found = functions(&code);
    assert_eq!(
        found,
        [("a".to_owned(), 1, 7), ("b".to_owned(), 8, 1)],
        "{code}"
    );
}

/// The library crates report through values, events and `tracing`; only
/// the `harness` crate (the command, the test runner, a loader's `main`)
/// writes to stdout or stderr.
#[test]
fn the_library_crates_never_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for folder in [
        "harness/host/src",
        "guest-agent/wire/src",
        "guest-agent/loader/src",
    ] {
        rust_files(&root.join(folder), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let printing = print_calls(&files, root);
    assert!(
        printing.is_empty(),
        "printing in a library crate:\n{}",
        printing.join("\n")
    );
}

/// Each line of `files` (comments and strings left out) that calls a print macro.
fn print_calls(files: &[PathBuf], root: &Path) -> Vec<String> {
    let macros = ["println!", "eprintln!", "print!", "eprint!", "dbg!"];
    let mut found = Vec::new();
    for file in files {
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for (number, line) in code.lines().enumerate() {
            let calls = macros.iter().any(|name| {
                line.match_indices(name).any(|(at, _)| {
                    let before = line[..at].chars().last();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            });
            if calls {
                let file = file.strip_prefix(root).unwrap().display();
                found.push(format!("{file}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    found
}
