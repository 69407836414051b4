//! Load, attach, trigger and detach the BPF implementation of
//! `struct bpf_testmod_ops`: open and load the skeleton, attach it (the
//! module's `.reg` runs), write the proc file (the ops run), drop the
//! attachment (the link goes, `.unreg` runs).

use std::mem::MaybeUninit;

use harness::loader::{errno_of, Capture, Failure, LoadFailure};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use super::paths::{self, module_btf_path, TRIGGER_PATH};
use super::skel;
pub use super::skel::struct_ops::StructOpsSkel;
use crate::contract::exit;

/// Why the BPF object could not be opened or loaded into the kernel.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "the kernel has no bpf_testmod_ops type: the bpf_testmod module is not loaded \
         ({btf} is missing).\nLoad it with: insmod {ko}"
    )]
    ModuleNotLoaded { btf: String, ko: String },
    #[error(transparent)]
    Failed(#[from] LoadFailure),
}

/// Why attaching the loaded struct_ops map failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "another bpf_testmod_ops implementation is already attached (EEXIST): \
         the module allows one at a time"
    )]
    AlreadyAttached,
    #[error("attaching the struct_ops map failed: {0}")]
    Other(String),
}

/// Why writing the trigger file failed.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "{TRIGGER_PATH} does not exist: the bpf_testmod module is not loaded.\n\
         Load it with: insmod {ko}"
    )]
    ModuleNotLoaded { ko: String },
    #[error("writing {TRIGGER_PATH}: {0}")]
    Io(#[from] std::io::Error),
}

/// The attached implementation; dropping it destroys the link, which makes
/// the kernel call the module's `.unreg`.
#[must_use = "dropping the attachment detaches the struct_ops"]
pub struct Attachment {
    _link: Link,
}

/// Opens and loads the real implementation (`struct_ops.bpf.c`).
pub fn open_and_load(
    storage: &mut MaybeUninit<OpenObject>,
) -> Result<StructOpsSkel<'_>, LoadError> {
    ensure_module_btf()?;
    let capture = Capture::start();
    let open = skel::struct_ops::StructOpsSkelBuilder::default()
        .open(storage)
        .map_err(|err| capture.load_error(&err))?;
    open.load().map_err(|err| capture.load_error(&err).into())
}

/// The implementations the verifier must refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `rejected.bpf.c`: calls a helper bpf_testmod_ops does not hand out.
    ForeignHelper,
    /// `ctx_write.bpf.c`: writes its own context (the kernel's arguments).
    CtxWrite,
}

/// Opens and loads an implementation the verifier must refuse. Returns
/// `Ok(())` only if the kernel wrongly accepts it.
pub fn load_refused(which: Refused) -> Result<(), LoadError> {
    ensure_module_btf()?;
    let mut storage = MaybeUninit::uninit();
    let capture = Capture::start();
    match which {
        Refused::ForeignHelper => {
            let open = skel::rejected::RejectedSkelBuilder::default()
                .open(&mut storage)
                .map_err(|err| capture.load_error(&err))?;
            open.load().map_err(|err| capture.load_error(&err))?;
        }
        Refused::CtxWrite => {
            let open = skel::ctx_write::CtxWriteSkelBuilder::default()
                .open(&mut storage)
                .map_err(|err| capture.load_error(&err))?;
            open.load().map_err(|err| capture.load_error(&err))?;
        }
    }
    Ok(())
}

/// Attaches the loaded implementation; the module's `.reg` runs now.
pub fn attach(skel: &mut StructOpsSkel<'_>) -> Result<Attachment, AttachError> {
    match skel.maps.testmod_ops.attach_struct_ops() {
        Ok(link) => Ok(Attachment { _link: link }),
        Err(err) if errno_of(&err) == Some(libc::EEXIST) => Err(AttachError::AlreadyAttached),
        Err(err) => Err(AttachError::Other(format!("{err:#}"))),
    }
}

/// Writes `message` to the module's proc file in one write(2), which calls
/// each op of whatever implementation is attached once (an empty message
/// too: test_maybe_null then gets NULL).
pub fn trigger(message: &str) -> Result<(), TriggerError> {
    use std::io::Write as _;
    let mut file = match std::fs::OpenOptions::new().write(true).open(TRIGGER_PATH) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(TriggerError::ModuleNotLoaded {
                ko: paths::module_ko_hint(),
            })
        }
        Err(err) => return Err(err.into()),
    };
    // One write, even of nothing: the module takes it whole, whatever its length.
    let written = file.write(message.as_bytes())?;
    if written != message.len() {
        return Err(TriggerError::Io(std::io::Error::other(format!(
            "the module took {written} of {} bytes",
            message.len()
        ))));
    }
    Ok(())
}

pub fn ensure_module_btf() -> Result<(), LoadError> {
    let btf = module_btf_path();
    if btf.exists() {
        return Ok(());
    }
    Err(LoadError::ModuleNotLoaded {
        btf: btf.display().to_string(),
        ko: paths::module_ko_hint(),
    })
}

impl From<LoadError> for Failure {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::ModuleNotLoaded { .. } => Failure::new(
                exit::MODULE_NOT_LOADED,
                format!("Failed to load BPF skeleton: {err}"),
            ),
            LoadError::Failed(failure) => failure.into(),
        }
    }
}

impl From<AttachError> for Failure {
    fn from(err: AttachError) -> Self {
        let code = match err {
            AttachError::AlreadyAttached => exit::ALREADY_ATTACHED,
            AttachError::Other(_) => exit::FAILURE,
        };
        Failure::new(code, format!("Failed to attach struct_ops: {err}"))
    }
}

impl From<TriggerError> for Failure {
    fn from(err: TriggerError) -> Self {
        let code = match err {
            TriggerError::ModuleNotLoaded { .. } => exit::MODULE_NOT_LOADED,
            TriggerError::Io(_) => exit::FAILURE,
        };
        Failure::new(code, format!("Failed to trigger struct_ops: {err}"))
    }
}
