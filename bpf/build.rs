//! Compiles the BPF programs with clang and generates their libbpf-rs
//! skeletons into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &[
    "struct_ops",
    "rejected",
    "ctx_write",
    "tcp_ca",
    "tcp_ca_rejected",
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let kmod_dir = manifest_dir.join("../kmod/bpf_testmod");
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
        if let Err(err) = SkeletonBuilder::new()
            .source(&source)
            .clang_args([
                // The ops struct is declared once, in the module's header.
                "-I".into(),
                kmod_dir.clone().into_os_string(),
                // <linux/types.h> pulls <asm/types.h>, which Debian keeps in the multiarch dir.
                "-I".into(),
                "/usr/include/x86_64-linux-gnu".into(),
            ])
            .build_and_generate(&skeleton)
        {
            panic!(
                "building {}: {err:#}\n\
                 clang and the kernel's uapi headers are needed: run `bash harness/install-deps.sh`",
                source.display()
            );
        }
    }
}
