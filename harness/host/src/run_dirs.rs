//! The directories a VM lives in: sockets in $TMPDIR (their paths must stay
//! short), logs under target/vm-logs (kept when a scenario fails), and the
//! sweep that removes what a killed harness process could not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Socket directories are `$TMPDIR/struct-ops-vm-<scenario>-XXXXXX`, removed with their VM.
pub const RUN_DIR_PREFIX: &str = "struct-ops-vm-";

/// Where a failed VM's logs are kept: `vm-logs/` in the cargo target
/// directory the guest's binary was built in (`<target>/release/deps/<binary>`),
/// so each project keeps its own.
pub(crate) fn logs_root(binary: &Path) -> PathBuf {
    match binary.ancestors().nth(3) {
        Some(target) if !target.as_os_str().is_empty() => target.join("vm-logs"),
        _ => std::env::temp_dir().join("struct-ops-vm-logs"),
    }
}

/// Holds the pid of the process that owns a socket directory.
const OWNER_FILE: &str = "owner.pid";

/// Removes the socket directories of harness processes that died without
/// cleaning up (killed by a signal, say), so nothing piles up in $TMPDIR.
pub fn sweep_stale_run_dirs() {
    for dir in run_dirs_in(&std::env::temp_dir()) {
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        let stale = match owner {
            Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            // Without an owner file it is being created right now, unless it is old.
            None => std::fs::metadata(&dir)
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(600)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The socket directories of VMs that are still around (for leak checks).
pub fn run_dirs_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with(RUN_DIR_PREFIX))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A new socket directory for a VM labelled `label`, marked as ours.
pub(crate) fn create_socket_dir(label: &str) -> Result<tempfile::TempDir> {
    sweep_stale_run_dirs();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{RUN_DIR_PREFIX}{label}-"))
        .tempdir()
        .context("creating the VM's socket directory")?;
    std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
        .context("writing the VM's owner file")?;
    Ok(dir)
}

/// A new log directory for a VM labelled `label`.
pub(crate) fn create_log_dir(label: &str, binary: &Path) -> Result<tempfile::TempDir> {
    let root = logs_root(binary);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    tempfile::Builder::new()
        .prefix(&format!("{label}-"))
        .tempdir_in(&root)
        .with_context(|| format!("creating the VM's log directory in {}", root.display()))
}
