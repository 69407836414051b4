//! Where things live: the cache outside any work tree, and atomic writes and locks in it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Overrides where kernels, modules and KVM verdicts are cached.
pub(crate) const CACHE_DIR_ENV: &str = "STRUCT_OPS_CACHE_DIR";

/// A file's modification time in nanoseconds since the epoch, 0 where the
/// filesystem keeps none: part of the stamps that say a file changed.
pub(crate) fn mtime_nanos(metadata: &std::fs::Metadata) -> u128 {
    metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_nanos())
}

/// `$STRUCT_OPS_CACHE_DIR`, else `$XDG_CACHE_HOME/struct-ops-vmtest`, else
/// `~/.cache/struct-ops-vmtest`: always outside the work tree, so a fresh
/// clone reuses a kernel built by another.
pub fn cache_dir() -> Result<PathBuf> {
    crate::settings::get().cache_dir.clone().context(
        "no cache directory is configured: the program using the harness's library installs \
         harness_host::settings::Settings with one first (the harness command and a subject's \
         test binary do, from STRUCT_OPS_CACHE_DIR, XDG_CACHE_HOME or HOME)",
    )
}

/// The cache directory a front end configures, from its environment as
/// `var` reads it: `STRUCT_OPS_CACHE_DIR`, else `$XDG_CACHE_HOME/struct-ops-vmtest`,
/// else `~/.cache/struct-ops-vmtest`.
pub fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<PathBuf> {
    if let Some(dir) = var(CACHE_DIR_ENV).filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("struct-ops-vmtest"));
    }
    let home = var("HOME").filter(|home| !home.is_empty()).context(
        "neither STRUCT_OPS_CACHE_DIR, XDG_CACHE_HOME nor HOME is set: set STRUCT_OPS_CACHE_DIR",
    )?;
    Ok(PathBuf::from(home).join(".cache/struct-ops-vmtest"))
}

/// The virtualenv `harness setup` fills with virtme-ng and check-jsonschema.
pub fn venv_dir() -> Result<PathBuf> {
    Ok(venv_in(&cache_dir()?))
}

/// Where `harness setup` puts its virtualenv in the cache `cache`.
pub(crate) fn venv_in(cache: &std::path::Path) -> PathBuf {
    cache.join("venv")
}

/// Writes `contents` to `path` so that a reader sees the old file or the
/// new one, never a part: a temporary file beside it, then a rename.
pub(crate) fn write_atomically(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    place_atomically(path, contents, None)
}

/// [`write_atomically`], the file executable (0755) before it is named.
pub(crate) fn write_executable_atomically(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    place_atomically(path, contents, Some(0o755))
}

fn place_atomically(path: &std::path::Path, contents: &[u8], mode: Option<u32>) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", file.path().display()))?;
    if let Some(mode) = mode {
        let permissions = std::os::unix::fs::PermissionsExt::from_mode(mode);
        std::fs::set_permissions(file.path(), permissions)
            .with_context(|| format!("making {} executable", file.path().display()))?;
    }
    file.persist(path)
        .with_context(|| format!("moving the new {} into place", path.display()))?;
    Ok(())
}

/// An exclusive lock on `path` (created, with its directory, if missing),
/// held until the returned file is dropped. Says `busy` while it waits.
pub(crate) fn lock_exclusive(path: &std::path::Path, busy: &str) -> Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let lock =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    if lock.try_lock().is_err() {
        tracing::info!("{busy}; waiting for it");
        lock.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(lock)
}

/// Fails, before `what` starts, when the filesystem holding `dir` has less
/// than `need` bytes free: a kernel build that runs out of disk fails
/// half an hour in, with make's words about one object file.
pub(crate) fn require_room(dir: &std::path::Path, need: u64, what: &str) -> Result<()> {
    let free = free_bytes(dir)?;
    if free >= need {
        return Ok(());
    }
    bail!(
        "{what} needs about {} free in {}, and {} is: free some space \
         (`harness cache list` shows the kernels, `harness cache prune --keep N` \
         removes the least recently used) or point {} at a larger disk",
        human(need),
        dir.display(),
        human(free),
        CACHE_DIR_ENV
    )
}

/// Bytes an unprivileged process may still write on `dir`'s filesystem.
fn free_bytes(dir: &std::path::Path) -> Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)
        .with_context(|| format!("reading the free space of {}", dir.display()))?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// `1.5G`, `500M` or `12K`, for people to read.
pub(crate) fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.0}M", b as f64 / (1u64 << 20) as f64),
        b => format!("{}K", b >> 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn too_little_room_is_refused_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        assert!(require_room(dir.path(), 1, "a small write").is_ok());
        let err = require_room(dir.path(), u64::MAX >> 2, "a kernel build")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("a kernel build needs about "), "{err}");
        assert!(err.contains("harness cache prune --keep N"), "{err}");
        assert!(err.contains("STRUCT_OPS_CACHE_DIR"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn the_override_wins() {
        let dir = cache_dir_from(env(&[
            (CACHE_DIR_ENV, "/srv/kcache"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/root"),
        ]))
        .unwrap();
        assert_eq!(dir, PathBuf::from("/srv/kcache"));
    }

    #[test]
    fn xdg_then_home() {
        let xdg = cache_dir_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/root")])).unwrap();
        assert_eq!(xdg, PathBuf::from("/x/struct-ops-vmtest"));
        let home = cache_dir_from(env(&[("HOME", "/root")])).unwrap();
        assert_eq!(home, PathBuf::from("/root/.cache/struct-ops-vmtest"));
    }

    #[test]
    fn no_home_is_a_clear_error() {
        let err = cache_dir_from(env(&[])).unwrap_err();
        assert!(err.to_string().contains("STRUCT_OPS_CACHE_DIR"));
    }
}
