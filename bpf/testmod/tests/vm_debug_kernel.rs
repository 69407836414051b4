//! The debug kernel (`--debug-kernel`) sees what the default kernel cannot:
//! each test builds the module with one bug planted in it (the `PLANT_*`
//! switches in kmod/bpf_testmod/bpf_testmod.c, never built for the normal scenarios),
//! runs the `trigger` scenario on the debug kernel, and insists that the
//! scenario fails naming the kernel's report, and that the default kernel
//! passes the same module blind. The nextest setup script
//! `debug-kernel` builds that kernel first (a full kernel build, once). A
//! subject's own test of the harness's host API, as any crate could write.

mod common;

use harness::host::kernel::Flavour;

fn assert_caught(plant: &str, class: &str, text: &str) {
    common::assert_caught(Flavour::Debug, plant, "trigger", class, text);
}

/// A read of freed memory on the trigger path: KASAN's report, or KFENCE's
/// when KFENCE happened to sample the object (seen in a loaded CI run).
#[test]
fn debug_kernel_catches_use_after_free() {
    common::assert_caught_as_one_of(
        1,
        Flavour::Debug,
        "PLANT_USE_AFTER_FREE",
        "trigger",
        &[
            ("KASAN memory error", "BUG: KASAN: slab-use-after-free in"),
            ("KFENCE memory error", "BUG: KFENCE: use-after-free read in"),
        ],
    );
}

/// The ops read and called without rcu_read_lock().
#[test]
fn debug_kernel_catches_missing_rcu_read_lock() {
    assert_caught(
        "PLANT_MISSING_RCU_READ_LOCK",
        "RCU usage",
        "suspicious RCU usage",
    );
}

/// Two locks taken in one order on attach and in the other on trigger:
/// without two tasks racing there is no deadlock to see on the default kernel.
#[test]
fn debug_kernel_catches_lock_order_inversion() {
    assert_caught(
        "PLANT_LOCK_ORDER",
        "lockdep lock order or state",
        "possible circular locking dependency detected",
    );
}

/// A copy of every message kept and never freed: kmemleak's scan after the
/// scenario (the module unloaded) names the allocation's stack, the module's
/// frames included. On `cycles` (100 triggers from one process), not
/// `trigger`: kmemleak takes any word that looks like an object's address
/// for a reference, and `trigger`'s one leaked object went unreported in 3
/// of 4 full test runs on a loaded machine (never idle, nor in 6 runs alone
/// under the same load). A dead task's kernel stack stays mapped in a
/// per-CPU cache, which kmemleak reads whole, and the stale copy of the
/// address in it is the likely reference. A leak on the trigger path leaks at every call; the
/// later calls overwrite the earlier ones' stale copies. (Only on a loaded
/// machine: the guest's jiffies, in which kmemleak ages objects, fell
/// behind its clock there, and the agent waited by the clock until it
/// waited by jiffies; that too may have been the cause.)
#[test]
fn debug_kernel_catches_a_leak() {
    common::assert_caught(
        Flavour::Debug,
        "PLANT_LEAK",
        "cycles",
        "memory leak (kmemleak)",
        "[bpf_testmod]",
    );
}

/// One VM running several scenarios, as `harness run` does on this kernel:
/// the scan after each scenario takes the checksums of what it allocated
/// and judges what the ones before it did, so the leak of `cycles`, which
/// runs first, is found by the scans after `attach` and `no_module` (which
/// do not trigger, and pass), and is counted against `cycles` alone.
#[test]
fn debug_kernel_finds_a_leak_in_a_vm_that_runs_on() {
    let batch = common::run_in_one_vm(
        Flavour::Debug,
        "PLANT_LEAK",
        &["cycles", "attach", "no_module"],
    );
    if let Err(err) = &batch.ended {
        panic!("the VM failed: {err:#}");
    }
    let results: Vec<_> = batch.runs.iter().map(|run| &run.result).collect();
    let names: Vec<&str> = results
        .iter()
        .map(|result| result.scenario.as_str())
        .collect();
    assert_eq!(names, ["cycles", "attach", "no_module"]);
    let leak = results[0]
        .failures
        .iter()
        .find(|failure| failure.starts_with("kmemleak's scan after the scenario found a splat"));
    let leak = leak.unwrap_or_else(|| panic!("no leak reported: {:#?}", results[0].failures));
    assert!(leak.contains("[bpf_testmod]"), "{leak}");
    for result in &results[1..] {
        assert!(result.passed, "{}: {:#?}", result.scenario, result.failures);
    }
}

/// A scenario that fails ends its VM: the kernel may no longer be clean
/// (lockdep turns itself off at its first report), so the agent runs
/// nothing after it and says why; `harness run` runs the rest in a fresh VM.
#[test]
fn debug_kernel_runs_nothing_after_a_failure_in_the_same_vm() {
    let batch = common::run_in_one_vm(
        Flavour::Debug,
        "PLANT_USE_AFTER_FREE",
        &["trigger", "attach"],
    );
    if let Err(err) = &batch.ended {
        panic!("the VM failed: {err:#}");
    }
    let names: Vec<&str> = (batch.runs.iter())
        .map(|run| run.result.scenario.as_str())
        .collect();
    assert_eq!(names, ["trigger"], "attach ran after a failure");
    assert!(!batch.runs[0].result.passed);
}

/// `1u << (len + 20)`, past the type's width for a 21-byte message.
#[test]
fn debug_kernel_catches_a_shift_past_the_width() {
    assert_caught(
        "PLANT_SHIFT",
        "undefined behaviour (UBSAN)",
        "UBSAN: shift-out-of-bounds in",
    );
}

/// An index past a fixed array into the member after it: inside the
/// object, so KASAN sees nothing; UBSAN's bounds check sees the index.
#[test]
fn debug_kernel_catches_an_index_past_a_fixed_array() {
    assert_caught(
        "PLANT_INDEX",
        "undefined behaviour (UBSAN)",
        "UBSAN: array-index-out-of-bounds in",
    );
}
