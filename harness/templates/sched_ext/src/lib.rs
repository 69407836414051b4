//! The subject: @NAME@, a sched_ext scheduler (struct sched_ext_ops, which
//! the kernel defines) with one global FIFO queue (src/bpf/@NAME@.bpf.c),
//! loaded and held by the loader (src/loader/, built with the `loader`
//! feature only). No module, and no build.rs: the harness compiles the
//! scheduler against each kernel it runs on, with that kernel's vmlinux.h,
//! libbpf headers and tools/sched_ext/include.

pub mod contract;
#[cfg(feature = "loader")]
mod loader;
mod scenarios;

use harness::{BpfObject, KernelType, Subject};

harness::loader!(LOADER = loader::main);

/// The subject, as the harness learns of it.
pub const SUBJECT: Subject = Subject::new(
    "@NAME@",
    "@NAME@, a sched_ext scheduler with one global FIFO queue",
    env!("CARGO_MANIFEST_DIR"),
)
// The core then knows sched_ext's kernel lines, its ejections and what
// must hold after each scenario (no scheduler attached, no task on ext).
.implements(KernelType::SchedExtOps)
.bpf_objects(&[
    BpfObject::own("src/bpf/@NAME@.bpf.c"),
    BpfObject::own("src/bpf/rejected.bpf.c"),
])
.loader("@NAME@_loader", LOADER)
.scenarios(scenarios::SCENARIOS)
// A struct field's offset in the refused instruction (`*(u32 *)(r1 +748) = r2`)
// or a verifier reason (`off=748`) moves with the kernel's layout.
.normalise(&[
    (r"(\(r\d+ )\+\d+\)", "${1}+<OFFSET>)"),
    (r"\b(off=)\d+", "${1}<OFFSET>"),
]);
