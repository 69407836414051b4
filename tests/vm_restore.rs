//! A VM restored from its kernel's saved template: each clone gets its own
//! randomness and the host's time, starts from the template whatever the
//! VM before it left, and a template that will not load is replaced while
//! the VM boots instead. These boot VMs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod common;

use harness_host::suite::run_scenario;
use harness_host::vm::VmOptions;

/// `harness exec ARGS`: its exit code, stdout and stderr.
fn exec(args: &[&str]) -> (i32, String, String) {
    let mut words = vec!["exec"];
    words.extend_from_slice(args);
    common::harness(&words)
}

fn seconds_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Sixteen random bytes and the guest's clock, read in a restored VM; and
/// the host's clock just before the VM started.
fn random_and_time() -> (String, f64, f64) {
    let script = "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s.%N; \
                  grep ' / ' /proc/mounts";
    let host = seconds_now();
    let (code, stdout, stderr) = exec(&["--", "sh", "-c", script]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() == 3 && lines[0].len() == 32, "{stdout}{stderr}");
    assert!(
        lines[2].contains(" / 9p ") && !stderr.contains("not restoring"),
        "the VM was not restored: {stdout}{stderr}"
    );
    (lines[0].to_owned(), lines[1].parse().unwrap(), host)
}

#[test]
fn two_restored_vms_read_different_random_numbers_and_the_hosts_time() {
    let (first, _, _) = random_and_time();
    // The template is older than this VM by at least the first one's run:
    // a clock left as the template had it would be behind by that much.
    let (second, guest, host) = random_and_time();
    assert_ne!(
        first, second,
        "two clones of one template read the same bytes"
    );
    let after = seconds_now();
    assert!(
        guest >= host - 1.0 && guest <= after + 1.0,
        "the guest's clock ({guest}) is not within a second of the host's ({host}..{after})"
    );
}

#[test]
fn a_restored_vm_starts_clean_whatever_the_vm_before_left() {
    // The first leaves its modules loaded and a sysctl changed...
    let dirty = "echo 3 > /proc/sys/kernel/printk_ratelimit_burst; \
                 cat /proc/sys/kernel/printk_ratelimit_burst; cut -d' ' -f1 /proc/modules";
    let (code, stdout, stderr) = exec(&["--module", "--", "sh", "-c", dirty]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("3\n") && stdout.contains("bpf_testmod"),
        "the first VM did not change what the second must not see: {stdout}{stderr}"
    );
    // ...and the next, from the same template, has neither.
    let look = "cat /proc/sys/kernel/printk_ratelimit_burst; cut -d' ' -f1 /proc/modules";
    let (code, stdout, stderr) = exec(&["--", "sh", "-c", look]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "10\n", "{stderr}");
    // --boot-each boots it (over virtiofs), as before templates.
    let (code, stdout, stderr) = exec(&["--boot-each", "--", "grep", " / ", "/proc/mounts"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(" / virtiofs "), "{stdout}{stderr}");
}

#[test]
fn a_restored_agent_has_a_booted_ones_environment_and_descriptors() {
    // stage0 tells the agent the guest is set up on a pipe the agent
    // closes, not in its environment, which /proc/1/environ would show.
    // The root's line goes to stderr: it says which way the VM started.
    let look = "tr '\\0' '\\n' < /proc/1/environ; \
                ls -l /proc/1/fd | sed 's/.* \\([0-9]* ->\\)/\\1/'; grep ' / ' /proc/mounts >&2";
    let (code, restored, stderr) = exec(&["--", "sh", "-c", look]);
    assert_eq!(code, 0, "{restored}{stderr}");
    assert!(stderr.contains(" / 9p "), "not restored: {stderr}");
    let (code, booted, stderr) = exec(&["--boot-each", "--", "sh", "-c", look]);
    assert_eq!(code, 0, "{booted}{stderr}");
    assert!(stderr.contains(" / virtiofs "), "not booted: {stderr}");
    assert!(
        booted.contains("HOME=/") && booted.contains("0 -> /dev/console"),
        "{booted}"
    );
    assert_eq!(restored, booted, "PID 1 restored, then booted");
}

/// The saved templates of the default kernel whose memory is `mib` MiB,
/// the one used last (its state's time) last: one of an earlier key (an
/// older QEMU, stage0 or host CPU) may still be there.
fn templates_of(mib: u64) -> Vec<PathBuf> {
    let artifacts = common::artifacts();
    let dir = artifacts
        .cache
        .join("kernels")
        .join(&artifacts.kernel.key)
        .join("templates");
    let size = |dir: &Path| std::fs::metadata(dir.join("memory")).map(|meta| meta.len());
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|dir| size(dir).ok() == Some(mib << 20) && dir.join("state").is_file())
                .collect::<Vec<_>>()
        })
        .map(|mut dirs| {
            let used = |dir: &PathBuf| {
                std::fs::metadata(dir.join("state"))
                    .and_then(|m| m.modified())
                    .ok()
            };
            dirs.sort_by_key(used);
            dirs
        })
        .unwrap_or_default()
}

#[test]
fn a_template_that_will_not_load_is_replaced_and_the_vm_boots() {
    // A size no other test uses: this template is this test's alone.
    let mib = 528;
    let mut options = VmOptions::default().label(format!("badtemplate-{}", std::process::id()));
    options.memory_mib = mib as u32;
    let run = |what: &str| {
        let run = run_scenario(common::artifacts(), "no_module", &options)
            .unwrap_or_else(|err| panic!("{what}: {err:#}"));
        assert!(run.result.passed, "{what}: {:?}", run.result.failures);
        run.root
    };
    assert_eq!(run("the first VM"), "restored");
    let used = templates_of(mib).pop().expect("the first VM's template");
    std::fs::write(used.join("state"), "not a QEMU state\n").unwrap();
    assert_ne!(run("a VM from the broken template"), "restored");
    assert!(
        !used.exists(),
        "the broken template is still there: {}",
        used.display()
    );
    assert_eq!(run("the VM after"), "restored");
    let saved = templates_of(mib).pop().expect("a new template");
    assert_eq!(saved, used, "saved again under the same key");
}
