//! The errors a new user meets say what to do, in their first line: a
//! scenario name that does not exist, a kernel series Debian does not have,
//! a loader that is not built, a module without BTF. (A fragment option the
//! kernel drops: `bad_input`; a snapshot that is new: `vm_new`.)

mod common;

use std::process::Command;

use harness_host::kmod;
use harness_host::process::combined_output;

/// The harness's stderr line that starts with `error:`, as a person runs it here.
fn error_line(args: &[&str]) -> String {
    let output = Command::new(common::harness_binary())
        .args(args)
        .current_dir(common::repo_root())
        .output()
        .unwrap();
    assert!(!output.status.success(), "harness {args:?} succeeded");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
        .to_owned()
}

#[test]
fn a_scenario_name_that_does_not_exist_is_named_with_the_ones_that_do() {
    let line = error_line(&["run", "--scenario", "no_such_scenario"]);
    assert!(
        line.starts_with(
            "error: no scenario named no_such_scenario; the scenarios are: attach, trigger,"
        ),
        "{line}"
    );
}

#[test]
fn a_kernel_series_debian_does_not_have_is_named_with_the_ones_it_has() {
    let line = error_line(&["build", "--kernel", "9.9"]);
    assert!(
        line.starts_with("error: no Debian package linux-source-9.9; Debian's registry has: "),
        "{line}"
    );
    assert!(line.contains("6.12"), "{line}");
}

#[test]
fn a_loader_that_is_not_built_says_which_build_has_it() {
    // The host runner's build of bpf_testmod's binary, as nextest built it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = common::repo_root().join("bpf/testmod/Cargo.toml");
    let build = duct::cmd!(
        cargo,
        "test",
        "--no-run",
        "--message-format=json",
        "--manifest-path",
        manifest,
        "--test",
        "vm"
    )
    .stdout_capture()
    .stderr_null()
    .read()
    .unwrap();
    let binary = build
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|message| Some(message.get("executable")?.as_str()?.to_owned()))
        .expect("cargo named the vm test executable");
    let (status, text) =
        combined_output(duct::cmd!(binary, "__loader", "bpf_testmod", "once")).unwrap();
    assert!(!status.success());
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "error: this build of bpf_testmod's binary has no loader: the harness builds the guest's \
         with the crate's `loader` feature (cargo test --release --features loader)"
    );
}

#[test]
fn a_module_without_btf_says_how_to_get_it() {
    let artifacts = common::artifacts();
    let scratch = tempfile::tempdir().unwrap();
    let stripped = scratch.path().join("bpf_testmod.ko");
    let module = &artifacts.modules["bpf_testmod"];
    let (status, text) = combined_output(duct::cmd!(
        "objcopy",
        "--remove-section",
        ".BTF",
        module,
        &stripped
    ))
    .unwrap();
    assert!(status.success(), "{text}");
    let err = kmod::check_btf(&stripped).unwrap_err().to_string();
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "{} has no .BTF section, so the kernel cannot find the module's struct_ops type in it \
             and libbpf will fail with \"failed to find BTF info for struct_ops/...\".",
            stripped.display()
        )
    );
    assert!(err.contains("CONFIG_DEBUG_INFO_BTF_MODULES=y"), "{err}");
}
