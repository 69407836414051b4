//! Where the kernel source comes from: how a user names a kernel (a Debian
//! series such as `6.12` or `7.3`, or a kernel tree), the tarball or tree
//! that resolves to, what identifies it for the cache, and whether it is
//! new enough.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::config::Series;
use crate::progress::Progress;

/// Bookworm's own kernel source, installed by `harness setup`.
pub(crate) const DEFAULT_SERIES: Series = Series {
    major: 6,
    minor: 12,
};

/// How a user names a kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSpec {
    /// Debian's `linux-source-X.Y` package: installed, or fetched into the cache.
    Packaged(Series),
    /// A kernel tree, built in place.
    Tree(PathBuf),
}

impl std::fmt::Display for KernelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelSpec::Packaged(series) => write!(f, "{series}"),
            KernelSpec::Tree(path) => write!(f, "{}", path.display()),
        }
    }
}

impl std::str::FromStr for KernelSpec {
    type Err = String;

    /// `6.12` and `7.3` are Debian series; anything with a `/`, or a
    /// directory that exists, is a tree.
    fn from_str(text: &str) -> Result<Self, String> {
        let path = Path::new(text);
        if text.contains('/') || path.is_dir() {
            return Ok(KernelSpec::Tree(path.to_owned()));
        }
        match Series::parse(text) {
            Some(series) if text.split('.').count() == 2 => Ok(KernelSpec::Packaged(series)),
            _ => Err(format!(
                "`{text}` names no kernel: give a Debian series such as 6.12 or 7.3, \
                 or the path of a kernel tree"
            )),
        }
    }
}

impl Default for KernelSpec {
    fn default() -> Self {
        KernelSpec::Packaged(DEFAULT_SERIES)
    }
}

impl KernelSpec {
    /// The source this names: an installed Debian tarball, one fetched into
    /// the cache, or the tree.
    pub(crate) fn resolve(&self, cache: &Path) -> Result<KernelSource> {
        match self {
            KernelSpec::Tree(path) => Ok(KernelSource::Tree(path.clone())),
            KernelSpec::Packaged(series) => {
                let installed = PathBuf::from(format!("/usr/src/linux-source-{series}.tar.xz"));
                if installed.is_file() {
                    return Ok(KernelSource::Tarball(installed));
                }
                let fetched = super::debian::fetch(*series, cache)?;
                Ok(KernelSource::Tarball(fetched))
            }
        }
    }
}

/// Where a kernel's source is.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// A Debian `linux-source-X.Y.tar.xz`, extracted into the cache.
    Tarball(PathBuf),
    /// A kernel tree, built in place.
    Tree(PathBuf),
}

#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error(
        "no kernel source: {path} does not exist.\n\
         Install Debian's package with `apt-get install linux-source-6.12` (`harness setup` does), \
         or name another kernel with --kernel (a Debian series such as 7.3, or a kernel tree)"
    )]
    TarballMissing { path: String },
    #[error("{path} is not a kernel tree (it has no Makefile with VERSION and PATCHLEVEL, or no include/linux/bpf.h)")]
    NotAKernelTree { path: String },
    #[error(
        "kernel {version} at {path} is too old for struct_ops in modules: it needs 6.11 or newer \
         (register_bpf_struct_ops() and .reg(void *kdata, struct bpf_link *link)).\n\
         Use Debian's linux-source-6.12 (the default) or a newer tree"
    )]
    TooOld { version: String, path: String },
}

impl KernelSource {
    /// What identifies this source's content, for the cache key. Cheap
    /// after the first time: a cache hit must cost well under a second.
    pub(crate) fn identity(&self, cache: &Path) -> Result<String> {
        match self {
            KernelSource::Tarball(path) => {
                let metadata =
                    std::fs::metadata(path).map_err(|_| SourceError::TarballMissing {
                        path: path.display().to_string(),
                    })?;
                let digest = tarball_digest(path, &metadata, cache)?;
                Ok(format!("tarball sha256 {digest}"))
            }
            KernelSource::Tree(path) => tree_identity(path),
        }
    }

