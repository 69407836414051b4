//! Exit codes every loader shares with the scenarios that run it. A subject
//! adds codes of its own above these; clap exits with 2 on a bad command
//! line, so no outcome of a loader's own uses 2.

/// Done.
pub const SUCCESS: u8 = 0;
/// Anything the other codes do not name; stderr says what.
pub const FAILURE: u8 = 1;
/// The struct_ops type is not in the kernel: its module is not loaded, or
/// the kernel lacks the support; stderr says how to fix it.
pub const UNAVAILABLE: u8 = 3;
/// The verifier refused a program; stderr has "the verifier rejected PROGRAM: REASON".
pub const REJECTED_BY_VERIFIER: u8 = 4;
/// Another implementation holds the one place there is (EEXIST).
pub const ALREADY_ATTACHED: u8 = 17;
