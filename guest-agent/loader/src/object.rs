//! BPF objects the harness compiled against the running kernel (a
//! subject's `bpf_objects`): found by name in the directory the agent
//! names ([`harness_wire::catalogue::BPF_DIR_ENV`]), opened without a
//! skeleton, their globals and struct_ops members set and read by name
//! (found in the object's BTF), their per-CPU counters summed. This is
//! what a loader for code nobody here wrote (the kernel's own
//! schedulers, compiled from its source) works with.
//!
//! A global is named as C names it, a member of a global struct with a
//! dot (`qa.nr_enqueued`). Globals in a BPF arena (`__arena`, the
//! `.addr_space.1` section 7.x's scx_qmap keeps its counters in) are set
//! before load and read after it as the others are.
//!
//! ```no_run
//! use harness_loader::object::Opened;
//! # fn demo() -> Result<(), harness_loader::Failure> {
//! let mut opened = Opened::open("scx_simple")?;
//! opened.set_global("fifo_sched", &[1])?;
//! let loaded = opened.load()?;
//! let local = loaded.percpu_sum("stats", 0)?;
//! // A member of a global struct, in an arena or not.
//! let enqueued = loaded.global("qa.nr_enqueued")?;
//! # let _ = (local, enqueued); Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::OnceLock;

use libbpf_rs::btf::types::{DataSec, Struct, Var};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, ReferencesType as _, TypeId};
use libbpf_rs::{MapCore as _, MapFlags, MapType, Object, ObjectBuilder, OpenObject};

use crate::libbpf_log::{Capture, LoadFailure};
use crate::Failure;
use harness_wire::catalogue::BPF_DIR_ENV;

/// Where the object `name` (`<name>.bpf.o`) is.
pub fn path(name: &str) -> Result<PathBuf, Failure> {
    let dir = std::env::var_os(BPF_DIR_ENV).ok_or_else(|| {
        Failure::other(format!(
            "{BPF_DIR_ENV} is not set: the agent sets it for a subject that declares \
             `.bpf_objects(...)`, with the objects the harness compiled against this kernel"
        ))
    })?;
    let path = PathBuf::from(dir).join(format!("{name}.bpf.o"));
    if !path.is_file() {
        return Err(Failure::other(format!(
            "{} does not exist: is {name} among the subject's bpf_objects?",
            path.display()
        )));
    }
    Ok(path)
}

/// An object opened and not yet loaded, with its file's bytes (its BTF
/// says where each global and member is).
pub struct Opened {
    /// libbpf-rs's handle, for anything this module does not do.
    pub object: OpenObject,
    bytes: Vec<u8>,
    name: String,
}

impl Opened {
    /// Opens `<name>.bpf.o` from the harness's directory.
    pub fn open(name: &str) -> Result<Self, Failure> {
        let path = path(name)?;
        let bytes = std::fs::read(&path)
            .map_err(|err| Failure::other(format!("reading {}: {err}", path.display())))?;
        let capture = Capture::start();
        let object = ObjectBuilder::default()
            .name(name)
            .and_then(|builder| builder.open_memory(&bytes))
            .map_err(|err| Failure::from(capture.load_error(&err)).context("opening"))?;
        Ok(Opened {
            object,
            bytes,
            name: name.to_owned(),
        })
    }

    /// Sets the global `var` (in `.rodata`, `.data`, `.bss` or an arena;
    /// `name.member` for a member of a global struct) to `value`, which
    /// must be its size.
    pub fn set_global(&mut self, var: &str, value: &[u8]) -> Result<(), Failure> {
        let (section, offset, size) = self.locate_var(var)?;
        check_size(var, size, value)?;
        write_section(&mut self.object, &section, offset, value)
    }

