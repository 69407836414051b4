//! `struct_ops contract CASE`: the contract between bpf_testmod_ops and its
//! BPF implementations, checked the way the kernel's own struct_ops
//! selftests check theirs. Each case loads only the maps it names from
//! `contract.bpf.c` and prints a line per step (`harness::case`); what the
//! lines must say is `crate::contract::case`, which the scenarios expect.

use clap::ValueEnum;
use harness::loader::struct_ops::{
    attach, errno_name, hung_up, link_update, map, print_done, print_load_refusal, print_refusal,
    print_runs, try_attach, update, Selection,
};
use harness::loader::{report_programs, Failure};
use libbpf_rs::Object;

use super::ops;
use crate::contract::case as words;

const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/contract.bpf.o"));

/// The cases, one scenario each.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Case {
    /// A link switched to another implementation, to a map without a link, and replaced.
    LinkUpdate,
    /// Attach, detach through the link (its fd reports POLLHUP), attach the same map again.
    Reattach,
    /// A required member missing, a reserved member, an unknown field, NULL members.
    MemberRules,
    /// A sleepable program for test_1 and for test_sleepable.
    Sleepable,
    /// test_maybe_null's argument read unchecked, and checked with NULL and a message.
    Nullable,
    /// The module's kfunc called from an op and from a syscall program.
    Kfunc,
}

/// Runs `case`; Ok once every step ran, whatever the kernel said (the lines say it).
pub fn run(case: Case) -> Result<(), Failure> {
    ops::ensure_module_btf()?;
    match case {
        Case::LinkUpdate => link_update_case(),
        Case::Reattach => reattach(),
        Case::MemberRules => member_rules(),
        Case::Sleepable => sleepable(),
        Case::Nullable => nullable(),
        Case::Kfunc => kfunc(),
    }
}

/// Loads the maps named from the contract object (and their programs).
pub(super) fn load(maps: &[&str]) -> Result<Object, Failure> {
    Ok(Selection::new("contract", OBJECT).maps(maps).load()?)
}

fn trigger(message: &str, times: usize) -> Result<(), Failure> {
    for _ in 0..times {
        ops::trigger(message)?;
    }
    Ok(())
}

/// Loads `map` alone, attaches it, writes each of `messages`, and prints
/// `program`'s runs after `what`.
fn run_alone(map: &str, messages: &[&str], what: &str, program: &str) -> Result<(), Failure> {
    let mut object = load(&[map])?;
    let link = attach(&mut object, map)?;
    for message in messages {
        trigger(message, 1)?;
    }
    print_runs(&object, what, &[program]);
    report_programs(&object);
    drop(link);
    Ok(())
}

/// Prints how loading `map` alone, which the kernel must refuse, came out.
fn print_map_refusal(what: &str, map: &str) {
    let loaded = Selection::new("contract", OBJECT).maps(&[map]).load();
    print_load_refusal(what, loaded, "");
}

fn link_update_case() -> Result<(), Failure> {
    const AB: &[&str] = &["ops_a_test_1", "ops_b_test_1"];
    let mut object = load(&["ops_a", "ops_b", "ops_unlinked"])?;
    let link = attach(&mut object, "ops_a")?;
    trigger(words::MESSAGE, 2)?;
    print_runs(&object, words::ATTACHED_A, AB);
    update(&link, &map(&object, "ops_b")?)
        .map_err(|errno| Failure::other(format!("updating to ops_b: {}", errno_name(errno))))?;
    trigger(words::MESSAGE, 2)?;
    print_runs(&object, words::UPDATED_B, AB);
    // The kernel's own rule: libbpf's update would first try to register the
    // map, which the module refuses with EEXIST before the kernel is asked.
    let unlinked = map(&object, "ops_unlinked")?;
    print_refusal(words::UPDATE_UNLINKED, link_update(&link, &unlinked, None));
    trigger(words::MESSAGE, 1)?;
    print_runs(&object, words::AFTER_REFUSED, AB);
    let (ops_a, ops_b) = (map(&object, "ops_a")?, map(&object, "ops_b")?);
    print_refusal(
        words::REPLACE_WRONG_OLD,
        link_update(&link, &ops_a, Some(&ops_a)),
    );
    print_done(
        words::REPLACE_RIGHT_OLD,
        link_update(&link, &ops_a, Some(&ops_b)),
    );
    trigger(words::MESSAGE, 1)?;
    print_runs(&object, words::REPLACED_A, AB);
    report_programs(&object);
    drop(link);
    Ok(())
}

fn reattach() -> Result<(), Failure> {
    const A: &[&str] = &["ops_a_test_1"];
    let mut object = load(&["ops_a"])?;
    let link = attach(&mut object, "ops_a")?;
    trigger(words::MESSAGE, 1)?;
    println!(
        "{}",
        harness::case::polled(words::ATTACHED_ONCE, hung_up(&link))
    );
    link.detach()
        .map_err(|err| Failure::other(format!("detaching the link: {err:#}")))?;
    println!("{}", harness::case::polled(words::DETACHED, hung_up(&link)));
    trigger(words::MESSAGE, 1)?;
    drop(link);
    let again = attach(&mut object, "ops_a")?;
    trigger(words::MESSAGE, 1)?;
    print_runs(&object, words::ATTACHED_AGAIN, A);
    report_programs(&object);
    drop(again);
    Ok(())
}

fn member_rules() -> Result<(), Failure> {
    let mut incomplete = load(&["ops_incomplete"])?;
    print_refusal(
        words::ATTACH_INCOMPLETE,
        try_attach(&mut incomplete, "ops_incomplete")?,
    );
    drop(incomplete);
    print_map_refusal(words::LOAD_RESERVED, "ops_reserved");
    let future = Selection::new("contract", OBJECT)
        .maps(&["ops_future_set"])
        .load();
    print_load_refusal(words::LOAD_FUTURE_SET, future, "Cannot find member");
    let what = words::ATTACHED_FUTURE_ZERO;
    run_alone("ops_future_zero", &[words::MESSAGE], what, "ops_a_test_1")
}

fn sleepable() -> Result<(), Failure> {
    print_map_refusal(words::LOAD_SLEEPABLE_TEST_1, "ops_sleepable_wrong");
    let (what, program) = (words::ATTACHED_SLEEPABLE, "sleepable_test_sleepable");
    run_alone("ops_sleepable", &[words::MESSAGE], what, program)
}

fn nullable() -> Result<(), Failure> {
    print_map_refusal(words::LOAD_UNCHECKED, "ops_null_unchecked");
    // An empty write gives test_maybe_null NULL.
    let messages = ["", words::MESSAGE];
    let (what, program) = (words::ATTACHED_CHECKED, "checked_test_maybe_null");
    run_alone("ops_null_checked", &messages, what, program)
}

fn kfunc() -> Result<(), Failure> {
    let elsewhere = Selection::new("contract", OBJECT)
        .programs(&["kfunc_from_syscall"])
        .load();
    print_load_refusal(words::LOAD_KFUNC_SYSCALL, elsewhere, "");
    run_alone(
        "ops_kfunc",
        &[words::MESSAGE],
        words::ATTACHED_KFUNC,
        "kfunc_test_2",
    )
}
