//! What the `struct_ops` loader and the scenarios that run it agree on: its
//! exit codes, the lines it prints that a scenario waits for, and its
//! reports, each rendered and parsed by one type so the two sides cannot drift.

/// The loader's exit codes: the ones every loader shares, named for this one.
pub mod exit {
    pub use harness::exit::{ALREADY_ATTACHED, FAILURE, REJECTED_BY_VERIFIER, SUCCESS};
    /// The module is not loaded (no BTF for bpf_testmod_ops, no trigger file).
    pub const MODULE_NOT_LOADED: u8 = harness::exit::UNAVAILABLE;
}

/// Where the harness tells the loader the module lives, for the fix it prints.
pub const MODULE_PATH_ENV: &str = "BPF_TESTMOD_KO";

/// What `struct_ops hold` prints once it is attached.
pub const HOLD_ATTACHED: &str = "attached";
/// What the tutorial mode (no subcommand) prints after each periodic trigger.
pub const TUTORIAL_PERIODIC: &str = "Triggered struct_ops again...";
/// The message the tutorial mode's periodic triggers write.
pub const TUTORIAL_PERIODIC_MESSAGE: &str = "Periodic trigger";
/// The message of the tutorial mode's first trigger, and the default one.
pub const DEFAULT_MESSAGE: &str = "Hello from userspace!";

pub use harness::Report;

/// `struct_ops stress`: triggers from several threads while one thread attaches and detaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressReport {
    pub cycles: u64,
    pub threads: u64,
    pub triggers: u64,
}

impl Report for StressReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [cycles, threads, triggers] = numbers.try_into().ok()?;
        Some(StressReport {
            cycles,
            threads,
            triggers,
        })
    }
    fn render(&self) -> String {
        format!(
            "{} attach/detach cycles while {} threads triggered {} times",
            self.cycles, self.threads, self.triggers
        )
    }
}

/// `struct_ops trigger-storm`: triggers from several threads, nothing attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerStormReport {
    pub threads: u64,
    pub triggers: u64,
}

impl Report for TriggerStormReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [threads, triggers] = numbers.try_into().ok()?;
        Some(TriggerStormReport { threads, triggers })
    }
    fn render(&self) -> String {
        format!(
            "{} threads triggered {} times with nothing attached",
            self.threads, self.triggers
        )
    }
}

/// `struct_ops member-storm`: threads trigger while one thread attaches
/// and detaches an implementation of every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStormReport {
    pub cycles: u64,
    pub threads: u64,
    pub triggers: u64,
}

impl Report for MemberStormReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [cycles, threads, triggers] = numbers.try_into().ok()?;
        Some(MemberStormReport {
            cycles,
            threads,
            triggers,
        })
    }
    fn render(&self) -> String {
        format!(
            "{} attach/detach cycles of every member while {} threads triggered {} times",
            self.cycles, self.threads, self.triggers
        )
    }
}

/// `struct_ops release-race`: fresh skeletons loaded, attached, detached and
/// freed while threads trigger and rmmod is attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseRaceReport {
    pub cycles: u64,
    pub threads: u64,
    pub triggers: u64,
    /// rmmod attempts made while a map of the module existed, all refused.
    pub rmmod_refused: u64,
}

impl Report for ReleaseRaceReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [cycles, threads, triggers, rmmod_refused] = numbers.try_into().ok()?;
        Some(ReleaseRaceReport {
            cycles,
            threads,
            triggers,
            rmmod_refused,
        })
    }
    fn render(&self) -> String {
        format!(
            "{} skeletons loaded, attached, detached and freed while {} threads triggered {} times; \
             {} rmmod attempts refused",
            self.cycles, self.threads, self.triggers, self.rmmod_refused
        )
    }
}

/// `struct_ops update-race`: triggers from several threads while one thread
/// attaches one implementation, switches its link between two a number of
/// times and detaches, cycle after cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateRaceReport {
    pub cycles: u64,
    /// Link updates, over all cycles.
    pub updates: u64,
    pub threads: u64,
    pub triggers: u64,
}

impl Report for UpdateRaceReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [cycles, updates, threads, triggers] = numbers.try_into().ok()?;
        Some(UpdateRaceReport {
            cycles,
            updates,
            threads,
            triggers,
        })
    }
    fn render(&self) -> String {
        format!(
            "{} attach/detach cycles and {} link updates while {} threads triggered {} times",
            self.cycles, self.updates, self.threads, self.triggers
        )
    }
}

/// `struct_ops concurrent-attach`: several processes attach at once, round after round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrentAttachReport {
    pub rounds: u64,
    pub processes: u64,
    /// Attaches that registered: one per round when the module is right.
    pub attached: u64,
    /// Attaches refused with EEXIST.
    pub refused: u64,
}