    /// Resizes the array `var` to `len` elements before load, as scx's
    /// `RESIZE_ARRAY` does: `var` is declared alone in a section of its own
    /// (`RESIZABLE_ARRAY(data, cpu_gimme_task)` puts it in
    /// `.data.cpu_gimme_task`), whose map grows to `len` of its elements
    /// (libbpf adjusts the section's BTF to match). After load,
    /// [`Loaded::global`] reads the whole array.
    pub fn resize_array(&mut self, var: &str, len: usize) -> Result<(), Failure> {
        let btf = self.btf()?;
        let (section, _, _, ty) = locate_var(&btf, var)
            .ok_or_else(|| Failure::other(format!("{} has no global {var}", self.name)))?;
        let element = element_size(&btf, ty);
        drop(btf);
        if !is_own_section(&section, var) {
            return Err(Failure::other(format!(
                "{var} is in {section}, not in a section of its own: only an array declared \
                 with RESIZABLE_ARRAY(data, {var}) (section .data.{var}) can be resized"
            )));
        }
        let element = element
            .ok_or_else(|| Failure::other(format!("{var} is not an array of sized elements")))?;
        let mut map = section_map(&mut self.object, &section)?;
        let size = (element.checked_mul(len))
            .and_then(|size| u32::try_from(size).ok())
            .filter(|size| *size > 0)
            .ok_or_else(|| Failure::other(format!("{var} cannot hold {len} elements")))?;
        map.set_value_size(size)
            .map_err(|err| Failure::other(format!("resizing {section} to {size} bytes: {err}")))
    }

    /// Whether the object has the global `var` (`name.member` for a
    /// member): a loader serving several kernels' versions of one
    /// scheduler asks where a counter is.
    pub fn has_global(&self, var: &str) -> bool {
        self.btf().is_ok_and(|btf| locate(&btf, var).is_some())
    }

