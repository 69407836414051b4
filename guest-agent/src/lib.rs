//! The guest side of the harness: the agent (PID 1, or a plain command
//! under vng), kernel output capture, module and loader handling, splat
//! checks, and the [`Context`](runtime::context::Context) a subject's
//! scenarios are written against.
#![deny(missing_docs)]

pub mod agent;
pub mod runtime;
pub mod scenario;
pub(crate) mod splat;
