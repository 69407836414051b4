//! Cache housekeeping: which kernel entries there are, how big, when last
//! used and by whom; pruning the least recently used; and the automatic cap.
//!
//! A process that uses a kernel entry holds a shared lock on
//! `kernels/<key>.use` (its lease, which also stamps the last use); one that
//! builds it holds `kernels/<key>.lock`. Pruning takes both exclusively
//! without waiting and leaves alone every entry it cannot take.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::kernel::Kernel;
use crate::paths::human;

/// Caps the cache (e.g. `25G`, `500M`); the default is `DEFAULT_LIMIT`.
pub(crate) const LIMIT_ENV: &str = "STRUCT_OPS_CACHE_LIMIT";
/// About twenty kernel entries: a day of kernels, not a full disk.
const DEFAULT_LIMIT: u64 = 30 << 30;

/// A shared hold on a kernel entry, for as long as it lives.
#[derive(Debug)]
pub(crate) struct Lease {
    _file: File,
}

/// Takes the lease on the entry `key` (waiting while a prune removes it,
/// after which the caller finds it gone and builds it again).
pub(crate) fn lease(cache: &Path, key: &str) -> Result<Lease> {
    let path = use_file(cache, key);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = open_lock_file(&path)?;
    file.lock_shared()
        .with_context(|| format!("locking {}", path.display()))?;
    // Its modification time is the entry's last use.
    let _ = file.set_modified(SystemTime::now());
    Ok(Lease { _file: file })
}

/// A lock file, created if missing, its content never touched.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn use_file(cache: &Path, key: &str) -> PathBuf {
    cache.join("kernels").join(format!("{key}.use"))
}

/// One kernel entry, as `harness cache list` shows it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Entry {
    /// The kernel's cache key, the name of its directory.
    pub(crate) key: String,
    /// `kernels/<key>` in the cache.
    pub(crate) dir: PathBuf,
    /// None for an unfinished build.
    pub(crate) kernel: Option<Kernel>,
    /// What the entry takes on disk.
    pub(crate) bytes: u64,
    /// When a process last took its lease; None if none ever did.
    pub(crate) last_used: Option<SystemTime>,
}

impl Entry {
    /// `6.12.117 default, packaged` or `7.3.0 debug, tree /src/linux`.
    pub(crate) fn describe(&self) -> String {
        let Some(kernel) = &self.kernel else {
            return "unfinished build".to_owned();
        };
        let source = match &kernel.tree_fingerprint {
            Some(_) => format!("tree {}", kernel.source_dir.display()),
            None => "packaged".to_owned(),
        };
        format!("{} {}, {source}", kernel.version, kernel.flavour.name())
    }
}

/// Every kernel entry, least recently used first.
pub fn entries(cache: &Path) -> Result<Vec<Entry>> {
    let kernels = cache.join("kernels");
    let Ok(dirs) = std::fs::read_dir(&kernels) else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    for dir in dirs.flatten().filter(|dir| dir.path().is_dir()) {
        let key = dir.file_name().to_string_lossy().into_owned();
        let path = dir.path();
        let kernel = std::fs::read_to_string(path.join("kernel.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let last_used = std::fs::metadata(use_file(cache, &key))
            .and_then(|metadata| metadata.modified())
            .ok();
        entries.push(Entry {
            bytes: size_of(&path),
            key,
            dir: path,
            kernel,
            last_used,
        });
    }
    entries.sort_by_key(|entry| entry.last_used);
    Ok(entries)
}

/// Bytes under `path` (what `du` would count, roughly: by the blocks a
/// file holds, since a VM template's memory file is mostly holes).
fn size_of(path: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => pending.push(entry.path()),
                Ok(metadata) => {
                    use std::os::unix::fs::MetadataExt;
                    total += metadata.blocks() * 512;
                }
                Err(_) => {}
            }
        }
    }
    total
}

/// Why an entry was not removed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kept {
    InUse,
    BeingBuilt,
}

/// Removes the entry unless another process holds it.
fn remove(cache: &Path, entry: &Entry) -> Result<Option<Kept>> {
    let lock = |path: PathBuf| -> Result<Option<File>> {
        let file = open_lock_file(&path)?;
        Ok(file.try_lock().is_ok().then_some(file))
    };
    let Some(_use) = lock(use_file(cache, &entry.key))? else {
        return Ok(Some(Kept::InUse));
    };
    let Some(_build) = lock(entry.dir.with_extension("lock"))? else {
        return Ok(Some(Kept::BeingBuilt));
    };
    std::fs::remove_dir_all(&entry.dir)
        .with_context(|| format!("removing {}", entry.dir.display()))?;
    Ok(None)
}

