//! sched_ext as the guest sees it: `/sys/kernel/sched_ext` (whether a BPF
//! scheduler is enabled, and which), and which tasks run on the ext class
//! (`/proc/PID/task/TID/sched`'s `ext.enabled`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

const SYSFS: &str = "/sys/kernel/sched_ext";

/// sched_ext's state, as its sysfs files say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedExtState {
    /// `enabling`, `enabled`, `disabling` or `disabled`.
    pub state: String,
    /// The enabled scheduler's name (`root/ops`), while one is.
    pub(crate) ops: Option<String>,
    /// Whether every normal task runs on it (`switch_all`), not only those
    /// that ask for SCHED_EXT.
    pub(crate) switch_all: bool,
    /// How many schedulers were enabled since boot (`enable_seq`).
    pub(crate) enable_seq: u64,
    /// How many tasks asking for SCHED_EXT it refused (`nr_rejected`).
    pub(crate) nr_rejected: u64,
}

impl SchedExtState {
    /// Reads it; an error that names the missing option on a kernel without sched_ext.
    pub(crate) fn read() -> Result<Self> {
        let read = |name: &str| -> Result<String> {
            let path = Path::new(SYSFS).join(name);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading {} (a kernel without CONFIG_SCHED_CLASS_EXT has no {SYSFS})",
                    path.display()
                )
            })?;
            Ok(text.trim().to_owned())
        };
        let number = |name: &str| read(name).map(|text| text.parse().unwrap_or(0));
        Ok(SchedExtState {
            state: read("state")?,
            ops: read("root/ops").ok(),
            switch_all: read("switch_all")? == "1",
            enable_seq: number("enable_seq")?,
            nr_rejected: number("nr_rejected")?,
        })
    }

    /// What a snapshot may hold of it: the state and the scheduler's name
    /// (the counters vary with the scenarios before it in a VM).
    pub fn describe(&self) -> String {
        match &self.ops {
            Some(ops) => format!("state {}, ops {ops}", self.state),
            None => format!("state {}", self.state),
        }
    }
}

/// Waits up to `limit` for sched_ext to say `disabled` (an ejection
/// disables from a kthread, after the scenario's last step may have
/// returned); the last state read.
pub(crate) fn wait_disabled(limit: Duration) -> Result<SchedExtState> {
    let start = Instant::now();
    loop {
        let state = SchedExtState::read()?;
        if state.state == "disabled" || start.elapsed() >= limit {
            return Ok(state);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tasks on the ext class now (`comm[tid]`), or None when this kernel
/// cannot say (its `/proc/PID/sched` has no `ext.enabled` line: no
/// CONFIG_SCHED_DEBUG before 6.15).
pub(crate) fn tasks_on_ext() -> Result<Option<Vec<String>>> {
    let mut said = false;
    let mut on_ext = Vec::new();
    for process in std::fs::read_dir("/proc")
        .context("listing /proc")?
        .flatten()
    {
        let Ok(threads) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for thread in threads.flatten() {
            // A task that exits meanwhile is not on any class.
            let Ok(sched) = std::fs::read_to_string(thread.path().join("sched")) else {
                continue;
            };
            let Some(enabled) = ext_enabled(&sched) else {
                continue;
            };
            said = true;
            if enabled {
                let comm = std::fs::read_to_string(thread.path().join("comm")).unwrap_or_default();
                let tid = thread.file_name().to_string_lossy().into_owned();
                on_ext.push(format!("{}[{tid}]", comm.trim()));
            }
        }
    }
    Ok(said.then_some(on_ext))
}

/// `ext.enabled : 1` in a `/proc/PID/sched`; None without the line.
pub(crate) fn ext_enabled(sched: &str) -> Option<bool> {
    sched.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == "ext.enabled").then(|| value.trim() == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ext_class_is_read_from_the_sched_file() {
        let sched = "loader (63, #threads: 1)\n----\nse.exec_start : 1.0\next.enabled                                  :                    1\npolicy : 0\n";
        assert_eq!(ext_enabled(sched), Some(true));
        assert_eq!(ext_enabled("ext.enabled : 0\n"), Some(false));
        assert_eq!(ext_enabled("policy : 0\n"), None);
    }
}
