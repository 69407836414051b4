//! What runs in the guest: PID 1's steps, the mounts, the kernel's output,
//! modules and loaders, the taint flags, and a scenario's run and checks.

pub mod context;
pub mod debugger;
pub mod exec;
pub mod init;
pub mod kernel_output;
pub mod loader;
pub mod module;
pub mod mounts;
pub mod net;
pub mod ports;
pub mod run;
pub mod shell;
pub mod taint;
