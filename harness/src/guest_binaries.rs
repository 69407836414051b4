//! The binaries that run in the guest: the agent and every subject's loader.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::progress::Progress;

#[derive(Debug, Clone)]
pub struct GuestBinaries {
    pub agent: PathBuf,
    /// Where every subject's loader is (cargo's target/release).
    pub bin_dir: PathBuf,
}

/// `cargo build --release` of the guest crates; cargo makes it a no-op when
/// nothing changed. Release, because the stress scenario runs them under TCG.
pub fn ensure_built(workspace: &Path, progress: &Progress) -> Result<GuestBinaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let step = progress.step("building the guest binaries (cargo build --release)".to_owned());
    let build = duct::cmd!(
        cargo,
        "build",
        "--release",
        "--quiet",
        "-p",
        "guest-agent",
        "-p",
        "struct-ops-loader"
    )
    .dir(workspace);
    let (status, text) = crate::process::combined_output(build)
        .context("running cargo build for the guest binaries")?;
    if !status.success() {
        bail!("building the guest binaries failed:\n{}", text.trim_end());
    }
    step.done();
    let release = crate::paths::target_dir(workspace).join("release");
    let binaries = GuestBinaries {
        agent: release.join("guest-agent"),
        bin_dir: release.clone(),
    };
    let loaders = guest_agent::subjects::SUBJECTS
        .iter()
        .map(|subject| release.join(subject.loader));
    for binary in std::iter::once(binaries.agent.clone()).chain(loaders) {
        if !binary.is_file() {
            bail!(
                "cargo build succeeded but {} is missing (is it a [[bin]] of bpf/Cargo.toml?)",
                binary.display()
            );
        }
    }
    Ok(binaries)
}
