//! The third subject: the kernel's own sched_ext schedulers, `scx_simple`
//! and `scx_qmap` from `tools/sched_ext`, compiled unchanged by the harness
//! from the source of the kernel under test (never copied here), loaded by
//! a loader that does what their own C loaders do (harness's
//! `loader::sched_ext`). Its scenarios check what a scheduler's developer
//! checks: that it attaches and detaches, that tasks run on it, that the
//! kernel ejects it (watchdog, runtime error) when its options make it
//! misbehave, and a scheduler on a NUMA machine.

pub mod contract;
#[cfg(feature = "loader")]
mod loader;
mod scenarios;

use harness::{BpfObject, KernelType, Subject};

harness::loader!(LOADER = loader::main);

/// The subject, as the harness learns of it.
pub const SUBJECT: Subject = Subject::new(
    "scx",
    "the kernel's own sched_ext schedulers (tools/sched_ext), compiled from its source",
    env!("CARGO_MANIFEST_DIR"),
)
.implements(KernelType::SchedExtOps)
.bpf_objects(&[
    BpfObject::from_kernel("tools/sched_ext/scx_simple.bpf.c"),
    BpfObject::from_kernel("tools/sched_ext/scx_qmap.bpf.c"),
])
.loader("scx", LOADER)
.scenarios(scenarios::SCENARIOS)
// When qmap's dispatch loop starves every CPU, which of the watchdog's two
// checks fires first (a task that did not run, or the watchdog's own work
// that did not) is a race between them; both are the same runnable task
// stall, which the scenarios expect by kind.
.normalise(&[(
    r"(?:<TASK> failed to run|watchdog failed to check in) for <SECONDS>s",
    "<a task or the watchdog> stalled for <SECONDS>s",
)]);
