//! A sched_ext scheduler's loader in a few calls, doing what the kernel's
//! own tools/sched_ext does with its `SCX_OPS_OPEN`, `SCX_OPS_LOAD` and
//! `SCX_OPS_ATTACH` macros (include/scx/compat.h and user_exit_info.h): the
//! kernel's CPU hotplug sequence written into the ops before load (so a
//! hotplug between open and attach is noticed), the exit dump sized as the
//! ops ask (`exit_dump_len`, else 32 KiB) with the `.data.uei_dump` map
//! resized to it, the struct_ops map attached as a link that detaches when
//! dropped; then the exit info (`uei`: kind, exit code, reason, message,
//! dump) the scheduler's `ops.exit()` records, and its per-CPU counters.
//! For the kernels whose headers read sched_ext's enums at load (7.x's
//! `enums.autogen.bpf.h`: `__SCX_DSQ_LOCAL` and the rest, `const volatile`
//! globals), their values are written from the running kernel's BTF as
//! `SCX_ENUM_INIT` writes them, and the object's other programs (a
//! `SEC("syscall")` one, say) are tied to its ops after load, as
//! `SCX_OPS_LOAD` does on kernels that know how.
//! A program the verifier refuses with sched_ext's wordless -EACCES (a
//! write to a kernel struct's field it does not allow) fails naming its
//! member and the rule ([`name_refusal`]).
//!
//! ```no_run
//! use harness_loader::sched_ext::Scheduler;
//! # fn demo() -> Result<(), harness_loader::Failure> {
//! let mut scheduler = Scheduler::open("scx_simple", "simple_ops")?.load()?;
//! let link = scheduler.attach()?;
//! // ... let tasks run ...
//! let local = scheduler.loaded().percpu_sum("stats", 0)?;
//! drop(link);
//! // `EXIT: ...`, the line the loader prints (None while it still runs).
//! let exit_line: Option<String> = scheduler.exit_info()?.map(|exit| exit.describe());
//! # let _ = (local, exit_line); Ok(()) }
//! ```

use libbpf_rs::{Link, MapCore as _};

use crate::libbpf_log::{bare_refusal, LoadFailure};
use crate::object::{c_string, Loaded, Opened};
use crate::{errno_of, Failure};

const SYSFS: &str = "/sys/kernel/sched_ext";
/// `UEI_DUMP_DFL_LEN`: the dump's size when the ops do not say.
pub const DEFAULT_DUMP_LEN: u32 = 32768;

/// A scheduler opened and prepared as `SCX_OPS_OPEN` prepares one.
pub struct Scheduler {
    opened: Opened,
    ops: String,
}

impl Scheduler {
    /// Opens `<object>.bpf.o` (compiled by the harness against this
    /// kernel) whose struct_ops map is `ops`, and writes the kernel's
    /// hotplug sequence into it.
    pub fn open(object: &str, ops: &str) -> Result<Self, Failure> {
        if !std::path::Path::new(SYSFS).is_dir() {
            return Err(Failure::other(format!(
                "this kernel has no sched_ext ({SYSFS} is missing): it needs \
                 CONFIG_SCHED_CLASS_EXT=y, which the harness's kernels have from 6.12 on"
            )));
        }
        let mut opened = Opened::open(object)?;
        let seq = read_number("hotplug_seq")?;
        opened.set_member(ops, "hotplug_seq", &seq.to_ne_bytes())?;
        init_enums(&mut opened)?;
        Ok(Scheduler {
            opened,
            ops: ops.to_owned(),
        })
    }

    /// The object, to set its options (its `.rodata` globals) before load.
    pub fn opened(&mut self) -> &mut Opened {
        &mut self.opened
    }

    /// Sizes the exit dump as `UEI_SET_SIZE` does, then loads.
    pub fn load(mut self) -> Result<LoadedScheduler, Failure> {
        let asked = self.opened.member(&self.ops, "exit_dump_len")?;
        let asked = u32::from_ne_bytes(asked.try_into().unwrap_or([0; 4]));
        let len = if asked == 0 { DEFAULT_DUMP_LEN } else { asked };
        self.opened.set_global("uei_dump_len", &len.to_ne_bytes())?;
        let mut dump = (self.opened.object.maps_mut())
            .find(|map| map.name().to_string_lossy().ends_with(".uei_dump"))
            .ok_or_else(|| Failure::other("no .data.uei_dump map: is UEI_DEFINE(uei) in it?"))?;
        dump.set_value_size(len)
            .map_err(|err| Failure::other(format!("resizing the exit dump to {len}: {err}")))?;
        let members = self.opened.struct_ops_programs(&self.ops)?;
        let loaded = (self.opened.try_load())
            .map_err(|failure| Failure::from(name_refusal(failure, &members)))?;
        associate_programs(&loaded, &self.ops)?;
        Ok(LoadedScheduler {
            loaded,
            ops: self.ops,
        })
    }
}

