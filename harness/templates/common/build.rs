//! With the `loader` feature (the guest's build): compiles the BPF programs
//! in src/bpf/ with clang and generates their libbpf-rs skeletons. Without
//! it (the host runner's build) there is nothing to do.

fn main() {
    #[cfg(feature = "loader")]
    skeletons::build();
}

#[cfg(feature = "loader")]
mod skeletons {
    use std::path::PathBuf;

    /// The programs (src/bpf/<name>.bpf.c), and where their headers are.
    const PROGRAMS: &[&str] = &[@PROGRAMS@];
    const INCLUDE: &str = "@INCLUDE@";

    pub fn build() {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
        println!("cargo:rerun-if-changed={}", dir.join("src/bpf").display());
        println!("cargo:rerun-if-changed={}", dir.join(INCLUDE).display());
        for name in PROGRAMS {
            let source = dir.join(format!("src/bpf/{name}.bpf.c"));
            let built = libbpf_cargo::SkeletonBuilder::new()
                .source(&source)
                .clang_args([
                    "-I".into(),
                    dir.join(INCLUDE).into_os_string(),
                    // <linux/types.h> pulls <asm/types.h>, in Debian's multiarch dir.
                    "-I".into(),
                    "/usr/include/x86_64-linux-gnu".into(),
                ])
                .build_and_generate(out.join(format!("{name}.skel.rs")));
            if let Err(err) = built {
                panic!("building {}: {err:#}\n(clang and the kernel's headers come with `harness setup`)", source.display());
            }
        }
    }
}
