//! With the `loader` feature (the guest's build): compiles the BPF programs
//! with clang and generates their libbpf-rs skeletons into OUT_DIR. Without
//! it (the host runner's build) there is nothing to do.

fn main() {
    #[cfg(feature = "loader")]
    harness_build::Skeletons::new()
        .include("src/bpf")
        .programs(&["tcp_ca", "tcp_ca_rejected", "contract"])
        .build();
}