    /// The names of the `.rodata` globals that start with `prefix`.
    pub(crate) fn rodata_names(&self, prefix: &str) -> Result<Vec<String>, Failure> {
        let btf = self.btf()?;
        let Some(datasec) = btf.type_by_name::<DataSec<'_>>(".rodata") else {
            return Ok(Vec::new());
        };
        let names = datasec.iter().filter_map(|info| {
            let name = btf.type_by_id::<Var<'_>>(info.ty)?.name()?.to_str()?;
            name.starts_with(prefix).then(|| name.to_owned())
        });
        Ok(names.collect())
    }

    /// The member `member` of the struct_ops map `map` (a `struct
    /// sched_ext_ops`, say), as the object sets it.
    pub fn member(&self, map: &str, member: &str) -> Result<Vec<u8>, Failure> {
        let (offset, size) = self.locate_member(map, member)?;
        let found = (self.object.maps()).find(|candidate| candidate.name() == map);
        let value = found.and_then(|map| map.initial_value().map(<[u8]>::to_vec));
        let value = value.ok_or_else(|| Failure::other(format!("no struct_ops map {map}")))?;
        Ok(value[offset..offset + size].to_vec())
    }

    /// Sets the member `member` of the struct_ops map `map` to `value`.
    pub fn set_member(&mut self, map: &str, member: &str, value: &[u8]) -> Result<(), Failure> {
        let (offset, size) = self.locate_member(map, member)?;
        check_size(member, size, value)?;
        let mut found = self
            .object
            .maps_mut()
            .find(|candidate| candidate.name() == map);
        let data = found
            .as_mut()
            .and_then(|map| map.initial_value_mut())
            .ok_or_else(|| Failure::other(format!("no struct_ops map {map}")))?;
        data[offset..offset + size].copy_from_slice(value);
        Ok(())
    }

    /// Loads it; libbpf's words and the verifier's reason are in the failure.
    pub fn load(self) -> Result<Loaded, Failure> {
        self.try_load().map_err(Failure::from)
    }

    /// Loads it, keeping libbpf's account of a failure as it is, for a
    /// caller that knows more of what a refusal means (sched_ext's).
    pub fn try_load(self) -> Result<Loaded, LoadFailure> {
        let capture = Capture::start();
        let object = self.object.load().map_err(|err| capture.load_error(&err))?;
        Ok(Loaded {
            object,
            bytes: self.bytes,
            name: self.name,
        })
    }

    /// Each function member of the struct_ops map `map` the object sets,
    /// with the program it is set to: `(member, program)`, as
    /// `("enqueue", "simple_enqueue")`. libbpf knows the pairs from the
    /// object's relocations and keeps them, until load, as pointers to its
    /// programs in the map's initial value (its "shadow" struct); the
    /// verifier's log names only the program.
    pub fn struct_ops_programs(&self, map: &str) -> Result<Vec<(String, String)>, Failure> {
        let btf = self.btf()?;
        let (composite, value) = self.struct_ops_value(&btf, map)?;
        let programs: Vec<(usize, String)> = (self.object.progs())
            .map(|program| {
                let raw = libbpf_rs::AsRawLibbpf::as_libbpf_object(&program);
                (
                    raw.as_ptr() as usize,
                    program.name().to_string_lossy().into_owned(),
                )
            })
            .collect();
        let mut pairs = Vec::new();
        for member in composite.iter() {
            let libbpf_rs::btf::types::MemberAttr::Normal { offset } = member.attr else {
                continue;
            };
            let is_pointer = (btf.type_by_id::<BtfType<'_>>(member.ty))
                .is_some_and(|ty| ty.skip_mods_and_typedefs().kind() == BtfKind::Ptr);
            let at = offset as usize / 8;
            let (Some(name), true, Some(bytes)) = (
                member.name,
                is_pointer,
                value.get(at..at + size_of::<usize>()),
            ) else {
                continue;
            };
            let pointer = usize::from_ne_bytes(bytes.try_into().unwrap_or([0; size_of::<usize>()]));
            if let Some((_, program)) = programs
                .iter()
                .find(|(raw, _)| pointer != 0 && *raw == pointer)
            {
                pairs.push((name.to_string_lossy().into_owned(), program.clone()));
            }
        }
        Ok(pairs)
    }

    fn btf(&self) -> Result<Btf<'_>, Failure> {
        let btf = Btf::from_raw(&self.name, &self.bytes)
            .map_err(|err| Failure::other(format!("reading {}'s BTF: {err}", self.name)))?;
        btf.ok_or_else(|| {
            Failure::other(format!("{} has no BTF (compiled without -g?)", self.name))
        })
    }

    fn locate_var(&self, var: &str) -> Result<(String, usize, usize), Failure> {
        locate(&self.btf()?, var)
            .ok_or_else(|| Failure::other(format!("{} has no global {var}", self.name)))
    }

    /// Where `member` is in the struct a struct_ops map holds.
    fn locate_member(&self, map: &str, member: &str) -> Result<(usize, usize), Failure> {
        let btf = self.btf()?;
        let (composite, _) = self.struct_ops_value(&btf, map)?;
        member_in(&btf, &composite, member)
            .map(|(offset, size, _)| (offset, size))
            .ok_or_else(|| Failure::other(format!("the struct of {map} has no member {member}")))
    }

    /// The struct a struct_ops map holds, from `btf`, and the map's initial value.
    fn struct_ops_value<'btf>(
        &self,
        btf: &'btf Btf<'_>,
        map: &str,
    ) -> Result<(Struct<'btf>, Vec<u8>), Failure> {
        let found = self.object.maps().find(|candidate| candidate.name() == map);
        let map_found =
            found.ok_or_else(|| Failure::other(format!("{} has no map {map}", self.name)))?;
        // SAFETY: the map pointer is valid while the open object is.
        let type_id = unsafe {
            libbpf_rs::libbpf_sys::bpf_map__btf_value_type_id(
                libbpf_rs::AsRawLibbpf::as_libbpf_object(&map_found).as_ptr(),
            )
        };
        let composite = btf
            .type_by_id::<Struct<'_>>(type_id.into())
            .ok_or_else(|| Failure::other(format!("{map}'s value is not a struct")))?;
        let value = map_found.initial_value().map(<[u8]>::to_vec);
        let value = value.ok_or_else(|| Failure::other(format!("{map} has no initial value")))?;
        Ok((composite, value))
    }
}

/// A loaded object, with its file's bytes (its BTF says where each global is).
pub struct Loaded {
    /// libbpf-rs's handle, for anything this module does not do.
    pub object: Object,
    bytes: Vec<u8>,
    name: String,
}

