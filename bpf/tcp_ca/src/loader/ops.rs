//! Load, attach and detach vmtest_reno, the BPF implementation of the
//! kernel's own `struct tcp_congestion_ops` (`bpf/tcp_ca.bpf.c`), and read
//! how often its callbacks ran.
//!
//! Attaching registers the algorithm with TCP (`tcp_register_congestion_control`),
//! so no module is involved; dropping the [`Registration`] destroys the link,
//! which unregisters it. Sockets that selected it keep it until they close:
//! each holds a reference on the struct_ops map.
//!
//! Load with `TcpCa::open_and_load`, register with `attach`, select it on
//! a socket with setsockopt(TCP_CONGESTION, "vmtest_reno"), read `calls`,
//! drop the registration to unregister.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use harness::loader::{errno_of, Capture, Failure, LoadFailure};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, OpenObject};

use super::skel::tcp_ca::{types, OpenTcpCaSkel, TcpCaSkel, TcpCaSkelBuilder};
use super::skel::tcp_ca_rejected::TcpCaRejectedSkelBuilder;
use crate::contract::{exit, Calls, ALGORITHM};

/// Why the BPF object could not be opened or loaded into the kernel.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this kernel has no BPF struct_ops type tcp_congestion_ops: it needs CONFIG_INET, \
         CONFIG_BPF_SYSCALL, CONFIG_BPF_JIT and CONFIG_DEBUG_INFO_BTF\n{log}"
    )]
    Unsupported { log: String },
    #[error(
        "the BPF object names its algorithm {found:?}, but the loader's contract says \
         {ALGORITHM:?}: change one to match the other"
    )]
    NameMismatch { found: String },
    #[error(transparent)]
    Failed(#[from] LoadFailure),
}

/// Why attaching, which registers the algorithm, failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(
        "a congestion control named {ALGORITHM} is already registered (EEXIST): \
         TCP allows one algorithm per name"
    )]
    AlreadyRegistered,
    #[error("attaching the tcp_congestion_ops struct_ops map failed: {0}")]
    Other(String),
}

/// vmtest_reno, loaded and not necessarily attached.
pub struct TcpCa<'obj> {
    skel: TcpCaSkel<'obj>,
    /// The program's .bss, which libbpf maps into this process: the kernel
    /// writes the counters while this process reads them, so every read is
    /// a volatile copy through this pointer rather than a Rust reference.
    bss: NonNull<types::bss>,
}

/// The registered algorithm; dropping it destroys the link, which makes the
/// kernel unregister it (`tcp_unregister_congestion_control`).
#[must_use = "dropping the registration unregisters the algorithm"]
pub struct Registration {
    _link: Link,
}

impl<'obj> TcpCa<'obj> {
    /// Opens `tcp_ca.bpf.c`'s object, checks the algorithm's name against
    /// the contract, and loads it: the verifier checks every callback now.
    pub fn open_and_load(storage: &'obj mut MaybeUninit<OpenObject>) -> Result<Self, LoadError> {
        let capture = Capture::start();
        let open = TcpCaSkelBuilder::default()
            .open(storage)
            .map_err(|err| classify(capture.load_error(&err)))?;
        check_name(&open)?;
        let mut skel = open
            .load()
            .map_err(|err| classify(capture.load_error(&err)))?;
        let bss = skel
            .maps
            .bss_data
            .take()
            .map(NonNull::from)
            .ok_or_else(|| LoadFailure::Other {
                message: "libbpf did not map the program's .bss, where the counters are".into(),
                log: String::new(),
            })?;
        Ok(TcpCa { skel, bss })
    }

    /// Reports its programs' verifier cost and runs to the agent.
    pub fn report(&self) {
        use libbpf_rs::skel::Skel;
        harness::loader::report_programs(self.skel.object());
    }

    /// Attaches the struct_ops map, which registers the algorithm.
    pub fn attach(&mut self) -> Result<Registration, AttachError> {
        match self.skel.maps.vmtest_reno.attach_struct_ops() {
            Ok(link) => Ok(Registration { _link: link }),
            Err(err) if errno_of(&err) == Some(libc::EEXIST) => Err(AttachError::AlreadyRegistered),
            Err(err) => Err(AttachError::Other(format!("{err:#}"))),
        }
    }