/// The prefix of the globals sched_ext's headers read its enums from
/// (`enums.bpf.h`: `#define SCX_DSQ_LOCAL __SCX_DSQ_LOCAL`).
const ENUM_PREFIX: &str = "__SCX_";

/// Writes each `.rodata` global `__SCX_NAME` the object has with the value
/// of the kernel's enumerator `SCX_NAME`, as `SCX_ENUM_INIT` does (one the
/// kernel lacks stays 0, as there). Objects built with older headers have
/// none, and the kernel's BTF is then not read.
fn init_enums(opened: &mut Opened) -> Result<(), Failure> {
    let names = opened.rodata_names(ENUM_PREFIX)?;
    if names.is_empty() {
        return Ok(());
    }
    let values = kernel_enumerators()?;
    for name in names {
        let wanted = &name[2..];
        if let Some(value) = values.iter().find(|(known, _)| known == wanted) {
            opened.set_global(&name, &value.1.to_ne_bytes())?;
        }
    }
    Ok(())
}

/// The running kernel's value of sched_ext's enumerator `name`
/// (`SCX_SLICE_DFL`), None when it has none: `__COMPAT_ENUM_OR_ZERO`, for
/// the defaults a C loader writes before load.
pub fn kernel_enum(name: &str) -> Result<Option<u64>, Failure> {
    let values = kernel_enumerators()?;
    Ok(values
        .iter()
        .find(|(known, _)| known == name)
        .map(|(_, value)| *value))
}

/// Every `SCX_*` enumerator of the running kernel, from its BTF, read once.
fn kernel_enumerators() -> Result<&'static [(String, u64)], Failure> {
    use libbpf_rs::btf::types::{Enum, Enum64};
    static VALUES: std::sync::OnceLock<Vec<(String, u64)>> = std::sync::OnceLock::new();
    if let Some(values) = VALUES.get() {
        return Ok(values);
    }
    let btf = libbpf_rs::btf::Btf::from_vmlinux()
        .map_err(|err| Failure::other(format!("reading the kernel's BTF: {err}")))?;
    let mut values = Vec::new();
    let mut keep = |name: Option<&std::ffi::OsStr>, value: u64| {
        if let Some(name) = name.and_then(|name| name.to_str()) {
            if name.starts_with(&ENUM_PREFIX[2..]) {
                values.push((name.to_owned(), value));
            }
        }
    };
    for ty in btf.type_by_kind::<Enum<'_>>() {
        ty.iter()
            .for_each(|member| keep(member.name, member.value as u64));
    }
    for ty in btf.type_by_kind::<Enum64<'_>>() {
        ty.iter()
            .for_each(|member| keep(member.name, member.value as u64));
    }
    Ok(VALUES.get_or_init(|| values))
}

