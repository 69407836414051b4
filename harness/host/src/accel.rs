//! Choosing between KVM and TCG. `/dev/kvm` can exist, open, and still hang
//! every guest (nested virtualisation that does not work), so KVM is trusted
//! only after a guest booted on it printed something; the verdict is kept in
//! the cache so the probe runs once per host.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub use crate::qemu::Accel;

/// Forces the accelerator: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "STRUCT_OPS_ACCEL";

/// What is known before any guest ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Use this; nothing to probe.
    Decided(Accel, &'static str),
    /// KVM looks usable; boot with it under a watchdog.
    ProbeKvm,
}

/// What the probe found out about KVM on this host, as kept in the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verdict {
    /// Whether a guest booted on KVM and printed something.
    pub kvm_works: bool,
    /// Why, in words: `a KVM guest booted`, or what the broken boot did.
    pub(crate) reason: String,
    /// The host this verdict is for: a different kernel or QEMU may behave differently.
    pub(crate) host: String,
}

/// What to boot on: forced by `STRUCT_OPS_ACCEL`, decided by `/dev/kvm` or
/// the cached verdict, or KVM still to be probed.
pub fn choose(cache: &Path) -> Result<Choice> {
    let forced = (crate::settings::get().accel.clone()).map(std::ffi::OsString::from);
    choose_with(cache, forced, Path::new("/dev/kvm"))
}

/// `choose`, with the environment's word and the KVM device as arguments.
fn choose_with(
    cache: &Path,
    forced: Option<std::ffi::OsString>,
    kvm_device: &Path,
) -> Result<Choice> {
    if let Some(forced) = forced {
        return match forced.to_str() {
            Some("kvm") => Ok(Choice::Decided(Accel::Kvm, "forced by STRUCT_OPS_ACCEL")),
            Some("tcg") => Ok(Choice::Decided(Accel::Tcg, "forced by STRUCT_OPS_ACCEL")),
            _ => bail!("{ACCEL_ENV} must be `kvm` or `tcg`, not {forced:?}"),
        };
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(kvm_device)
        .is_err()
    {
        return Ok(Choice::Decided(
            Accel::Tcg,
            "/dev/kvm is missing or not accessible",
        ));
    }
    match read_verdict(cache)? {
        Some(verdict) if verdict.kvm_works => {
            Ok(Choice::Decided(Accel::Kvm, "KVM booted a guest before"))
        }
        Some(_) => Ok(Choice::Decided(
            Accel::Tcg,
            "KVM hung a guest before (cached verdict)",
        )),
        None => Ok(Choice::ProbeKvm),
    }
}

/// Where the verdict is kept.
pub(crate) fn verdict_path(cache: &Path) -> PathBuf {
    cache.join("kvm-verdict.json")
}

fn host_identity() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = crate::process::first_line_of(crate::qemu::QEMU_BINARY, "--version");
    format!("{} / {qemu}", release.trim())
}

/// The cached verdict, if there is one for this host and it can be read.
pub fn read_verdict(cache: &Path) -> Result<Option<Verdict>> {
    let path = verdict_path(cache);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let verdict: Verdict = match serde_json::from_str(&text) {
        Ok(verdict) => verdict,
        // A damaged verdict is no verdict: probe again.
        Err(_) => return Ok(None),
    };
    Ok((verdict.host == host_identity()).then_some(verdict))
}

/// Caches the probe's verdict for this host.
pub fn write_verdict(cache: &Path, kvm_works: bool, reason: &str) -> Result<()> {
    let verdict = Verdict {
        kvm_works,
        reason: reason.to_owned(),
        host: host_identity(),
    };
    crate::paths::write_atomically(
        &verdict_path(cache),
        serde_json::to_string_pretty(&verdict)?.as_bytes(),
    )
}

/// Serialises probes: the first process probes, the others wait and read its verdict.
pub(crate) fn probe_lock(cache: &Path) -> Result<std::fs::File> {
    crate::paths::lock_exclusive(
        &cache.join("kvm-verdict.lock"),
        "another process is probing KVM",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_survives_a_round_trip_for_the_same_host() {
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(read_verdict(cache.path()).unwrap(), None);
        write_verdict(cache.path(), false, "no console output within 5 s").unwrap();
        let verdict = read_verdict(cache.path()).unwrap().unwrap();
        assert!(!verdict.kvm_works);
        assert_eq!(verdict.reason, "no console output within 5 s");
    }

    #[test]
    fn a_verdict_for_another_host_is_ignored() {
        let cache = tempfile::tempdir().unwrap();
        let other = Verdict {
            kvm_works: true,
            reason: "x".into(),
            host: "another kernel".into(),
        };
        std::fs::write(
            verdict_path(cache.path()),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        assert_eq!(read_verdict(cache.path()).unwrap(), None);
    }

    #[test]
    fn without_a_kvm_device_tcg_is_chosen_and_nothing_is_probed() {
        let cache = tempfile::tempdir().unwrap();
        let choice = choose_with(cache.path(), None, Path::new("/nonexistent/kvm")).unwrap();
        assert_eq!(
            choice,
            Choice::Decided(Accel::Tcg, "/dev/kvm is missing or not accessible")
        );
        assert_eq!(read_verdict(cache.path()).unwrap(), None);
    }

    #[test]
    fn the_environment_forces_the_accelerator_or_is_refused() {
        let cache = tempfile::tempdir().unwrap();
        let device = Path::new("/nonexistent/kvm");
        let forced = |word: &str| choose_with(cache.path(), Some(word.into()), device);
        assert!(matches!(
            forced("kvm").unwrap(),
            Choice::Decided(Accel::Kvm, _)
        ));
        assert!(matches!(
            forced("tcg").unwrap(),
            Choice::Decided(Accel::Tcg, _)
        ));
        let err = forced("hvf").unwrap_err().to_string();
        assert!(err.contains("must be `kvm` or `tcg`"), "{err}");
    }

    #[test]
    fn a_damaged_verdict_means_probe_again() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(verdict_path(cache.path()), "{not json").unwrap();
        assert_eq!(read_verdict(cache.path()).unwrap(), None);
    }
}
