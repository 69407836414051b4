//! How long guests took to boot on this machine (QEMU's start to the
//! agent's ready line), kept in the cache per accelerator and kernel
//! flavour, and the boot deadline they set: a guest that has not said
//! ready by several times the slowest recent boot has stalled, and is
//! ended and booted again long before the VM's timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How many recent boots of each kind are kept: enough that one slow boot
/// under load keeps the deadline generous for a while, few enough that the
/// deadline follows a machine that became faster or slower.
pub(crate) const KEPT: usize = 20;
/// The deadline is this many times the slowest recent boot...
pub const MULTIPLE: u32 = 5;
/// ...and never shorter than this: a fast kernel's boot under a sudden
/// load must not read as a stall.
pub const FLOOR: Duration = Duration::from_secs(10);

/// The recent boot times, in seconds, by [`kind`]; the newest last.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootTimes(BTreeMap<String, Vec<f64>>);

/// Which boots are alike: the accelerator's and the kernel flavour's names
/// (`tcg/default`, `kvm/debug`); a debug kernel boots five times slower.
pub fn kind(accel: &str, flavour: &str) -> String {
    format!("{accel}/{flavour}")
}

/// How long a guest may take to say ready, and why that long.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BootDeadline {
    /// From QEMU's start.
    pub after: Duration,
    /// The slowest of the recent boots it follows, and how many there were;
    /// None when there were none (or when the half timeout was shorter).
    pub measured: Option<(Duration, usize)>,
}

impl std::fmt::Display for BootDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.measured {
            Some((slowest, boots)) => write!(
                f,
                "{:.1}s ({MULTIPLE}x the slowest of the last {boots} boots here, {:.1}s, at least {}s)",
                self.after.as_secs_f64(),
                slowest.as_secs_f64(),
                FLOOR.as_secs()
            ),
            None => write!(
                f,
                "{:.1}s (half the VM's timeout)",
                self.after.as_secs_f64()
            ),
        }
    }
}

impl BootTimes {
    /// Where they are kept in the cache `cache`.
    pub(crate) fn path(cache: &Path) -> PathBuf {
        cache.join("boot-times.json")
    }

