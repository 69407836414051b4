//! What the `scx` loader and the scenarios that run it agree on: the
//! schedulers, the line it prints once attached, its exit codes and its
//! reports, each rendered and parsed by one type (the harness's
//! [`Report`] trait).

pub use harness::Report;

/// Printed once the scheduler is attached.
pub const ATTACHED: &str = "attached";

/// The loader's exit codes: the ones every loader shares, and one of its own.
pub mod exit {
    pub use harness::exit::{FAILURE, SUCCESS};
    /// The kernel ejected the scheduler while the loader held it (its exit
    /// info, printed before, says why).
    pub const EJECTED: u8 = 6;
}

/// A scheduler of tools/sched_ext: its object, its struct_ops map and the
/// name sched_ext knows it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduler {
    /// `<object>.bpf.o`, compiled by the harness.
    pub object: &'static str,
    /// Its `SCX_OPS_DEFINE` map.
    pub ops: &'static str,
    /// `.name` in its ops: what `/sys/kernel/sched_ext/root/ops` says.
    pub name: &'static str,
}

/// The simplest scheduler: a global vtime (or FIFO) queue.
pub const SIMPLE: Scheduler = Scheduler {
    object: "scx_simple",
    ops: "simple_ops",
    name: "simple",
};

/// A five-level FIFO queue scheduler with options that make it misbehave.
pub const QMAP: Scheduler = Scheduler {
    object: "scx_qmap",
    ops: "qmap_ops",
    name: "qmap",
};

/// scx_simple's counters (its `stats` map, summed over the CPUs): tasks
/// dispatched straight to an idle CPU, and through the global queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimpleCounts {
    pub local: u64,
    pub global: u64,
}

impl Report for SimpleCounts {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        match *numbers {
            [local, global] => Some(SimpleCounts { local, global }),
            _ => None,
        }
    }

    fn render(&self) -> String {
        format!(
            "simple dispatched {} tasks to an idle CPU and {} through its queue",
            self.local, self.global
        )
    }
}

/// scx_qmap's counters (its `nr_enqueued` and `nr_dispatched` globals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QmapCounts {
    pub enqueued: u64,
    pub dispatched: u64,
}

impl Report for QmapCounts {
    fn from_numbers(numbers: &[u64]) -> Option<Self> {
        match *numbers {
            [enqueued, dispatched] => Some(QmapCounts {
                enqueued,
                dispatched,
            }),
            _ => None,
        }
    }

    fn render(&self) -> String {
        format!(
            "qmap enqueued {} tasks and dispatched {}",
            self.enqueued, self.dispatched
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reports_round_trip() {
        let simple = SimpleCounts {
            local: 12,
            global: 3,
        };
        assert_eq!(SimpleCounts::find_in(&simple.render()), Some(simple));
        let qmap = QmapCounts {
            enqueued: 5,
            dispatched: 4,
        };
        assert_eq!(
            QmapCounts::find_in(&format!("x\n{}\n", qmap.render())),
            Some(qmap)
        );
    }
}
