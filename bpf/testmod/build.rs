//! With the `loader` feature (the guest's build): compiles the BPF programs
//! with clang and generates their libbpf-rs skeletons into OUT_DIR. Without
//! it (the host runner's build) there is nothing to do, so the host needs no
//! BPF toolchain.

fn main() {
    #[cfg(feature = "loader")]
    skeletons::build();
}

#[cfg(feature = "loader")]
mod skeletons {
    use std::env;
    use std::path::PathBuf;

    use libbpf_cargo::SkeletonBuilder;

    /// Each compiles to OUT_DIR/NAME.bpf.o and NAME.skel.rs; the contract
    /// object is opened from its .o, a case's maps at a time.
    const PROGRAMS: &[&str] = &["struct_ops", "rejected", "ctx_write", "contract"];

    pub fn build() {
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let manifest_dir = PathBuf::from(
            env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
        );
        // The ops struct is declared once, in the module's header.
        let kmod_dir = manifest_dir.join("../../kmod/bpf_testmod");
        println!(
            "cargo:rerun-if-changed={}",
            kmod_dir.join("bpf_testmod.h").display()
        );
        // The programs and the headers beside them: cargo rescans a directory.
        println!(
            "cargo:rerun-if-changed={}",
            manifest_dir.join("src/bpf").display()
        );
        for name in PROGRAMS {
            let source = manifest_dir.join(format!("src/bpf/{name}.bpf.c"));
            let skeleton = out_dir.join(format!("{name}.skel.rs"));
            let built = SkeletonBuilder::new()
                .source(&source)
                .obj(out_dir.join(format!("{name}.bpf.o")))
                .clang_args([
                    "-I".into(),
                    kmod_dir.clone().into_os_string(),
                    // <linux/types.h> pulls <asm/types.h>, which Debian keeps in the multiarch dir.
                    "-I".into(),
                    "/usr/include/x86_64-linux-gnu".into(),
                ])
                .build_and_generate(&skeleton);
            if let Err(err) = built {
                panic!(
                    "building {}: {err:#}\n\
                     A missing header is looked for in {} and the multiarch include dir; \
                     a missing clang or kernel header package is installed by `harness setup`",
                    source.display(),
                    kmod_dir.display()
                );
            }
        }
    }
}