    /// The kernel series, for choosing fragments: from a Debian tarball's
    /// name (`linux-source-6.12.tar.xz`), or a tree's top Makefile.
    pub(crate) fn series(&self) -> Result<Series> {
        match self {
            KernelSource::Tarball(path) => path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_prefix("linux-source-"))
                .and_then(Series::parse)
                .with_context(|| {
                    format!(
                        "cannot tell the kernel series of {} from its name \
                         (expected linux-source-MAJOR.MINOR.tar.xz)",
                        path.display()
                    )
                }),
            KernelSource::Tree(path) => {
                let version = kernel_version(path)?;
                Series::parse(&version)
                    .with_context(|| format!("{} has no MAJOR.MINOR version", path.display()))
            }
        }
    }

    /// The directory to run make in, extracting the tarball into the cache the first time.
    pub fn prepare(&self, cache: &Path, progress: &Progress) -> Result<PathBuf> {
        let dir = match self {
            KernelSource::Tree(path) => path.clone(),
            KernelSource::Tarball(tarball) => {
                extract_tarball(tarball, &self.identity(cache)?, cache, progress)?
            }
        };
        check_new_enough(&dir)?;
        Ok(dir)
    }
}

/// The SHA-256 of a tarball's content, remembered in the cache per path,
/// size and modification time: reinstalling the same package (a new mtime,
/// the same bytes) costs one hash, never a kernel build.
fn tarball_digest(path: &Path, metadata: &std::fs::Metadata, cache: &Path) -> Result<String> {
    let stamp = DigestStamp {
        path: path.to_owned(),
        size: metadata.len(),
        modified: crate::paths::mtime_nanos(metadata),
        sha256: String::new(),
    };
    let memo = cache.join("sources").join(format!(
        "{:x}.digest.json",
        Sha256::digest(path.as_os_str().as_encoded_bytes())
    ));
    let remembered: Option<DigestStamp> = std::fs::read_to_string(&memo)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if let Some(known) = remembered.filter(|known| known.same_file(&stamp)) {
        return Ok(known.sha256);
    }
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("hashing {}", path.display()))?;
    let stamp = DigestStamp {
        sha256: format!("{:x}", hasher.finalize()),
        ..stamp
    };
    crate::paths::write_atomically(&memo, serde_json::to_string_pretty(&stamp)?.as_bytes())?;
    Ok(stamp.sha256)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DigestStamp {
    path: PathBuf,
    size: u64,
    modified: u128,
    sha256: String,
}

impl DigestStamp {
    fn same_file(&self, other: &DigestStamp) -> bool {
        (&self.path, self.size, self.modified) == (&other.path, other.size, other.modified)
    }
}

/// A tree is built in place, one build directory per tree (with its
/// fragments and toolchain), and make decides what an edit made stale: its
/// identity is where it is, not what it holds.
fn tree_identity(path: &Path) -> Result<String> {
    if !path.join("Makefile").is_file() {
        bail!(SourceError::NotAKernelTree {
            path: path.display().to_string()
        });
    }
    let canonical = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    Ok(format!("tree {}", canonical.display()))
}

/// What changes when anything in a tree is edited, added or removed: the
/// number of files, their total size and the newest modification time
/// (`.git` left out). Far cheaper than a make that finds nothing to do.
pub(crate) fn tree_fingerprint(tree: &Path) -> Result<String> {
    let (mut files, mut bytes, mut newest) = (0u64, 0u64, 0u128);
    let mut pending = vec![tree.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries.flatten() {
            if entry.file_name() == ".git" {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
                continue;
            }
            files += 1;
            bytes += metadata.len();
            newest = newest.max(crate::paths::mtime_nanos(&metadata));
        }
    }
    Ok(format!("{files} files, {bytes} bytes, newest {newest}"))
}

