//! With the `loader` feature (the guest's build): compiles the BPF programs
//! in src/bpf/ with clang and generates their libbpf-rs skeletons. Without
//! it (the host runner's build) there is nothing to do.

fn main() {
    #[cfg(feature = "loader")]
    harness_build::Skeletons::new()
        .include("@INCLUDE@")
        .programs(&[@PROGRAMS@])
        .build();
}
