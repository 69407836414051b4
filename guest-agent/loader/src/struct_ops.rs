//! What checking a struct_ops type's contract takes beyond a skeleton: one
//! object holding several implementations, of which a case loads only the
//! ones it names ([`Selection`]); how often each program has run so far
//! ([`runs`]); a link switched to another map, or replaced only if it still
//! holds the map named ([`update`], [`link_update`]); and whether a link's fd
//! reports that the link was detached ([`hung_up`]).
//!
//! ```no_run
//! # fn demo(bytes: &[u8]) -> Result<(), harness_loader::LoadFailure> {
//! use harness_loader::struct_ops::{runs, Selection};
//! use libbpf_rs::MapCore as _;
//! let mut object = Selection::new("contract", bytes).maps(&["ops_a"]).load()?;
//! let link = object.maps_mut().find(|map| map.name() == "ops_a").unwrap().attach_struct_ops();
//! let ran: u64 = runs(&object, "ops_a_test_1"); // how often it ran so far
//! # let _ = (link, ran);
//! # Ok(()) }
//! ```

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{AsRawLibbpf, Link, Map, MapCore as _, MapType, Object, ObjectBuilder};

use crate::libbpf_log::{Capture, LoadFailure};
use crate::{errno_of, Failure};
use harness_wire::case;

/// Which of an object's struct_ops maps (and other programs) to load.
/// libbpf loads a struct_ops program only if a map it is in is created,
/// so one object can hold the implementations the verifier must refuse
/// beside those it must accept.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    name: &'a str,
    bytes: &'a [u8],
    maps: &'a [&'a str],
    programs: &'a [&'a str],
}

impl<'a> Selection<'a> {
    /// The object `name` (for messages), compiled into `bytes`; nothing selected yet.
    pub fn new(name: &'a str, bytes: &'a [u8]) -> Self {
        Selection {
            name,
            bytes,
            maps: &[],
            programs: &[],
        }
    }

    /// The struct_ops maps to create; every other one is left out, with its programs.
    pub fn maps(self, maps: &'a [&'a str]) -> Self {
        Selection { maps, ..self }
    }

    /// Programs outside any struct_ops map to load too (the others are not).
    pub fn programs(self, programs: &'a [&'a str]) -> Self {
        Selection { programs, ..self }
    }

    /// Opens the object, keeps what was selected and loads it; libbpf's
    /// words (and the verifier's reason) are in the failure.
    pub fn load(self) -> Result<Object, LoadFailure> {
        let capture = Capture::start();
        let mut open = ObjectBuilder::default()
            .name(self.name)
            .and_then(|builder| builder.open_memory(self.bytes))
            .map_err(|err| capture.load_error(&err))?;
        for mut map in open.maps_mut() {
            if map.map_type() == MapType::StructOps {
                let keep = self.maps.iter().any(|name| map.name() == *name);
                map.set_autocreate(keep)
                    .map_err(|err| capture.load_error(&err))?;
            }
        }
        for mut program in open.progs_mut() {
            if program.prog_type() != libbpf_rs::ProgramType::StructOps {
                let keep = self.programs.iter().any(|name| program.name() == *name);
                program.set_autoload(keep);
            }
        }
        open.load().map_err(|err| capture.load_error(&err))
    }
}

/// How many times `program` of `object` has run (with the kernel's BPF
/// stats on, as they are for a scenario); 0 for a program not loaded.
pub fn runs(object: &Object, program: &str) -> u64 {
    object
        .progs()
        .find(|loaded| loaded.name() == program)
        .and_then(|loaded| info_of(loaded.as_fd().as_raw_fd()))
        .map_or(0, |info| info.run_cnt)
}

fn info_of(fd: i32) -> Option<libbpf_rs::libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: the kernel fills at most `len` bytes of the info we own.
    let got = unsafe {
        libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(
            fd,
            std::ptr::addr_of_mut!(info).cast(),
            &mut len,
        )
    };
    (got == 0).then_some(info)
}

/// Switches `link` to the implementation in `map` (libbpf writes the map's
/// value first if it was never attached). Err is the kernel's errno.
pub fn update(link: &Link, map: &Map<'_>) -> Result<(), i32> {
    // SAFETY: both pointers come from live libbpf-rs objects.
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_link__update_map(
            link.as_libbpf_object().as_ptr(),
            map.as_libbpf_object().as_ptr(),
        )
    };
    errno_result(ret)
}