    /// How many times each callback ran since the object was loaded, over
    /// every socket that used the algorithm.
    pub fn calls(&self) -> Calls {
        let counted = self.read_bss().calls;
        Calls {
            init: counted.init,
            release: counted.release,
            ssthresh: counted.ssthresh,
            cong_avoid: counted.cong_avoid,
            undo_cwnd: counted.undo_cwnd,
            set_state: counted.set_state,
            cwnd_event: counted.cwnd_event,
            in_ack_event: counted.in_ack_event,
            pkts_acked: counted.pkts_acked,
        }
    }

    /// The local port of the socket whose init callback ran last (0 before any).
    pub fn init_port(&self) -> u16 {
        // The program stores a __u16 (skc_num) in a __u32.
        u16::try_from(self.read_bss().init_port).unwrap_or(u16::MAX)
    }

    fn read_bss(&self) -> types::bss {
        // SAFETY: `bss` points at the skeleton's mapping of the .bss map,
        // which lives as long as `self.skel`; the volatile read copies it
        // without assuming that nothing else writes it.
        unsafe { std::ptr::read_volatile(self.bss.as_ptr()) }
    }
}

/// Opens and loads `tcp_ca_rejected.bpf.c`, whose init writes a tcp_sock
/// field congestion controls may not write. Returns `Ok(())` only if the
/// kernel wrongly accepts it.
pub fn load_rejected() -> Result<(), LoadError> {
    let mut storage = MaybeUninit::uninit();
    let capture = Capture::start();
    let open = TcpCaRejectedSkelBuilder::default()
        .open(&mut storage)
        .map_err(|err| classify(capture.load_error(&err)))?;
    open.load()
        .map_err(|err| classify(capture.load_error(&err)))?;
    Ok(())
}

/// The algorithm's name as the object's .struct_ops data carries it.
fn check_name(open: &OpenTcpCaSkel<'_>) -> Result<(), LoadError> {
    let raw = open.struct_ops.vmtest_reno().name.map(|c| c as u8);
    let found = CStr::from_bytes_until_nul(&raw)
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&raw).into_owned());
    if found == ALGORITHM {
        Ok(())
    } else {
        Err(LoadError::NameMismatch { found })
    }
}

/// A missing kernel type means the kernel lacks BPF TCP congestion control.
fn classify(failure: LoadFailure) -> LoadError {
    match failure {
        LoadFailure::Other { log, .. } if lacks_tcp_ca_type(&log) => LoadError::Unsupported { log },
        failure => failure.into(),
    }
}

/// libbpf's words when the running kernel's BTF has no such struct_ops type.
fn lacks_tcp_ca_type(libbpf_output: &str) -> bool {
    libbpf_output.lines().any(|line| {
        line.contains("struct tcp_congestion_ops") && line.contains("not found in kernel BTF")
    })
}

impl From<LoadError> for Failure {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Unsupported { .. } => Failure::new(
                exit::UNSUPPORTED,
                format!("Failed to load BPF skeleton: {err}"),
            ),
            LoadError::NameMismatch { .. } => {
                Failure::other(format!("Failed to load BPF skeleton: {err}"))
            }
            LoadError::Failed(failure) => failure.into(),
        }
    }
}

impl From<AttachError> for Failure {
    fn from(err: AttachError) -> Self {
        let code = match err {
            AttachError::AlreadyRegistered => exit::ALREADY_REGISTERED,
            AttachError::Other(_) => exit::FAILURE,
        };
        Failure::new(code, format!("Failed to register {ALGORITHM}: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_the_type_is_unsupported() {
        let log =
            "libbpf: struct_ops init_kern: struct tcp_congestion_ops is not found in kernel BTF\n\
                   libbpf: failed to load object 'tcp_ca_bpf'\n";
        assert!(lacks_tcp_ca_type(log));
        let err = classify(LoadFailure::Other {
            message: "No such file or directory (os error 2)".into(),
            log: log.into(),
        });
        assert!(matches!(err, LoadError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn another_missing_type_is_not_this_one() {
        assert!(!lacks_tcp_ca_type(
            "libbpf: struct_ops init_kern: struct bpf_testmod_ops is not found in kernel BTF"
        ));
    }

    #[test]
    fn a_rejection_keeps_the_program_and_the_reason() {
        let err = classify(LoadFailure::Rejected {
            program: "vmtest_clamp_init".into(),
            reason: "no write support to tcp_sock at off 1512".into(),
            log: String::new(),
        });
        assert_eq!(
            err.to_string(),
            "the verifier rejected vmtest_clamp_init: no write support to tcp_sock at off 1512"
        );
    }
}