impl Loaded {
    /// The global `var`'s bytes now (`name.member` for a member of a
    /// global struct), read from its section's map.
    pub fn global(&self, var: &str) -> Result<Vec<u8>, Failure> {
        let btf = Btf::from_raw(&self.name, &self.bytes)
            .ok()
            .flatten()
            .ok_or_else(|| Failure::other(format!("{} has no BTF", self.name)))?;
        let (section, offset, size) = locate(&btf, var)
            .ok_or_else(|| Failure::other(format!("{} has no global {var}", self.name)))?;
        if section == ARENA_SECTION {
            return self.arena_bytes(offset, size);
        }
        let suffix = section_suffix(&section);
        let map = (self.object.maps()).find(|map| map.name().to_string_lossy().ends_with(suffix));
        let map = map.ok_or_else(|| Failure::other(format!("no map holds {section}")))?;
        let value = map
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|err| Failure::other(format!("reading {section}: {err}")))?
            .ok_or_else(|| Failure::other(format!("{section} is empty")))?;
        // An array alone in its section may have been resized: all of it.
        match is_own_section(&section, var) {
            true => Ok(value[offset..].to_vec()),
            false => Ok(value[offset..offset + size].to_vec()),
        }
    }

    /// `size` bytes at `offset` of the arena's globals, read from libbpf's
    /// mapping of the arena. libbpf puts the globals at the arena's end
    /// when the kernel takes any direct offset into it, else at its start,
    /// and does not say which (its skeletons know; an object opened
    /// without one does not).
    fn arena_bytes(&self, offset: usize, size: usize) -> Result<Vec<u8>, Failure> {
        let map = (self.object.maps()).find(|map| map.map_type() == MapType::Arena);
        let map = map.ok_or_else(|| Failure::other(format!("{} has no arena map", self.name)))?;
        let mut data_size: libbpf_rs::libbpf_sys::size_t = 0;
        // SAFETY: the map pointer is valid while the object is; for a
        // loaded arena libbpf returns its mapping and its globals' size.
        let start = unsafe {
            libbpf_rs::libbpf_sys::bpf_map__initial_value(
                libbpf_rs::AsRawLibbpf::as_libbpf_object(&map).as_ptr(),
                &mut data_size,
            )
        }
        .cast::<u8>();
        let data_size = data_size as usize;
        if start.is_null() || offset + size > data_size {
            return Err(Failure::other(
                "the arena is not mapped (is the object loaded?)",
            ));
        }
        let page = page_size();
        let mapped = page * map.max_entries() as usize;
        let at = match arena_globals_at_end() {
            true => mapped - data_size.div_ceil(page) * page,
            false => 0,
        };
        // SAFETY: libbpf mapped `mapped` bytes at `start` for as long as the
        // map lives, and `at + offset + size` is within them.
        Ok(unsafe { read_shared(start.add(at + offset), size) })
    }

    /// The sum over every CPU of entry `index` of the per-CPU array `map`
    /// of u64 counters (scx_simple's `stats`, say).
    pub fn percpu_sum(&self, map: &str, index: u32) -> Result<u64, Failure> {
        let found = self.object.maps().find(|candidate| candidate.name() == map);
        let found =
            found.ok_or_else(|| Failure::other(format!("{} has no map {map}", self.name)))?;
        let values = found
            .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
            .map_err(|err| Failure::other(format!("reading {map}[{index}]: {err}")))?
            .unwrap_or_default();
        let sum = values.iter().map(|value| {
            let bytes: [u8; 8] = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8]);
            u64::from_ne_bytes(bytes)
        });
        Ok(sum.sum())
    }
}

/// libbpf names an internal map after its section's last part (`.rodata`,
/// `.uei_dump` of `.data.uei_dump`), behind a prefix of the object's name.
fn section_suffix(section: &str) -> &str {
    match section[1..].find('.') {
        Some(at) => &section[at + 1..],
        None => section,
    }
}

/// Writes `value` at `offset` of `section`'s initial data.
fn write_section(
    object: &mut OpenObject,
    section: &str,
    offset: usize,
    value: &[u8],
) -> Result<(), Failure> {
    let mut found = section_map(object, section)?;
    let data = found
        .initial_value_mut()
        .ok_or_else(|| Failure::other(format!("{section} has no initial value")))?;
    data[offset..offset + value.len()].copy_from_slice(value);
    Ok(())
}