/// What a prune is to achieve.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Keep at most this many kernel entries, the most recently used.
    Newest(usize),
    /// Keep the entries under this many bytes in all.
    Bytes(u64),
}

/// One line per entry removed or kept back; least recently used go first.
pub fn prune(cache: &Path, target: Target, spare: Option<&str>) -> Result<Vec<String>> {
    let entries = entries(cache)?;
    let mut total: u64 = entries.iter().map(|entry| entry.bytes).sum();
    // Entries a held or spared one stands in for still count as kept.
    let older = match target {
        Target::Newest(keep) => entries.len().saturating_sub(keep),
        Target::Bytes(_) => entries.len(),
    };
    let mut said = Vec::new();
    for entry in &entries[..older] {
        if matches!(target, Target::Bytes(limit) if total <= limit) {
            break;
        }
        if spare == Some(entry.key.as_str()) {
            continue;
        }
        let what = format!(
            "{} ({}, {})",
            entry.key,
            entry.describe(),
            human(entry.bytes)
        );
        match remove(cache, entry)? {
            None => {
                total -= entry.bytes;
                said.push(format!("removed {what}"));
            }
            Some(Kept::InUse) => said.push(format!("kept {what}: another process uses it")),
            Some(Kept::BeingBuilt) => said.push(format!("kept {what}: being built")),
        }
    }
    Ok(said)
}

/// After a new entry is built: keep the cache under its limit, least
/// recently used entries first, never the new one. Best effort: a failure
/// to prune must not fail the run that built a kernel.
pub(crate) fn enforce_limit(cache: &Path, new_key: &str) {
    let limit = match limit() {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!("{err:#}; the cache is not capped");
            return;
        }
    };
    match prune(cache, Target::Bytes(limit), Some(new_key)) {
        Ok(said) => {
            for line in said {
                tracing::info!("cache over {}: {line}", human(limit));
            }
        }
        Err(err) => tracing::warn!("pruning the cache: {err:#}"),
    }
}

fn limit() -> Result<u64> {
    match &crate::settings::get().cache_limit {
        Some(text) => parse_size(text).with_context(|| format!("{LIMIT_ENV}={text}")),
        None => Ok(DEFAULT_LIMIT),
    }
}

/// `25G`, `500M`, `1024K` or plain bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'G' | 'g')) => (&text[..at], 30),
        Some((at, 'M' | 'm')) => (&text[..at], 20),
        Some((at, 'K' | 'k')) => (&text[..at], 10),
        _ => (text, 0),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .with_context(|| format!("`{text}` is not a size like 25G, 500M or 4096"))?;
    Ok(value << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("25G").unwrap(), 25 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert_eq!(human(3 << 29), "1.5G");
    }

    fn fake_entry(cache: &Path, key: &str, bytes: usize) {
        let dir = cache.join("kernels").join(key);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("build.log"), vec![b'x'; bytes]).unwrap();
    }

    #[test]
    fn prune_removes_the_least_recently_used_and_spares_entries_in_use() {
        let cache = tempfile::tempdir().unwrap();
        let cache = cache.path();
        for key in ["old", "held", "new"] {
            fake_entry(cache, key, 1000);
            drop(lease(cache, key).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Another process (here, a lease we hold) uses `held`.
        let held = lease(cache, "held").unwrap();
        std::fs::File::options()
            .write(true)
            .open(use_file(cache, "held"))
            .unwrap()
            .set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        let said = prune(cache, Target::Newest(1), None).unwrap();
        assert!(
            said.iter().any(|line| line.starts_with("kept held")),
            "{said:?}"
        );
        assert!(
            said.iter().any(|line| line.starts_with("removed old")),
            "{said:?}"
        );
        let left: Vec<String> = entries(cache).unwrap().into_iter().map(|e| e.key).collect();
        assert_eq!(left, ["held", "new"]);
        drop(held);
        let said = prune(cache, Target::Bytes(1500), Some("held")).unwrap();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("removed new"), "{said:?}");
    }
}
