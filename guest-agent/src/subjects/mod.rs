//! The struct_ops users the harness tests, one module each: the first is
//! the tutorial's `bpf_testmod_ops` (a module defines the type), the second
//! the kernel's own `tcp_congestion_ops` (a BPF program implements it).

pub mod tcp_ca;
pub mod testmod;

use crate::scenario::Subject;

/// Every subject, in the order `run --list` shows them.
pub const SUBJECTS: &[&Subject] = &[&testmod::SUBJECT, &tcp_ca::SUBJECT];
