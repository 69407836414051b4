//! Lines the two sides recognise each other by on the guest's console: the
//! agent writes them, the host watches for them. Each is spelled once, here.

/// The agent prints this on the console once it can run its command; the
/// host measures boot time up to it, and a KVM probe takes it as proof.
pub const AGENT_READY: &str = "guest-agent: ready";

/// The agent's last words when it could not run at all, before power-off.
pub const AGENT_ERROR: &str = "guest-agent: error: ";

/// In a VM that runs several scenarios, the agent prints this and the
/// scenario's name on the console as each one starts, so a VM that dies
/// says which scenario it died in.
pub const SCENARIO_STARTS: &str = "guest-agent: scenario ";

/// The scenario the console last said had started, if any.
pub fn last_scenario_started(console: &str) -> Option<&str> {
    console
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(SCENARIO_STARTS))
        .map(str::trim)
}

/// What the kernel prints when it panics.
pub(crate) const KERNEL_PANIC: &str = "Kernel panic";

/// Whether the console shows the agent ready.
pub fn agent_ready(console: &str) -> bool {
    console.contains(AGENT_READY)
}

/// The console's panic line, if the kernel panicked.
pub fn panic_line(console: &str) -> Option<&str> {
    console.lines().find(|line| line.contains(KERNEL_PANIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console_without_scenarios() -> &'static str {
        "[ 1.0] ok\nguest-agent: ready\n"
    }

    #[test]
    fn the_panic_line_is_found_among_the_others() {
        let console = "[ 1.0] ok\n[ 1.2] Kernel panic - not syncing: Attempted to kill init!\n";
        assert_eq!(
            panic_line(console),
            Some("[ 1.2] Kernel panic - not syncing: Attempted to kill init!")
        );
        assert_eq!(panic_line("all quiet\n"), None);
        assert!(agent_ready(&format!("x\n{AGENT_READY}\n")));
        let console =
            format!("{SCENARIO_STARTS}attach\n[ 9.1] x\n{SCENARIO_STARTS}kfunc\n[ 9.5] y\n");
        assert_eq!(last_scenario_started(&console), Some("kfunc"));
        assert_eq!(last_scenario_started(console_without_scenarios()), None);
    }
}
