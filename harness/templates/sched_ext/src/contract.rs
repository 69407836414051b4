//! What the loader and the scenarios agree on, in one place: the
//! scheduler's names, the line the loader prints once attached, its exit
//! codes, its counters' report and the errors it is made to raise.

pub use harness::Report;

/// The scheduler's object (src/bpf/@NAME@.bpf.c, compiled by the harness).
pub const OBJECT: &str = "@NAME@";
/// Its struct_ops map (`SCX_OPS_DEFINE`).
pub const OPS: &str = "@NAME@_ops";
/// `.name` in its ops: what /sys/kernel/sched_ext/root/ops says.
pub const NAME: &str = "@NAME@";
/// The scheduler the verifier must refuse (src/bpf/rejected.bpf.c).
pub const REJECTED_OBJECT: &str = "rejected";
/// Its struct_ops map.
pub const REJECTED_OPS: &str = "rejected_ops";

/// Printed once the scheduler is attached.
pub const ATTACHED: &str = "attached";

/// The loader's exit codes: the ones every loader shares, and one of its own.
pub mod exit {
    pub use harness::exit::{FAILURE, REJECTED_BY_VERIFIER, SUCCESS};
    /// The kernel ejected the scheduler while the loader held it (its exit
    /// info, printed before, says why).
    pub const EJECTED: u8 = 6;
}

/// The dispatch at which the error_exit scenario has the scheduler call
/// scx_bpf_error().
pub const ERROR_AFTER_DISPATCHES: u64 = 50;
/// The message of that error, as a regex (the scheduler prints the count).
pub const ERROR_MESSAGE: &str = r"^dispatched \d+ tasks, as error_after_dispatches asked$";

/// What the verifier's refusal of src/bpf/rejected.bpf.c says: the member
/// that wrote, and sched_ext's rule (the loader names both; the kernel
/// gives only -EACCES).
pub const REJECTED_REASON: &str = "ops.enqueue writes a kernel struct's field";
/// sched_ext's rule, as the loader (harness::loader::sched_ext) words it.
pub use harness::wire::kernel_type::SCHED_EXT_WRITE_RULE as WRITE_RULE;

/// The scheduler's counters (its `counters` map, summed over the CPUs):
/// tasks put in its queue, and tasks a CPU took from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub enqueued: u64,
    pub dispatched: u64,
}

impl Report for Counts {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        match *numbers {
            [enqueued, dispatched] => Some(Counts {
                enqueued,
                dispatched,
            }),
            _ => None,
        }
    }

    fn render(&self) -> String {
        format!(
            "the scheduler queued {} tasks and dispatched {}",
            self.enqueued, self.dispatched
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_report_round_trips() {
        let counts = Counts {
            enqueued: 12,
            dispatched: 9,
        };
        assert_eq!(
            Counts::find_in(&format!("x\n{}\n", counts.render())),
            Some(counts)
        );
    }
}
