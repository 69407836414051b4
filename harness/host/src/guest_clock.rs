//! The guest's delay loop, preset so no CPU busy-waits to calibrate it.
//!
//! Under TCG QEMU's guest TSC is the host's counter, so it runs at the
//! host's rate, and the boot CPU derives its delay loop from it. The
//! emulated CPU model has no invariant TSC, though, so every secondary CPU
//! calibrates its own loop against the timer tick: 80 ms of busy loop per
//! boot under TCG, in every VM. `lpj=` presets the value the boot CPU
//! computes (TSC cycles per jiffy), which skips that calibration.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `lpj=` for a kernel whose `.config` is at `kernel_config`, or None where
/// the host's TSC cannot be read (the kernel then calibrates as usual).
pub(crate) fn preset_lpj(kernel_config: &Path) -> Option<u64> {
    let config = std::fs::read_to_string(kernel_config).ok()?;
    Some(loops_per_jiffy(host_tsc_khz()?, config_hz(&config)?))
}

/// TSC cycles per jiffy: what the kernel's `tsc_init` computes.
pub(crate) fn loops_per_jiffy(tsc_khz: u64, hz: u64) -> u64 {
    tsc_khz * 1000 / hz
}

/// CONFIG_HZ from a kernel `.config`.
pub(crate) fn config_hz(config: &str) -> Option<u64> {
    config
        .lines()
        .find_map(|line| line.strip_prefix("CONFIG_HZ="))
        .and_then(|value| value.trim().parse().ok())
        .filter(|&hz| hz > 0)
}

/// The host's TSC rate, measured once per process against the monotonic
/// clock over 20 ms (the kernel refines its own figure later in boot).
fn host_tsc_khz() -> Option<u64> {
    static KHZ: OnceLock<Option<u64>> = OnceLock::new();
    *KHZ.get_or_init(measure_tsc_khz)
}

#[cfg(target_arch = "x86_64")]
fn measure_tsc_khz() -> Option<u64> {
    // SAFETY: rdtsc has no preconditions on x86_64.
    let read = || unsafe { core::arch::x86_64::_rdtsc() };
    let (start, cycles_start) = (Instant::now(), read());
    std::thread::sleep(Duration::from_millis(20));
    let (elapsed, cycles) = (start.elapsed(), read().wrapping_sub(cycles_start));
    let khz = u128::from(cycles) * 1_000_000 / elapsed.as_micros().max(1) / 1000;
    // Anything outside 100 MHz..10 GHz is not a usable reading.
    u64::try_from(khz)
        .ok()
        .filter(|khz| (100_000..10_000_000).contains(khz))
}

#[cfg(not(target_arch = "x86_64"))]
fn measure_tsc_khz() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpj_is_tsc_cycles_per_jiffy() {
        // The boot CPU of a 2596.114 MHz host printed lpj=10384456 at HZ=250.
        assert_eq!(loops_per_jiffy(2_596_114, 250), 10_384_456);
    }

    #[test]
    fn hz_comes_from_the_config_line_not_its_neighbours() {
        let config = "CONFIG_HZ_250=y\n# CONFIG_HZ_1000 is not set\nCONFIG_HZ=250\n";
        assert_eq!(config_hz(config), Some(250));
        assert_eq!(config_hz("CONFIG_HZ_PERIODIC=y\n"), None);
        assert_eq!(config_hz("CONFIG_HZ=0\n"), None);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_host_tsc_reads_as_a_plausible_rate() {
        let khz = host_tsc_khz().expect("an x86_64 host has a TSC");
        assert!((100_000..10_000_000).contains(&khz), "{khz} kHz");
    }
}
