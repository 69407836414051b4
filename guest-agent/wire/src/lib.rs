//! The contracts between the harness's host side, its guest agent and a
//! subject's loader: the agent's command line, the messages on the result
//! port, step outcomes, console markers, report lines, the roles of a
//! subject's one binary, the catalogue it declares, loader exit codes, a
//! workload's words and report, a TCP sender's figures, the text form of a
//! result, the kernel's splat classes, what the guest's PID 1 sets up
//! before it says ready, and the one
//! polling loop both sides wait with. Each is a type or a named constant
//! here, never a string built on one side and parsed on the other.
#![deny(missing_docs)]

pub mod case;
pub mod catalogue;
pub mod cli;
pub mod exit;
pub mod guest_setup;
pub mod kernel_type;
pub mod markers;
pub mod programs;
pub mod protocol;
pub mod render;
pub mod report;
pub mod roles;
pub mod shell;
pub mod splat;
pub mod tcp_info;
pub mod wait;
pub mod workload;
