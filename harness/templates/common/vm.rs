//! This subject's one binary: under `cargo nextest run`, one test per
//! scenario (each boots a VM and checks tests/snapshots/<scenario>.snap);
//! built in release with the `loader` feature, the guest's init and the loader.

harness::main!(@CRATE_IDENT@::SUBJECT);
