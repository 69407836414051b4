//! What runs in the guest: PID 1's steps, the mounts, the kernel's output,
//! modules and loaders, the taint flags, a scenario's run and checks, the
//! workloads it runs and the network conditions (netem) it sets.
//! What a scenario uses is public; the agent's own machinery is not.

pub mod context;
mod debugger;
mod exec;
pub(crate) mod init;
mod kernel_output;
pub(crate) mod kmemleak;
pub mod loader;
pub mod module;
pub(crate) mod mounts;
pub(crate) mod net;
pub mod netem;
mod ports;
pub(crate) mod programs;
pub mod run;
pub mod sched_ext;
mod shell;
mod taint;
pub mod workers;
pub mod workload;
