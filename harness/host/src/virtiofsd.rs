//! virtiofsd, the daemon that serves the host's root to the guest over
//! vhost-user. Only the Rust virtiofsd is used: it has --readonly, which is
//! what keeps a root guest from writing the host. The old C daemon that
//! Debian 12's QEMU ships (/usr/lib/qemu/virtiofsd) cannot share read-only,
//! so with only that one the harness uses 9p, which can.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use harness_wire::wait::{wait_until, Poll};

/// Where to look, in order, after `$STRUCT_OPS_VIRTIOFSD`.
fn candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = crate::process::which("virtiofsd") {
        candidates.push(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/virtiofsd"));
    }
    candidates.push(PathBuf::from("/usr/libexec/virtiofsd"));
    candidates
}

pub(crate) const VIRTIOFSD_ENV: &str = "STRUCT_OPS_VIRTIOFSD";

/// A virtiofsd that can share read-only, or why there is none.
pub(crate) fn find() -> Result<PathBuf, String> {
    find_with(crate::settings::get().virtiofsd.as_deref())
}

/// `find`, with the configured daemon (if any) as an argument.
fn find_with(configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = configured {
        let path = path.to_path_buf();
        return if supports_readonly(&path) {
            Ok(path)
        } else {
            Err(format!(
                "{VIRTIOFSD_ENV}={} is not a virtiofsd with --readonly",
                path.display()
            ))
        };
    }
    if let Some(path) = candidates()
        .into_iter()
        .find(|path| supports_readonly(path))
    {
        return Ok(path);
    }
    Err(
        "no virtiofsd with --readonly found (the C virtiofsd in /usr/lib/qemu cannot share \
         read-only; `cargo install virtiofsd` provides one)"
            .to_owned(),
    )
}

fn supports_readonly(path: &Path) -> bool {
    path.is_file()
        && crate::process::combined_output(duct::cmd!(path, "--help"))
            .is_ok_and(|(_, help)| help.contains("--readonly"))
}

/// A running virtiofsd. Dropping it kills it.
pub(crate) struct Virtiofsd {
    handle: duct::Handle,
    pub(crate) socket: PathBuf,
    pub(crate) log: PathBuf,
}

impl Virtiofsd {
    /// Starts the daemon and waits for its socket (it exits after one VM disconnects).
    pub(crate) fn spawn(binary: &Path, socket: PathBuf, log: PathBuf) -> Result<Self> {
        let handle = duct::cmd!(
            binary,
            "--socket-path",
            &socket,
            "--shared-dir",
            "/",
            "--readonly",
            "--cache",
            "always",
            "--sandbox",
            // chroot needs CAP_SYS_CHROOT; without root the daemon can only run unsandboxed.
            if nix::unistd::geteuid().is_root() {
                "chroot"
            } else {
                "none"
            },
            "--announce-submounts",
            "--log-level",
            "warn"
        )
        .stdin_null()
        .stdout_null()
        .stderr_path(&log)
        .before_spawn(crate::process::die_with_parent)
        .unchecked()
        .start()
        .with_context(|| format!("starting {}", binary.display()))?;
        let daemon = Virtiofsd {
            handle,
            socket,
            log,
        };
        let ready = wait_until(
            Instant::now() + Duration::from_secs(10),
            Duration::from_millis(10),
            || match daemon.handle.try_wait() {
                Ok(Some(_)) | Err(_) => Poll::Ready(false),
                Ok(None) if daemon.socket.exists() => Poll::Ready(true),
                Ok(None) => Poll::Pending,
            },
        );
        match ready {
            Some(true) => Ok(daemon),
            Some(false) => bail!(
                "virtiofsd exited before it was ready:\n{}",
                crate::text::tail_of_file(&daemon.log, 20)
            ),
            None => bail!(
                "virtiofsd did not create {} within 10 s",
                daemon.socket.display()
            ),
        }
    }

    /// Whether the daemon has exited: (exited cleanly, its status in words).
    pub(crate) fn has_exited(&self) -> Option<(bool, String)> {
        match self.handle.try_wait() {
            Ok(Some(output)) => Some((output.status.success(), output.status.to_string())),
            Ok(None) => None,
            Err(err) => Some((false, err.to_string())),
        }
    }

    pub(crate) fn kill(&self) {
        let _ = self.handle.kill();
    }

    /// The daemon's process id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.handle.pids().first().copied()
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtiofsd_that_cannot_share_read_only_is_refused_with_the_reason() {
        // Debian 12's C daemon has no --readonly; /bin/true stands in where it is not installed.
        let c_daemon = ["/usr/lib/qemu/virtiofsd", "/bin/true"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .unwrap();
        let reason = find_with(Some(Path::new(c_daemon))).unwrap_err();
        assert!(
            reason.contains("is not a virtiofsd with --readonly"),
            "{reason}"
        );
    }
}
