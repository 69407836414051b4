//! The guest side of the harness: the agent's runtime (PID 1, kernel output
//! capture, module and loader handling, checks) and the subjects' scenarios.
//! The host links it too, so both sides agree on what a result looks like,
//! which scenarios exist and how the agent is called.

pub mod cli;
pub mod protocol;
pub mod render;
pub mod report_line;
pub mod runtime;
pub mod scenario;
pub mod shell;
pub mod splat;
pub mod subjects;