    /// The recorded times; none when the file is missing or unreadable
    /// (the deadline then falls back to half the timeout).
    pub fn load(cache: &Path) -> Self {
        std::fs::read_to_string(Self::path(cache))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// The recent boots of `kind`, oldest first.
    pub fn of(&self, kind: &str) -> &[f64] {
        self.0.get(kind).map_or(&[], Vec::as_slice)
    }

    /// Adds `boot` to `kind`'s, keeping the last [`KEPT`].
    pub(crate) fn add(&mut self, kind: &str, boot: Duration) {
        let times = self.0.entry(kind.to_owned()).or_default();
        times.push(boot.as_secs_f64());
        let excess = times.len().saturating_sub(KEPT);
        times.drain(..excess);
    }

    /// The deadline for a boot of `kind` in a VM whose run may take
    /// `timeout`: [`MULTIPLE`] times the slowest recent boot, at least
    /// [`FLOOR`]; half the timeout when there is no history, and never
    /// later than that (a boot that slow leaves the scenario too little).
    pub(crate) fn deadline(&self, kind: &str, timeout: Duration) -> BootDeadline {
        let half = timeout / 2;
        let times = self.of(kind);
        let slowest = times.iter().copied().fold(None, |max: Option<f64>, time| {
            Some(max.map_or(time, |max| max.max(time)))
        });
        let Some(slowest) = slowest.and_then(|secs| Duration::try_from_secs_f64(secs).ok()) else {
            return BootDeadline {
                after: half,
                measured: None,
            };
        };
        let after = (slowest * MULTIPLE).max(FLOOR);
        match after < half {
            true => BootDeadline {
                after,
                measured: Some((slowest, times.len())),
            },
            false => BootDeadline {
                after: half,
                measured: None,
            },
        }
    }

    /// Adds `boot` to `kind`'s in the cache `cache`, under a lock: several
    /// harness processes (and a run's VMs) record at once.
    pub(crate) fn record(cache: &Path, kind: &str, boot: Duration) -> Result<()> {
        let path = Self::path(cache);
        let lock_path = cache.join("boot-times.lock");
        std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
        let lock = std::fs::File::create(&lock_path)
            .with_context(|| format!("creating {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let mut times = Self::load(cache);
        times.add(kind, boot);
        let text = serde_json::to_string_pretty(&times).context("serialising the boot times")?;
        crate::paths::write_atomically(&path, text.as_bytes()).with_context(|| {
            format!(
                "recording a boot time in {} (delete it to start the history afresh)",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(120);

    fn secs(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_recorded_boot_reads_back_as_the_same_time() {
        let cache = tempfile::tempdir().unwrap();
        // Times whose f64 a parser that is not correctly rounded reads one
        // ulp off (seen: 1.951951305 s, in the stalled-boot test).
        let boots: Vec<Duration> = (0..500u32)
            .map(|n| Duration::new(1, 951_951_305 + n * 7919))
            .collect();
        for boot in &boots {
            BootTimes::record(cache.path(), "tcg/default", *boot).unwrap();
            let recorded = BootTimes::load(cache.path());
            let last = recorded.of("tcg/default").last().copied();
            assert_eq!(last, Some(boot.as_secs_f64()), "{boot:?}");
        }
    }

    #[test]
    fn no_history_is_half_the_timeout() {
        let times = BootTimes::default();
        let deadline = times.deadline("tcg/default", TIMEOUT);
        assert_eq!(deadline.after, secs(60.0));
        assert_eq!(deadline.measured, None);
        assert!(deadline.to_string().contains("half the VM's timeout"));
    }

    #[test]
    fn the_deadline_is_five_times_the_slowest_boot_at_least_ten_seconds() {
        let mut times = BootTimes::default();
        for boot in [0.8, 1.6, 1.1] {
            times.add("tcg/default", secs(boot));
        }
        // 5 x 1.6 s is under the floor.
        let deadline = times.deadline("tcg/default", TIMEOUT);
        assert_eq!(deadline.after, FLOOR);
        assert_eq!(deadline.measured, Some((secs(1.6), 3)));
        times.add("tcg/debug", secs(4.0));
        times.add("tcg/debug", secs(6.5));
        let debug = times.deadline("tcg/debug", TIMEOUT);
        assert_eq!(debug.after, secs(32.5));
        assert!(
            debug.to_string().contains("slowest of the last 2 boots"),
            "{debug}"
        );
        // Each kind its own: a race kernel never booted here has no history.
        assert_eq!(times.deadline("tcg/race", TIMEOUT).after, secs(60.0));
    }

    #[test]
    fn never_later_than_half_the_timeout() {
        let mut times = BootTimes::default();
        times.add("tcg/debug", secs(20.0));
        let deadline = times.deadline("tcg/debug", TIMEOUT);
        assert_eq!(deadline.after, secs(60.0));
        assert_eq!(deadline.measured, None);
        times.add("tcg/default", secs(1.0));
        let short = times.deadline("tcg/default", secs(16.0));
        assert_eq!(short.after, secs(8.0));
    }

    #[test]
    fn only_the_recent_boots_count() {
        let mut times = BootTimes::default();
        times.add("tcg/default", secs(9.0));
        for _ in 0..KEPT {
            times.add("tcg/default", secs(1.0));
        }
        assert_eq!(times.of("tcg/default").len(), KEPT);
        // The slow boot has aged out: 5 x 1 s, at least the floor.
        assert_eq!(times.deadline("tcg/default", TIMEOUT).after, FLOOR);
    }

    #[test]
    fn records_survive_in_the_cache_and_concurrent_ones_are_all_kept() {
        let cache = tempfile::tempdir().unwrap();
        std::thread::scope(|scope| {
            for index in 0..8 {
                let cache = cache.path();
                scope.spawn(move || {
                    BootTimes::record(cache, "tcg/default", secs(1.0 + f64::from(index))).unwrap();
                });
            }
        });
        let times = BootTimes::load(cache.path());
        let mut recorded = times.of("tcg/default").to_vec();
        recorded.sort_by(f64::total_cmp);
        assert_eq!(recorded, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn an_unreadable_file_is_no_history() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(BootTimes::path(cache.path()), "not json").unwrap();
        assert_eq!(BootTimes::load(cache.path()), BootTimes::default());
        BootTimes::record(cache.path(), "kvm/default", secs(0.5)).unwrap();
        assert_eq!(BootTimes::load(cache.path()).of("kvm/default"), [0.5]);
    }
}
