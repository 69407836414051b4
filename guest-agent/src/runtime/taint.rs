//! The kernel's taint flags: a backstop for splats the log lost, since the
//! kernel taints itself for a warning, an oops or a lockup.

use anyhow::{Context, Result};

/// Taints loading our own module causes: O (out-of-tree) and E (unsigned).
pub(crate) const EXPECTED_TAINT: u64 = (1 << 12) | (1 << 13);

pub(crate) fn kernel_taint() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/sys/kernel/tainted")
        .context("reading /proc/sys/kernel/tainted")?;
    text.trim()
        .parse()
        .with_context(|| format!("parsing /proc/sys/kernel/tainted: {text:?}"))
}

/// The flags, in bit order (Documentation/admin-guide/tainted-kernels.rst).
const NAMES: [&str; 19] = [
    "P (proprietary module)",
    "F (forced module load)",
    "S (unsafe SMP)",
    "R (forced module unload)",
    "M (machine check)",
    "B (bad page)",
    "U (user request)",
    "D (oops)",
    "A (ACPI table overridden)",
    "W (warning)",
    "C (staging driver)",
    "I (firmware workaround)",
    "O (out-of-tree module)",
    "E (unsigned module)",
    "L (soft lockup)",
    "K (live patch)",
    "X (auxiliary)",
    "T (randstruct)",
    "N (test module)",
];

/// `W (warning), D (oops)` for the bits set in `taint`.
pub(crate) fn taint_names(taint: u64) -> String {
    let names: Vec<String> = (0..64)
        .filter(|bit| taint & (1 << bit) != 0)
        .map(|bit| {
            NAMES
                .get(bit)
                .map_or_else(|| format!("bit {bit}"), |name| (*name).to_owned())
        })
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_bits_are_named() {
        assert_eq!(taint_names((1 << 9) | (1 << 7)), "D (oops), W (warning)");
        assert_eq!(taint_names(1 << 40), "bit 40");
        assert_eq!(EXPECTED_TAINT & (1 << 9), 0, "a warning is never expected");
    }
}