fn extract_tarball(
    tarball: &Path,
    identity: &str,
    cache: &Path,
    progress: &Progress,
) -> Result<PathBuf> {
    let key = format!("{:x}", Sha256::digest(identity.as_bytes()));
    let sources = cache.join("sources");
    let done = sources.join(&key[..16]);
    if let Some(tree) = only_subdirectory(&done)? {
        return Ok(tree);
    }
    std::fs::create_dir_all(&sources).with_context(|| format!("creating {}", sources.display()))?;
    // An extracted 6.12 or 7.3 tree takes 1.7 to 1.8 GB.
    crate::paths::require_room(
        &sources,
        2 << 30,
        &format!("extracting {}", tarball.display()),
    )?;
    // Extract beside the final place and rename, so a half-extracted tree is never used.
    let partial = tempfile::Builder::new()
        .prefix(".extracting-")
        .tempdir_in(&sources)
        .with_context(|| format!("creating a temporary directory in {}", sources.display()))?;
    let step = progress.step(format!("extracting {}", tarball.display()));
    duct::cmd!("tar", "-xf", tarball, "-C", partial.path())
        .stdout_null()
        .run()
        .with_context(|| format!("extracting {}", tarball.display()))?;
    step.done();
    let partial = partial.keep();
    if let Err(err) = std::fs::rename(&partial, &done) {
        // Another process won the race; use its copy.
        let _ = std::fs::remove_dir_all(&partial);
        if !done.is_dir() {
            return Err(err)
                .with_context(|| format!("moving the extracted source to {}", done.display()));
        }
    }
    only_subdirectory(&done)?.with_context(|| format!("{} holds no kernel tree", tarball.display()))
}

/// The tree a tarball extracted into `dir` (it holds one top directory).
fn only_subdirectory(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut subdirs = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_dir());
    Ok(subdirs.next())
}

/// `6.12.57` from the tree's top Makefile.
pub(crate) fn kernel_version(tree: &Path) -> Result<String> {
    let makefile = std::fs::read_to_string(tree.join("Makefile")).map_err(|_| {
        SourceError::NotAKernelTree {
            path: tree.display().to_string(),
        }
    })?;
    parse_version(&makefile).ok_or_else(|| {
        SourceError::NotAKernelTree {
            path: tree.display().to_string(),
        }
        .into()
    })
}

