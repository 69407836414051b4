//! `tcp_ca contract CASE`: the contract between the kernel's
//! tcp_congestion_ops and BPF implementations of it, checked as the
//! kernel's bpf_tcp_ca selftests check it. Each case loads only the maps
//! it names from `contract.bpf.c` and prints a line per step
//! (`harness::case`); `crate::contract::case` holds the words.

use clap::ValueEnum;
use harness::case;
use harness::loader::struct_ops::{
    attach, hung_up, link_update, map, print_done, print_load_refusal, print_refusal, print_runs,
    try_attach, update, Selection,
};
use harness::loader::{report_programs, Failure};
use libbpf_rs::Object;

use super::selected;
use crate::contract::case::{self as words, UPDATE_ALGORITHM};
use harness::loader::tcp::{Connection, SelectError};

const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/contract.bpf.o"));

/// Each implementation's init: its run count is the connections it took.
const INITS: &[&str] = &["update_1_init", "update_2_init"];

/// The cases, one scenario each.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Case {
    /// A link switched to another implementation, to a map without a link, and replaced.
    LinkUpdate,
    /// Attach, detach through the link (its fd reports POLLHUP), attach the same map again.
    Reattach,
    /// Required members missing; a program for a member BPF may not implement.
    MemberRules,
}

/// Runs `case`; Ok once every step ran, whatever the kernel said (the lines say it).
pub fn run(case: Case) -> Result<(), Failure> {
    match case {
        Case::LinkUpdate => link_update_case(),
        Case::Reattach => reattach(),
        Case::MemberRules => member_rules(),
    }
}

fn load(maps: &[&str]) -> Result<Object, Failure> {
    Ok(Selection::new("contract", OBJECT).maps(maps).load()?)
}

/// One loopback connection under vmtest_update, a little data, closed.
fn connect() -> Result<(), Failure> {
    let mut connection = Connection::open(UPDATE_ALGORITHM).map_err(selected)?;
    connection.transfer(1000)?;
    connection.close()?;
    Ok(())
}

fn link_update_case() -> Result<(), Failure> {
    let object = &mut load(&["ca_update_1", "ca_update_2", "ca_unlinked"])?;
    let link = attach(object, "ca_update_1")?;
    connect()?;
    print_runs(object, words::ATTACHED_1, INITS);
    update(&link, &map(object, "ca_update_2")?)
        .map_err(|errno| Failure::other(format!("updating to ca_update_2: errno {errno}")))?;
    connect()?;
    print_runs(object, words::UPDATED_2, INITS);
    // The kernel's own rule: libbpf's update would first try to register
    // the map, which the kernel refuses with EEXIST (the name is taken).
    let unlinked = map(object, "ca_unlinked")?;
    print_refusal(words::UPDATE_UNLINKED, link_update(&link, &unlinked, None));
    connect()?;
    print_runs(object, words::AFTER_REFUSED, INITS);
    let (first, second) = (map(object, "ca_update_1")?, map(object, "ca_update_2")?);
    print_refusal(
        words::REPLACE_WRONG_OLD,
        link_update(&link, &first, Some(&first)),
    );
    print_done(
        words::REPLACE_RIGHT_OLD,
        link_update(&link, &first, Some(&second)),
    );
    connect()?;
    print_runs(object, words::REPLACED_1, INITS);
    report_programs(object);
    drop(link);
    Ok(())
}

fn reattach() -> Result<(), Failure> {
    let object = &mut load(&["ca_update_1"])?;
    let link = attach(object, "ca_update_1")?;
    connect()?;
    println!("{}", case::polled(words::ATTACHED_1, hung_up(&link)));
    link.detach()
        .map_err(|err| Failure::other(format!("detaching the link: {err:#}")))?;
    println!("{}", case::polled(words::DETACHED, hung_up(&link)));
    match Connection::open(UPDATE_ALGORITHM) {
        Err(SelectError::NotRegistered(_)) => {
            println!("{}", case::refused(words::CONNECT_DETACHED, "ENOENT"))
        }
        Err(err) => return Err(selected(err)),
        Ok(connection) => {
            println!("{}", case::accepted(words::CONNECT_DETACHED));
            connection.close()?;
        }
    }
    drop(link);
    let again = attach(object, "ca_update_1")?;
    connect()?;
    print_runs(object, words::ATTACHED_AGAIN, &INITS[..1]);
    report_programs(object);
    drop(again);
    Ok(())
}

fn member_rules() -> Result<(), Failure> {
    let mut incomplete = load(&["ca_incomplete"])?;
    print_refusal(
        words::ATTACH_INCOMPLETE,
        try_attach(&mut incomplete, "ca_incomplete")?,
    );
    drop(incomplete);
    let unsupported = Selection::new("contract", OBJECT)
        .maps(&["ca_unsupported"])
        .load();
    print_load_refusal(words::LOAD_UNSUPPORTED, unsupported, "");
    Ok(())
}
