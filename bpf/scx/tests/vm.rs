//! This subject's one binary: one test per scenario under nextest (each
//! boots a VM and checks its snapshot in tests/snapshots/), and, built in
//! release with the `loader` feature, the guest's init and the loader.

harness::main!(scx::SUBJECT);
