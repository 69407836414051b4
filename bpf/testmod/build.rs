//! With the `loader` feature (the guest's build): compiles the BPF programs
//! with clang and generates their libbpf-rs skeletons into OUT_DIR. Without
//! it (the host runner's build) there is nothing to do, so the host needs no
//! BPF toolchain. The contract object is opened from its .o, a case's maps
//! at a time; the ops struct is declared once, in the module's header.

fn main() {
    #[cfg(feature = "loader")]
    harness_build::Skeletons::new()
        .include("../../kmod/bpf_testmod")
        .programs(&["struct_ops", "rejected", "ctx_write", "contract"])
        .build();
}