impl Report for ConcurrentAttachReport {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        let [rounds, processes, attached, refused] = numbers.try_into().ok()?;
        Some(ConcurrentAttachReport {
            rounds,
            processes,
            attached,
            refused,
        })
    }
    fn render(&self) -> String {
        format!(
            "{} rounds of {} processes attaching at once: {} attached, {} refused with EEXIST",
            self.rounds, self.processes, self.attached, self.refused
        )
    }
}

/// What a `race-member` process says back to its coordinator, one line each.
pub mod race_member {
    pub const READY: &str = "ready";
    pub const ATTACH: &str = "attach";
    pub const ATTACHED: &str = "attached";
    pub const REFUSED: &str = "eexist";
    pub const DETACH: &str = "detach";
    pub const DETACHED: &str = "detached";
}

/// What `struct_ops contract CASE` prints, step by step (through
/// `harness::case`), and the words of each step.
pub mod case {
    /// What each case's triggers write.
    pub const MESSAGE: &str = "contract";
    pub const ATTACHED_A: &str = "ops_a attached, 2 triggers";
    pub const UPDATED_B: &str = "the link updated to ops_b, 2 triggers";
    pub const UPDATE_UNLINKED: &str = "the link updated to ops_unlinked, a map without a link";
    pub const AFTER_REFUSED: &str = "after the refused update, 1 trigger";
    pub const REPLACE_WRONG_OLD: &str = "ops_b replaced by ops_a, naming ops_a as the old map";
    pub const REPLACE_RIGHT_OLD: &str = "ops_b replaced by ops_a, naming ops_b as the old map";
    pub const REPLACED_A: &str = "after the replace, 1 trigger";
    pub const ATTACHED_ONCE: &str = "ops_a attached, 1 trigger";
    pub const DETACHED: &str = "the link detached";
    pub const ATTACHED_AGAIN: &str = "ops_a attached again, 1 trigger";
    pub const ATTACH_INCOMPLETE: &str = "attaching ops_incomplete, which has no test_1";
    pub const LOAD_RESERVED: &str = "loading ops_reserved, a program for test_reserved";
    pub const LOAD_FUTURE_SET: &str = "loading ops_future_set, future_field set to 1";
    pub const ATTACHED_FUTURE_ZERO: &str =
        "ops_future_zero attached (future_field 0), test_2 and test_3 NULL, 1 trigger";
    pub const LOAD_SLEEPABLE_TEST_1: &str = "loading a sleepable program for test_1";
    pub const ATTACHED_SLEEPABLE: &str =
        "a sleepable program for test_sleepable attached, 1 trigger";
    pub const LOAD_UNCHECKED: &str = "loading test_maybe_null reading its message unchecked";
    pub const ATTACHED_CHECKED: &str =
        "test_maybe_null checking its message attached, an empty trigger and a message";
    pub const LOAD_KFUNC_SYSCALL: &str = "loading a syscall program calling bpf_testmod_double";
    pub const ATTACHED_KFUNC: &str = "test_2 calling bpf_testmod_double attached, 1 trigger";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_found_by_the_line_it_renders_to() {
        let report = StressReport {
            cycles: 12,
            threads: 4,
            triggers: 3456,
        };
        let output = format!("noise 1 2 3\n{}\n", report.render());
        assert_eq!(StressReport::find_in(&output), Some(report));
        // Same numbers, other words: not this report.
        assert_eq!(
            StressReport::find_in("12 cycles, 4 threads, 3456 times"),
            None
        );
    }

    #[test]
    fn every_report_round_trips() {
        let race = ReleaseRaceReport {
            cycles: 7,
            threads: 3,
            triggers: 900,
            rmmod_refused: 40,
        };
        assert_eq!(ReleaseRaceReport::find_in(&race.render()), Some(race));
        let members = MemberStormReport {
            cycles: 60,
            threads: 4,
            triggers: 5000,
        };
        assert_eq!(MemberStormReport::find_in(&members.render()), Some(members));
        // The stress report's line has the same numbers in other words.
        let stress = StressReport {
            cycles: 60,
            threads: 4,
            triggers: 5000,
        };
        assert_eq!(MemberStormReport::find_in(&stress.render()), None);
        assert_eq!(StressReport::find_in(&members.render()), None);
        let storm = TriggerStormReport {
            threads: 4,
            triggers: 5000,
        };
        assert_eq!(TriggerStormReport::find_in(&storm.render()), Some(storm));
        let attach = ConcurrentAttachReport {
            rounds: 20,
            processes: 4,
            attached: 20,
            refused: 60,
        };
        assert_eq!(
            ConcurrentAttachReport::find_in(&attach.render()),
            Some(attach)
        );
    }
}
