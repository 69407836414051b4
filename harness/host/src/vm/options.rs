//! [`VmOptions`]' builder: start from [`VmOptions::default`] and set what
//! differs, `VmOptions::default().label("mine").timeout(Duration::from_secs(60))`.

use std::path::PathBuf;
use std::time::Duration;

use harness_wire::cli::Fault;

use super::VmOptions;

impl VmOptions {
    /// The whole VM's time limit, boot to power-off.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keep the logs even when the scenario passed.
    pub fn keep_logs(mut self, keep_logs: bool) -> Self {
        self.keep_logs = keep_logs;
        self
    }

    /// A fault for the agent to inject (the harness's own fault tests).
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// The counter file that makes every other VM fail its first scenario
    /// (the harness's own flaky-detection test), or none.
    pub fn fail_every_other(mut self, counter: Option<PathBuf>) -> Self {
        self.fail_every_other = counter;
        self
    }

    /// Names the VM's directories, so a test can find its processes.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Restore the VM from its kernel's saved template (the default, unless
    /// `--boot-each`), or boot it.
    pub fn restore(mut self, restore: bool) -> Self {
        self.restore = restore;
        self
    }

    /// Share the root over 9p even when a read-only virtiofsd is available.
    pub fn force_9p(mut self, force_9p: bool) -> Self {
        self.force_9p = force_9p;
        self
    }
}