fn parse_version(makefile: &str) -> Option<String> {
    let field = |name: &str| {
        makefile.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let version = field("VERSION").filter(|v| !v.is_empty())?;
    let patchlevel = field("PATCHLEVEL").filter(|v| !v.is_empty())?;
    let sublevel = field("SUBLEVEL").unwrap_or_default();
    Some(if sublevel.is_empty() {
        format!("{version}.{patchlevel}")
    } else {
        format!("{version}.{patchlevel}.{sublevel}")
    })
}

/// Decides by the API the module uses, not by version number, so a
/// backport counts; the version is for the message.
fn check_new_enough(tree: &Path) -> Result<()> {
    let version = kernel_version(tree)?;
    let bpf_h = std::fs::read_to_string(tree.join("include/linux/bpf.h")).map_err(|_| {
        SourceError::NotAKernelTree {
            path: tree.display().to_string(),
        }
    })?;
    if !has_module_struct_ops_api(&bpf_h) {
        bail!(SourceError::TooOld {
            version,
            path: tree.display().to_string()
        });
    }
    Ok(())
}

fn has_module_struct_ops_api(bpf_h: &str) -> bool {
    bpf_h.contains("register_bpf_struct_ops")
        && bpf_h.contains("int (*reg)(void *kdata, struct bpf_link *link);")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_from_the_top_makefile() {
        let makefile = "# SPDX\nVERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 57\nEXTRAVERSION =\nNAME = Baby Opossum\n";
        assert_eq!(parse_version(makefile).as_deref(), Some("6.12.57"));
        assert_eq!(parse_version("all:\n\ttrue\n"), None);
    }

    #[test]
    fn the_6_1_api_is_too_old_and_6_12_is_not() {
        // 6.1: struct_ops types were built in, .reg took only kdata.
        let v6_1 =
            "struct bpf_struct_ops {\n\tint (*reg)(void *kdata);\n\tvoid (*unreg)(void *kdata);\n";
        let v6_12 = "\tint (*reg)(void *kdata, struct bpf_link *link);\n\
                     #define register_bpf_struct_ops(st_ops, type) __register_bpf_struct_ops(st_ops)\n";
        assert!(!has_module_struct_ops_api(v6_1));
        assert!(has_module_struct_ops_api(v6_12));
    }

    #[test]
    fn a_missing_tarball_says_how_to_get_one() {
        let source = KernelSource::Tarball(PathBuf::from("/nonexistent/linux-source-6.12.tar.xz"));
        let message = source
            .identity(Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("apt-get install linux-source-6.12"),
            "{message}"
        );
        assert!(message.contains("--kernel"), "{message}");
    }

    #[test]
    fn a_directory_without_a_makefile_is_not_a_kernel_tree() {
        let dir = tempfile::tempdir().unwrap();
        let message = KernelSource::Tree(dir.path().to_owned())
            .identity(dir.path())
            .unwrap_err()
            .to_string();
        assert!(message.contains("is not a kernel tree"), "{message}");
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    #[test]
    fn the_same_bytes_under_a_new_mtime_keep_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let tarball = dir.path().join("linux.tar.xz");
        std::fs::write(&tarball, b"kernel source").unwrap();
        let source = KernelSource::Tarball(tarball.clone());
        let first = source.identity(&cache).unwrap();
        // What `apt-get install --reinstall` does: the same content, written anew.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&tarball, b"kernel source").unwrap();
        assert_eq!(source.identity(&cache).unwrap(), first);
        std::fs::write(&tarball, b"kernel source, patched").unwrap();
        assert_ne!(source.identity(&cache).unwrap(), first);
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn a_kernel_is_named_by_its_series_or_its_tree() {
        let series = |text: &str| text.parse::<KernelSpec>();
        assert_eq!(
            series("7.3"),
            Ok(KernelSpec::Packaged(Series { major: 7, minor: 3 }))
        );
        assert_eq!(series("6.12"), Ok(KernelSpec::default()));
        assert_eq!(
            series("/src/linux"),
            Ok(KernelSpec::Tree(PathBuf::from("/src/linux")))
        );
        assert_eq!(
            series("./linux"),
            Ok(KernelSpec::Tree(PathBuf::from("./linux")))
        );
        let err = series("7.3.4").unwrap_err();
        assert!(
            err.contains("give a Debian series such as 6.12 or 7.3"),
            "{err}"
        );
        assert!(series("latest").is_err());
        assert_eq!(
            KernelSpec::Packaged(Series { major: 7, minor: 3 }).to_string(),
            "7.3"
        );
    }

    #[test]
    fn an_edit_an_addition_or_a_removal_changes_a_trees_fingerprint() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("kernel/bpf")).unwrap();
        let file = tree.path().join("kernel/bpf/x.c");
        std::fs::write(&file, "int x;\n").unwrap();
        let first = tree_fingerprint(tree.path()).unwrap();
        assert_eq!(tree_fingerprint(tree.path()).unwrap(), first);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, "int y;\n").unwrap();
        let edited = tree_fingerprint(tree.path()).unwrap();
        assert_ne!(edited, first);
        std::fs::write(tree.path().join("new.c"), "").unwrap();
        let added = tree_fingerprint(tree.path()).unwrap();
        assert_ne!(added, edited);
        std::fs::remove_file(tree.path().join("new.c")).unwrap();
        assert_ne!(tree_fingerprint(tree.path()).unwrap(), added);
    }
}
