//! The guest side of the harness. The library part (what a result looks
//! like, which scenarios exist, what counts as a kernel splat) is shared with
//! the host so that both sides agree on it.

pub mod catalogue;
pub mod cli;
pub mod loader_contract;
pub mod protocol;
pub mod render;
pub mod shell;
pub mod splat;