/// The map of `section` in an open object.
fn section_map<'obj>(
    object: &'obj mut OpenObject,
    section: &str,
) -> Result<libbpf_rs::OpenMapMut<'obj>, Failure> {
    let suffix = section_suffix(section).to_owned();
    (object.maps_mut())
        .find(|map| match section {
            // Before load, libbpf keeps an arena's globals as its initial value.
            ARENA_SECTION => map.map_type() == MapType::Arena,
            _ => map.name().to_string_lossy().ends_with(&suffix),
        })
        .ok_or_else(|| Failure::other(format!("no map holds {section}")))
}

fn check_size(what: &str, size: usize, value: &[u8]) -> Result<(), Failure> {
    if size != value.len() {
        return Err(Failure::other(format!(
            "{what} is {size} bytes; {} given",
            value.len()
        )));
    }
    Ok(())
}

/// The section clang puts `__arena` globals in (address space 1); libbpf
/// gives it to the object's arena map.
const ARENA_SECTION: &str = ".addr_space.1";

/// (section, offset, size) of `path`: a global (`nr_enqueued`) or a member
/// of a global struct (`qa.nr_enqueued`), from the datasecs' records.
fn locate(btf: &Btf<'_>, path: &str) -> Option<(String, usize, usize)> {
    let mut parts = path.split('.');
    let (section, mut offset, mut size, mut ty) = locate_var(btf, parts.next()?)?;
    for member in parts {
        let outer = btf.type_by_id::<BtfType<'_>>(ty)?.skip_mods_and_typedefs();
        let composite = Struct::try_from(outer).ok()?;
        let (at, member_size, member_ty) = member_in(btf, &composite, member)?;
        (offset, size, ty) = (offset + at, member_size, member_ty);
    }
    Some((section, offset, size))
}

/// (section, offset, size, type) of the global `var`: in one of the
/// object's usual sections, or alone in a section named after it
/// (`.data.cpu_gimme_task`, as scx's `RESIZABLE_ARRAY` declares one).
fn locate_var(btf: &Btf<'_>, var: &str) -> Option<(String, usize, usize, TypeId)> {
    // libbpf names a `.bss.*` section's map with a cut name, so only
    // `.data.*` and `.rodata.*` maps can be found by their section.
    let own = [".data.", ".rodata."].map(|kind| format!("{kind}{var}"));
    let usual = [".rodata", ".data", ".bss", ARENA_SECTION].map(str::to_owned);
    for section in usual.iter().chain(&own) {
        let Some(datasec) = btf.type_by_name::<DataSec<'_>>(section) else {
            continue;
        };
        for info in datasec.iter() {
            let Some(named) = btf.type_by_id::<Var<'_>>(info.ty) else {
                continue;
            };
            if named.name().is_some_and(|name| name == var) {
                let ty = named.referenced_type_id();
                return Some((section.clone(), info.offset as usize, info.size, ty));
            }
        }
    }
    None
}

/// (offset, size, type) of `member` in `composite`: an integer, or a
/// struct whose members a path goes on into.
fn member_in(
    btf: &Btf<'_>,
    composite: &Struct<'_>,
    member: &str,
) -> Option<(usize, usize, TypeId)> {
    use libbpf_rs::btf::types::{Int, MemberAttr};
    use libbpf_rs::btf::HasSize as _;
    let found = composite
        .iter()
        .find(|candidate| candidate.name.is_some_and(|name| name == member))?;
    let MemberAttr::Normal { offset } = found.attr else {
        return None;
    };
    let ty = btf
        .type_by_id::<BtfType<'_>>(found.ty)?
        .skip_mods_and_typedefs();
    let size = match Int::try_from(ty) {
        Ok(int) => int.size(),
        Err(ty) => Struct::try_from(ty).ok()?.size(),
    };
    Some((offset as usize / 8, size, found.ty))
}

