//! Bad input gets an error that names the cause and the fix, before any long
//! work where possible. No VM boots here; some tests run kbuild's config
//! steps or read Debian's kernel tarballs.

mod common;

use std::path::Path;

use harness_host::kernel::config::Fragment;
use harness_host::kernel::{self, Flavour, KernelRecipe, KernelSource, Make};
use harness_host::process::combined_output;
use harness_host::{kmod, setup};

use common::artifacts;

#[test]
fn a_fragment_with_a_syntax_error_stops_before_any_build() {
    let scratch = tempfile::tempdir().unwrap();
    let typo = Fragment::new(
        scratch.path().join("images/zz-typo.config"),
        "CONFIG_BPF=y\nCONFIG BPF_JIT=y\n".to_owned(),
    );
    let err = KernelRecipe::new(
        KernelSource::Tree("/nonexistent".into()),
        Flavour::Default,
        &[typo],
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
    let artifacts = artifacts();
    let scratch = tempfile::tempdir().unwrap();
    let all = kernel::config::core_fragments();
    let series = kernel::Series::parse(&artifacts.kernel.version).unwrap();
    let mut fragments = kernel::config::select_fragments(&all, Flavour::Default, series).unwrap();
    // Without the BPF syscall there is no BTF, no BPF_EVENTS: the build must not go on.
    std::fs::create_dir(scratch.path().join("images")).unwrap();
    let extra = scratch.path().join("images/zz-no-bpf.config");
    std::fs::write(
        &extra,
        "# CONFIG_BPF_SYSCALL is not set\nCONFIG_NOT_A_REAL_OPTION=y\n",
    )
    .unwrap();
    fragments.push(Fragment::new(
        extra.clone(),
        std::fs::read_to_string(&extra).unwrap(),
    ));
    let build_dir = scratch.path().join("build");
    std::fs::create_dir_all(&build_dir).unwrap();
    let log = scratch.path().join("build.log");
    let make = Make::new(&artifacts.kernel.source_dir, &build_dir, &log);
    let err = kernel::configure(&make, &fragments, &harness::view::stderr_progress(false))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err.lines().next().unwrap(),
        "the kernel config lost options the fragments ask for (olddefconfig drops an option \
         whose dependencies are missing):",
        "{err}"
    );
    assert!(
        err.contains("CONFIG_DEBUG_INFO_BTF=y (harness/host/images/bpf.config:"),
        "{err}"
    );
    assert!(
        err.contains("CONFIG_BPF_EVENTS=y (harness/host/images/bpf.config:"),
        "{err}"
    );
    assert!(
        err.contains("CONFIG_NOT_A_REAL_OPTION=y (images/zz-no-bpf.config:2)"),
        "{err}"
    );
}

#[test]
fn debian_6_1_is_refused_as_too_old_for_struct_ops_in_modules() {
    // The library's settings, as a test binary reads them from its environment.
    harness::config::from_env().unwrap_or_else(|err| panic!("{err:#}"));
    setup::check().unwrap_or_else(|err| panic!("{err:#}"));
    let tarball = Path::new("/usr/src/linux-source-6.1.tar.xz");
    assert!(
        tarball.is_file(),
        "`harness setup` installs linux-source-6.1"
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
        .prepare(tree.path(), &harness::view::stderr_progress(false))
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
    let artifacts = artifacts();
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

#[test]
fn a_scheduler_on_a_kernel_older_than_sched_ext_is_refused_before_any_build() {
    let output = std::process::Command::new(common::harness_binary())
        .args(["run", "--kernel", "6.1", "--scenario", "scx_simple_attach"])
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains(
            "scx implements sched_ext_ops, which the kernel has from 6.12 on \
             (CONFIG_SCHED_CLASS_EXT); kernel 6.1 is older"
        ),
        "{text}"
    );
    // Refused before any kernel build or boot.
    assert!(!text.contains("make all"), "{text}");
    assert!(!text.contains("ready to boot"), "{text}");
}

#[test]
fn no_round_or_a_negative_retry_is_refused_before_anything_runs() {
    for args in [["--repeat", "0"], ["--retries", "-1"]] {
        let output = std::process::Command::new(common::harness_binary())
            .arg("run")
            .args(args)
            .current_dir(common::repo_root())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr).into_owned();
        // clap's usage error, before setup, discovery or a boot: not the
        // code a flaky run exits with.
        let code = output.status.code();
        assert_eq!(
            code,
            Some(i32::from(harness_host::repeat::exit::USAGE)),
            "{text}"
        );
        assert_ne!(code, Some(i32::from(harness_host::repeat::exit::FLAKY)));
        assert!(text.contains(&format!("'{}'", args[1])), "{text}");
        assert!(!text.contains("[harness]"), "{text}");
    }
}