/// Ties each program that is not one of the ops to the ops map, as
/// `SCX_OPS_LOAD` does with libbpf 1.7 (`bpf_program__assoc_struct_ops`),
/// so that the kernel knows which scheduler its kfunc calls are for. A
/// kernel without the command (before 7.x) refuses with EINVAL; the C
/// loaders of those kernels never ask, and neither does this one then.
fn associate_programs(loaded: &Loaded, ops: &str) -> Result<(), Failure> {
    use libbpf_rs::AsRawLibbpf as _;
    let map = (loaded.object.maps()).find(|map| map.name() == ops);
    let map = map.ok_or_else(|| Failure::other(format!("no struct_ops map {ops}")))?;
    for program in loaded.object.progs() {
        if program.prog_type() == libbpf_rs::ProgramType::StructOps {
            continue;
        }
        // SAFETY: both pointers are valid while the loaded object is.
        let err = unsafe {
            libbpf_rs::libbpf_sys::bpf_program__assoc_struct_ops(
                program.as_libbpf_object().as_ptr(),
                map.as_libbpf_object().as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if err < 0 && err != -libc::EINVAL {
            return Err(Failure::other(format!(
                "tying {} to {ops}: {}",
                program.name().to_string_lossy(),
                nix::errno::Errno::from_raw(-err).desc()
            )));
        }
    }
    Ok(())
}

/// What sched_ext lets a scheduler write of a kernel struct; any other
/// write the verifier refuses with -EACCES and no message.
pub use harness_wire::kernel_type::SCHED_EXT_WRITE_RULE as WRITE_RULE;

/// `failure`, with sched_ext's wordless refusal of a store (-EACCES, the
/// log ending at the store) given its member and its rule: "ops.enqueue
/// writes a kernel struct's field (`*(u32 *)(r1 +748) = r2`), which the
/// verifier refused with -EACCES and no message: sched_ext lets ...".
/// `members` pairs each member with its program
/// ([`Opened::struct_ops_programs`]); any other failure is left as it is.
pub fn name_refusal(failure: LoadFailure, members: &[(String, String)]) -> LoadFailure {
    let LoadFailure::Rejected {
        program,
        reason,
        log,
    } = failure
    else {
        return failure;
    };
    // libbpf 1.5 and later print the errno's name; older ones strerror's words.
    let refused = bare_refusal(&log).filter(|bare| {
        bare.is_store() && ["-EACCES", "Permission denied"].contains(&bare.errno.as_str())
    });
    let Some(bare) = refused else {
        return LoadFailure::Rejected {
            program,
            reason,
            log,
        };
    };
    let member = members
        .iter()
        .find(|(_, set_to)| *set_to == program)
        .map_or_else(
            || format!("the program {program}"),
            |(member, _)| format!("ops.{member}"),
        );
    let reason = format!(
        "{member} writes a kernel struct's field (`{}`), which the verifier refused with {} \
         and no message: {WRITE_RULE}",
        bare.instruction, bare.errno
    );
    LoadFailure::Rejected {
        program,
        reason,
        log,
    }
}

/// A loaded scheduler.
pub struct LoadedScheduler {
    loaded: Loaded,
    ops: String,
}

impl LoadedScheduler {
    /// Attaches its struct_ops map as a link (`SCX_OPS_ATTACH`); dropping
    /// the link, or the loader exiting, unregisters the scheduler. The
    /// kernel may still eject it at once (a failed `ops.init()` returns
    /// success here): its exit info says so.
    pub fn attach(&mut self) -> Result<Link, Failure> {
        let ops = self.ops.clone();
        let mut map = (self.loaded.object.maps_mut())
            .find(|map| map.name() == ops.as_str())
            .ok_or_else(|| Failure::other(format!("no struct_ops map {ops}")))?;
        map.attach_struct_ops().map_err(|err| {
            let errno = errno_of(&err).map_or(String::new(), |errno| {
                format!(" ({})", nix::errno::Errno::from_raw(errno).desc())
            });
            Failure::other(format!("attaching {ops}: {err}{errno}"))
        })
    }

    /// The loaded object (its maps, its programs).
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// What `ops.exit()` recorded (`UEI_RECORD`), once the scheduler has
    /// exited; None while it has not.
    pub fn exit_info(&self) -> Result<Option<ExitInfo>, Failure> {
        let uei = self.loaded.global("uei")?;
        let info = ExitInfo::parse(&uei)?;
        if info.kind == 0 {
            return Ok(None);
        }
        let dump = (self.loaded.object.maps())
            .find(|map| map.name().to_string_lossy().ends_with(".uei_dump"))
            .and_then(|map| {
                map.lookup(&0u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
                    .ok()
            })
            .flatten()
            .unwrap_or_default();
        Ok(Some(ExitInfo {
            dump: c_string(&dump),
            ..info
        }))
    }
}

/// `struct user_exit_info`, as user_exit_info.h lays it out, and the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// `enum scx_exit_kind` (1024 and up: the kernel ejected it).
    pub kind: i32,
    /// What `scx_bpf_exit()` or the kernel set (its top bits ask for a restart).
    pub exit_code: i64,
    /// The kernel's reason (`runnable task stall`).
    pub reason: String,
    /// The message (`scx_bpf_error()`'s text).
    pub msg: String,
    /// The debug dump, when there is one.
    pub dump: String,
}

impl ExitInfo {
    /// From the bytes of `uei`: kind at 0, exit_code at 8, reason (128) at
    /// 16, msg (1024) at 144.
    pub fn parse(bytes: &[u8]) -> Result<Self, Failure> {
        if bytes.len() < 144 + 1024 {
            return Err(Failure::other(format!(
                "uei is {} bytes, not struct user_exit_info's 1168",
                bytes.len()
            )));
        }
        let kind = i32::from_ne_bytes(bytes[0..4].try_into().unwrap_or([0; 4]));
        let exit_code = i64::from_ne_bytes(bytes[8..16].try_into().unwrap_or([0; 8]));
        Ok(ExitInfo {
            kind,
            exit_code,
            reason: c_string(&bytes[16..144]),
            msg: c_string(&bytes[144..144 + 1024]),
            dump: String::new(),
        })
    }

    /// `EXIT: reason (msg)`, as UEI_REPORT prints it.
    pub fn describe(&self) -> String {
        match self.msg.is_empty() {
            true => format!("EXIT: {}", self.reason),
            false => format!("EXIT: {} ({})", self.reason, self.msg),
        }
    }
}

fn read_number(name: &str) -> Result<u64, Failure> {
    let path = format!("{SYSFS}/{name}");
    let text = std::fs::read_to_string(&path)
        .map_err(|err| Failure::other(format!("reading {path}: {err}")))?;
    text.trim()
        .parse()
        .map_err(|err| Failure::other(format!("{path} holds {text:?}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_info_is_read_from_its_layout() {
        let mut uei = vec![0u8; 1168];
        uei[0..4].copy_from_slice(&1025i32.to_ne_bytes());
        uei[8..16].copy_from_slice(&7i64.to_ne_bytes());
        uei[16..29].copy_from_slice(b"scx_bpf_error");
        uei[144..165].copy_from_slice(b"test triggering error");
        let info = ExitInfo::parse(&uei).unwrap();
        assert_eq!((info.kind, info.exit_code), (1025, 7));
        assert_eq!(
            info.describe(),
            "EXIT: scx_bpf_error (test triggering error)"
        );
        assert!(ExitInfo::parse(&uei[..100]).is_err());
    }

    #[test]
    fn a_wordless_store_refusal_names_the_member_and_the_rule() {
        let err = libbpf_rs::Error::from_raw_os_error(libc::EACCES);
        let captured = crate::libbpf_log::failure_of(crate::libbpf_log::BARE_EACCES.into(), &err);
        let members = [
            ("dispatch".to_owned(), "rejected_dispatch".to_owned()),
            ("enqueue".to_owned(), "rejected_enqueue".to_owned()),
        ];
        let named = name_refusal(captured, &members);
        assert_eq!(
            named.to_string(),
            "the verifier rejected rejected_enqueue: ops.enqueue writes a kernel struct's field \
             (`*(u32 *)(r1 +748) = r2`), which the verifier refused with -EACCES and no message: \
             sched_ext lets a scheduler write only p->scx.slice, p->scx.dsq_vtime and p->scx.disallow"
        );
        assert_eq!(Failure::from(named).code, crate::exit::REJECTED_BY_VERIFIER);
        // Without the member's name, the program's.
        let captured = crate::libbpf_log::failure_of(crate::libbpf_log::BARE_EACCES.into(), &err);
        let reason = name_refusal(captured, &[]).to_string();
        assert!(
            reason.contains(": the program rejected_enqueue writes"),
            "{reason}"
        );
    }

    #[test]
    fn other_failures_are_left_as_they_are() {
        let other = LoadFailure::Other {
            message: "no".into(),
            log: crate::libbpf_log::BARE_EACCES.into(),
        };
        assert!(matches!(
            name_refusal(other, &[]),
            LoadFailure::Other { .. }
        ));
        let worded = LoadFailure::Rejected {
            program: "p".into(),
            reason: "invalid bpf_context access off=8 size=8".into(),
            log: "libbpf: prog 'p': BPF program load failed: -EACCES\n".into(),
        };
        let kept = name_refusal(worded, &[]).to_string();
        assert_eq!(
            kept,
            "the verifier rejected p: invalid bpf_context access off=8 size=8"
        );
    }
}