/// The kernel's `BPF_LINK_UPDATE` as it is, with nothing written first:
/// switches `link` to `new`, and with `expected_old`, only if the link still
/// holds that map (`BPF_F_REPLACE`). Unlike [`update`], a map whose value
/// was never written (never attached) stays unwritten, and is refused.
pub fn link_update(link: &Link, new: &Map<'_>, expected_old: Option<&Map<'_>>) -> Result<(), i32> {
    let opts = libbpf_rs::libbpf_sys::bpf_link_update_opts {
        sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_link_update_opts>() as _,
        flags: expected_old.map_or(0, |_| libbpf_rs::libbpf_sys::BPF_F_REPLACE),
        old_map_fd: expected_old.map_or(0, |old| old.as_fd().as_raw_fd() as u32),
        ..Default::default()
    };
    // SAFETY: the fds are live and `opts` outlives the call.
    let ret = unsafe {
        libbpf_rs::libbpf_sys::bpf_link_update(
            link.as_fd().as_raw_fd(),
            new.as_fd().as_raw_fd(),
            &opts,
        )
    };
    errno_result(ret)
}

fn errno_result(ret: i32) -> Result<(), i32> {
    match ret {
        0 => Ok(()),
        negative if negative < 0 => Err(-negative),
        _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)),
    }
}

/// Whether the link's fd reports `POLLHUP` now: the kernel wakes a poller
/// with it when the link is detached (struct_ops links, since Linux 6.10).
pub fn hung_up(link: &Link) -> bool {
    let mut poll = libc::pollfd {
        fd: link.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd we own; a zero timeout does not block.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    ready > 0 && poll.revents & libc::POLLHUP != 0
}

/// The errno's name, for what a loader prints (`EINVAL`, `EPERM`, ...).
pub fn errno_name(errno: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(errno))
}

/// The loaded map `name` of `object`.
pub fn map<'o>(object: &'o Object, name: &str) -> Result<Map<'o>, Failure> {
    object
        .maps()
        .find(|map| map.name() == name)
        .ok_or_else(|| Failure::other(format!("no map {name} was loaded")))
}

/// Attaches the map `name`: its link, or the errno the kernel refused it with.
pub fn try_attach(object: &mut Object, name: &str) -> Result<Result<Link, i32>, Failure> {
    let mut found = object.maps_mut().find(|map| map.name() == name);
    let map = found
        .as_mut()
        .ok_or_else(|| Failure::other(format!("no map {name} was loaded")))?;
    Ok(map
        .attach_struct_ops()
        .map_err(|err| errno_of(&err).unwrap_or(0)))
}

/// Attaches the map `name`, or fails naming it and the errno.
pub fn attach(object: &mut Object, name: &str) -> Result<Link, Failure> {
    try_attach(object, name)?
        .map_err(|errno| Failure::other(format!("attaching {name}: {}", errno_name(errno))))
}

/// Each program's runs so far, after `what` ([`case::runs`]): the line a
/// loader prints.
pub fn runs_line(object: &Object, what: &str, programs: &[&str]) -> String {
    let counts: Vec<(&str, u64)> = programs
        .iter()
        .map(|program| (*program, runs(object, program)))
        .collect();
    case::runs(what, &counts)
}

/// How a step the kernel must refuse came out: [`case::refused`] with the
/// errno's name, or [`case::accepted`].
pub fn refusal_line<T>(what: &str, result: Result<T, i32>) -> String {
    match result {
        Ok(_) => case::accepted(what),
        Err(errno) => case::refused(what, &errno_name(errno)),
    }
}

/// How a step that must succeed came out: [`case::done`], or
/// [`case::refused`] with the errno's name.
pub fn done_line<T>(what: &str, result: Result<T, i32>) -> String {
    match result {
        Ok(_) => case::done(what),
        Err(errno) => case::refused(what, &errno_name(errno)),
    }
}

/// How a load the verifier or libbpf must refuse came out: the verifier's
/// reason, or libbpf's first line holding `needle`.
pub fn load_refusal_line(what: &str, loaded: Result<Object, LoadFailure>, needle: &str) -> String {
    let why = match loaded {
        Ok(_) => return case::accepted(what),
        Err(LoadFailure::Rejected { reason, .. }) => reason,
        Err(LoadFailure::Other { message, log }) => log
            .lines()
            .find(|line| line.contains(needle))
            .map_or(message, |line| line.trim().to_owned()),
    };
    case::refused(what, &why)
}