/// The text of a NUL-terminated C string in `bytes` (all of it without a NUL).
pub(crate) fn c_string(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `size` bytes at `at`, which a BPF program may be writing meanwhile: a
/// counter of 1, 2, 4 or 8 aligned bytes in one atomic load (as the
/// program's `__sync_fetch_and_add` writes it, so it is never read torn),
/// anything else byte by byte.
///
/// # Safety
/// `size` bytes at `at` are mapped and stay so while this runs.
unsafe fn read_shared(at: *const u8, size: usize) -> Vec<u8> {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
    let aligned = (at as usize).is_multiple_of(size.max(1));
    let at = at.cast_mut();
    match (size, aligned) {
        (1, _) => AtomicU8::from_ptr(at).load(Relaxed).to_ne_bytes().to_vec(),
        (2, true) => AtomicU16::from_ptr(at.cast())
            .load(Relaxed)
            .to_ne_bytes()
            .to_vec(),
        (4, true) => AtomicU32::from_ptr(at.cast())
            .load(Relaxed)
            .to_ne_bytes()
            .to_vec(),
        (8, true) => AtomicU64::from_ptr(at.cast())
            .load(Relaxed)
            .to_ne_bytes()
            .to_vec(),
        _ => (0..size)
            .map(|i| std::ptr::read_volatile(at.add(i)))
            .collect(),
    }
}

/// Whether `section` is the one `var` has to itself (`.data.var`).
fn is_own_section(section: &str, var: &str) -> bool {
    section
        .rsplit_once('.')
        .is_some_and(|(kind, name)| name == var && !kind.is_empty())
}

/// The size of one element of the array type `ty`.
fn element_size(btf: &Btf<'_>, ty: TypeId) -> Option<usize> {
    use libbpf_rs::btf::types::{Array, Int, Ptr};
    use libbpf_rs::btf::HasSize as _;
    let array = btf.type_by_id::<BtfType<'_>>(ty)?.skip_mods_and_typedefs();
    let array = Array::try_from(array).ok()?;
    let element = btf
        .type_by_id::<BtfType<'_>>(array.ty())?
        .skip_mods_and_typedefs();
    let element = match Int::try_from(element) {
        Ok(int) => return Some(int.size()),
        Err(element) => element,
    };
    match Ptr::try_from(element) {
        Ok(_) => Some(size_of::<usize>()),
        Err(element) => Struct::try_from(element).ok().map(|found| found.size()),
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Whether the verifier takes a direct offset of 1 GiB into a map value,
/// which is when libbpf puts an arena's globals at its end: libbpf's own
/// probe (features.c, `probe_ldimm64_full_range_off`), asked once. The
/// program fails to load either way: a kernel that limits the offset says
/// "direct value offset of", one that does not finds it past the map's
/// one-int value and says "invalid access to map value pointer".
fn arena_globals_at_end() -> bool {
    static AT_END: OnceLock<bool> = OnceLock::new();
    *AT_END.get_or_init(|| {
        let log = probe_direct_offset();
        !log.contains("direct value offset of") && log.contains("invalid access to map value")
    })
}

/// The verifier's log for a socket filter loading a map value's address
/// at offset 1 GiB (`BPF_LD_MAP_VALUE`), then exiting.
fn probe_direct_offset() -> String {
    use libbpf_rs::libbpf_sys as sys;
    // SAFETY: plain bpf() calls on values this function owns; the map's
    // and any program's descriptors are closed before it returns.
    unsafe {
        let map = sys::bpf_map_create(
            sys::BPF_MAP_TYPE_ARRAY,
            c"arr".as_ptr(),
            4,
            1,
            1,
            std::ptr::null(),
        );
        if map < 0 {
            return String::new();
        }
        let insn = |code: u8, dst: u8, src: u8, imm: i32| sys::bpf_insn {
            code,
            _bitfield_align_1: [],
            _bitfield_1: sys::bpf_insn::new_bitfield_1(dst, src),
            off: 0,
            imm,
        };
        let ld_imm64 = (sys::BPF_LD | sys::BPF_DW | sys::BPF_IMM) as u8;
        let insns = [
            insn(ld_imm64, 1, sys::BPF_PSEUDO_MAP_VALUE as u8, map),
            insn(0, 0, 0, 1 << 30),
            insn((sys::BPF_JMP | sys::BPF_EXIT) as u8, 0, 0, 0),
        ];
        let mut log = vec![0u8; 1024];
        let mut opts = sys::bpf_prog_load_opts {
            sz: size_of::<sys::bpf_prog_load_opts>() as _,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr().cast(),
            ..Default::default()
        };
        let prog = sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_SOCKET_FILTER,
            c"global_reloc".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        );
        if prog >= 0 {
            libc::close(prog);
        }
        libc::close(map);
        c_string(&log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scheduler's globals in the shapes the helpers find: a struct's
    /// members, an array alone in its section, a load-time enum.
    const FIXTURE: &str = r#"
#define SEC(name) __attribute__((section(name), used))
struct counters { unsigned long long enqueued; unsigned int error_after; };
struct counters qa;
unsigned long long cpu_gimme_task[1] SEC(".data.cpu_gimme_task");
const volatile unsigned long long __SCX_SLICE_DFL;
char _license[] SEC("license") = "GPL";
SEC("syscall") int prog(void *ctx)
{
	return qa.enqueued + qa.error_after + cpu_gimme_task[0] + __SCX_SLICE_DFL;
}
"#;

    /// Compiles [`FIXTURE`] with the machine's clang into `dir` and points
    /// the loader there: opening an object needs no kernel.
    fn compile_fixture(dir: &std::path::Path) {
        let source = dir.join("fixture.bpf.c");
        std::fs::write(&source, FIXTURE).unwrap();
        let object = dir.join("fixture.bpf.o");
        let status = std::process::Command::new("clang")
            .args(["-target", "bpf", "-g", "-O2", "-c"])
            .arg(&source)
            .arg("-o")
            .arg(&object)
            .status()
            .expect("clang runs (Debian's clang package; `harness setup` installs it)");
        assert!(status.success(), "clang failed on the fixture");
        std::env::set_var(BPF_DIR_ENV, dir);
    }

    #[test]
    fn globals_are_found_as_members_and_arrays_resized_in_their_own_section() {
        let dir = tempfile::tempdir().unwrap();
        compile_fixture(dir.path());
        let mut opened = Opened::open("fixture").unwrap();
        assert!(opened.has_global("qa.enqueued") && opened.has_global("cpu_gimme_task"));
        assert!(!opened.has_global("qa.dequeued") && !opened.has_global("nothing"));
        assert_eq!(opened.rodata_names("__SCX_").unwrap(), ["__SCX_SLICE_DFL"]);

        opened
            .set_global("qa.error_after", &7u32.to_ne_bytes())
            .unwrap();
        let bss = (opened.object.maps()).find(|map| map.name().to_string_lossy().ends_with(".bss"));
        let initial = bss.unwrap().initial_value().unwrap().to_vec();
        assert_eq!(
            initial[8..12],
            7u32.to_ne_bytes(),
            "error_after is 8 bytes in"
        );
        let wrong = opened.set_global("qa.enqueued", &[1, 2]).unwrap_err();
        assert!(
            wrong.message.contains("8 bytes; 2 given"),
            "{}",
            wrong.message
        );

        opened.resize_array("cpu_gimme_task", 4).unwrap();
        let array = (opened.object.maps())
            .find(|map| map.name().to_string_lossy().ends_with(".cpu_gimme_task"))
            .unwrap();
        assert_eq!(array.value_size(), 32);
        let empty = opened
            .resize_array("cpu_gimme_task", 0)
            .unwrap_err()
            .message;
        assert!(empty.contains("cannot hold 0 elements"), "{empty}");
        let refused = opened.resize_array("qa", 2).unwrap_err().message;
        assert!(refused.contains("RESIZABLE_ARRAY(data, qa)"), "{refused}");
    }

    #[test]
    fn only_a_section_named_after_the_global_is_its_own() {
        assert!(is_own_section(".data.cpu_gimme_task", "cpu_gimme_task"));
        assert!(!is_own_section(".data", "data") && !is_own_section(".bss", "qa"));
    }

    #[test]
    fn an_internal_map_is_found_by_its_sections_last_part() {
        assert_eq!(section_suffix(".rodata"), ".rodata");
        assert_eq!(section_suffix(".data.uei_dump"), ".uei_dump");
        assert_eq!(section_suffix(".bss"), ".bss");
    }
}
