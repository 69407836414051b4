//! Bad input gets an error that names the cause and the fix, before any long
//! work where possible. No VM boots here; some tests run kbuild's config
//! steps or read Debian's kernel tarballs.

use std::path::{Path, PathBuf};

use harness::kernel::config::Fragment;
use harness::kernel::{self, Flavour, KernelRecipe, KernelSource, Make};
use harness::process::combined_output;
use harness::progress::Progress;
use harness::{artifacts, host_deps, kmod, paths};

fn images_dir() -> PathBuf {
    paths::workspace_root().join("images")
}

#[test]
fn a_fragment_with_a_syntax_error_stops_before_any_build() {
    let images = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(images_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, images.path().join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        images.path().join("zz-typo.config"),
        "CONFIG_BPF=y\nCONFIG BPF_JIT=y\n",
    )
    .unwrap();
    let err = KernelRecipe::new(
        KernelSource::Tree("/nonexistent".into()),
        Flavour::Default,
        images.path(),
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "images/zz-typo.config:2: not a kernel config line: `CONFIG BPF_JIT=y` \
         (expected CONFIG_NAME=value or `# CONFIG_NAME is not set`)"
    );
}

#[test]
fn options_that_olddefconfig_drops_are_named_with_their_fragment() {
    let artifacts = artifacts::prepared().unwrap_or_else(|err| panic!("{err:#}"));
    let scratch = tempfile::tempdir().unwrap();
    let all = kernel::config::read_fragments(&images_dir()).unwrap();
    let series = kernel::Series::parse(&artifacts.kernel.version).unwrap();
    let mut fragments = kernel::config::select_fragments(&all, Flavour::Default, series).unwrap();
    // Without the BPF syscall there is no BTF, no BPF_EVENTS: the build must not go on.
    let extra = scratch.path().join("zz-no-bpf.config");
    std::fs::write(
        &extra,
        "# CONFIG_BPF_SYSCALL is not set\nCONFIG_NOT_A_REAL_OPTION=y\n",
    )
    .unwrap();
    fragments.push(Fragment {
        path: extra.clone(),
        text: std::fs::read_to_string(&extra).unwrap(),
    });
    let build_dir = scratch.path().join("build");
    std::fs::create_dir_all(&build_dir).unwrap();
    let log = scratch.path().join("build.log");
    let make = Make::new(&artifacts.kernel.source_dir, &build_dir, &log);
    let err = kernel::configure(&make, &fragments, &Progress::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the kernel config lost options the fragments ask for"),
        "{err}"
    );
    assert!(
        err.contains("CONFIG_DEBUG_INFO_BTF=y (images/bpf.config:"),
        "{err}"
    );
    assert!(
        err.contains("CONFIG_BPF_EVENTS=y (images/bpf.config:"),
        "{err}"
    );
    assert!(
        err.contains("CONFIG_NOT_A_REAL_OPTION=y (images/zz-no-bpf.config:2)"),
        "{err}"
    );
}

#[test]
fn debian_6_1_is_refused_as_too_old_for_struct_ops_in_modules() {
    host_deps::ensure_installed().unwrap_or_else(|err| panic!("{err:#}"));
    let tarball = Path::new("/usr/src/linux-source-6.1.tar.xz");
    assert!(
        tarball.is_file(),
        "install-deps.sh installs linux-source-6.1"
    );
    let tree = tempfile::tempdir().unwrap();
    // The version check needs only these two files; extracting the rest takes long.
    let (status, text) = combined_output(duct::cmd!(
        "tar",
        "-xf",
        tarball,
        "-C",
        tree.path(),
        "linux-source-6.1/Makefile",
        "linux-source-6.1/include/linux/bpf.h"
    ))
    .unwrap();
    assert!(status.success(), "{text}");
    let source = KernelSource::Tree(tree.path().join("linux-source-6.1"));
    let err = source
        .prepare(tree.path(), &Progress::new())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("kernel 6.1."), "{err}");
    assert!(
        err.contains("is too old for struct_ops in modules: it needs 6.11 or newer"),
        "{err}"
    );
}

#[test]
fn a_module_stripped_of_its_btf_is_refused_with_the_reason() {
    let artifacts = artifacts::prepared().unwrap_or_else(|err| panic!("{err:#}"));
    let scratch = tempfile::tempdir().unwrap();
    let stripped = scratch.path().join("bpf_testmod.ko");
    let (status, text) = combined_output(duct::cmd!(
        "objcopy",
        "--remove-section",
        ".BTF",
        &artifacts.modules["bpf_testmod"],
        &stripped
    ))
    .unwrap();
    assert!(status.success(), "{text}");
    kmod::check_btf(&artifacts.modules["bpf_testmod"]).expect("the real module has .BTF");
    let err = kmod::check_btf(&stripped).unwrap_err().to_string();
    assert!(err.contains("has no .BTF section"), "{err}");
    assert!(
        err.contains("failed to find BTF info for struct_ops/"),
        "{err}"
    );
}
