//! Stepping into the VM as a person does: `harness exec` runs a command and
//! exits with its code, `harness shell` is typed into under tmux and read
//! back from the screen, and `--gdb` is driven by gdb in batch mode. Each
//! test checks that nothing it started is left running. These boot VMs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use harness_host::process::processes_mentioning;
use harness_wire::wait::{wait_until, Poll};

/// The harness binary the nextest setup script built.
fn harness_binary() -> PathBuf {
    common::harness_binary()
}

/// `harness ARGS`: its exit code, stdout and stderr; and that it left no VM behind.
fn harness(args: &[&str]) -> (i32, String, String) {
    let child = Command::new(harness_binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert_no_vm_left(&format!("{}-{pid}", args[0]));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// No QEMU or virtiofsd of the VM labelled `label` is left running.
fn assert_no_vm_left(label: &str) {
    let run_dir = format!("{}{label}-", harness_host::run_dirs::RUN_DIR_PREFIX);
    let left = wait_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let left: Vec<_> = processes_mentioning(&run_dir)
                .into_iter()
                .filter(|(_, cmdline)| cmdline.contains("qemu") || cmdline.contains("virtiofsd"))
                .collect();
            match left.is_empty() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        },
    );
    assert!(
        left.is_some(),
        "left running: {:#?}",
        processes_mentioning(&run_dir)
    );
}

#[test]
fn exec_prints_the_kernel_release_and_exits_0() {
    let artifacts = common::artifacts();
    let (code, stdout, stderr) = harness(&["exec", "--", "uname", "-r"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), artifacts.kernel.version, "{stderr}");
}

#[test]
fn exec_exits_with_the_commands_code() {
    let (code, _, stderr) = harness(&["exec", "--", "false"]);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = harness(&["exec", "--", "sh", "-c", "exit 42"]);
    assert_eq!(code, 42, "{stderr}");
}

#[test]
fn exec_with_the_module_shows_its_struct_ops_type() {
    let args = [
        "exec",
        "--module",
        "--",
        "bpftool",
        "btf",
        "dump",
        "file",
        "/sys/kernel/btf/bpf_testmod",
    ];
    let (code, stdout, stderr) = harness(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("STRUCT 'bpf_testmod_ops' size=48 vlen=6"),
        "{stdout}"
    );
}

#[test]
fn a_missing_command_is_a_clear_error() {
    let (code, _, stderr) = harness(&["exec", "--", "no-such-command-anywhere"]);
    assert_eq!(code, 127, "{stderr}");
    assert!(
        stderr.contains("no-such-command-anywhere: no such command in the guest"),
        "{stderr}"
    );
}

#[test]
fn a_hung_command_ends_at_the_timeout_with_a_clear_error() {
    let start = Instant::now();
    let (code, _, stderr) = harness(&["exec", "--timeout", "10", "--", "sleep", "600"]);
    assert_eq!(code, harness_host::step_in::VM_FAILED, "{stderr}");
    assert!(stderr.contains("did not finish within 10s"), "{stderr}");
    // The 10 s, a boot, and finding this workspace's subjects (cargo
    // metadata, no-op builds): far from the 600 s the command would take.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

/// The first line comes through while the command still runs: the command
/// prints `second` only once the host, having read `first`, creates a file
/// it waits for (the guest sees the host's filesystem). Output held back
/// until the command ended would leave the file uncreated, and the command
/// says `not streamed` after 60 s instead.
#[test]
fn exec_streams_output_as_it_comes() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let flag = dir.path().join("first-was-read");
    let script = format!(
        "echo first; i=0; while [ ! -e {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
         if [ -e {flag} ]; then echo second; else echo not streamed; fi",
        flag = flag.display()
    );
    let mut child = Command::new(harness_binary())
        .args(["exec", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    std::fs::write(&flag, "").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    assert!(child.wait().unwrap().success());
}

/// What a terminal shows now.
fn screen(session: &str) -> String {
    let output = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", session])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn type_line(session: &str, keys: &[&str]) {
    let status = Command::new("tmux")
        .args(["send-keys", "-t", session])
        .args(keys)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the screen holds `text`.
fn wait_for_screen(session: &str, text: &str, within: Duration) {
    let seen = wait_until(
        Instant::now() + within,
        Duration::from_millis(200),
        || match screen(session).contains(text) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        },
    );
    assert!(
        seen.is_some(),
        "never saw {text:?}; the screen:\n{}",
        screen(session)
    );
}

/// Whether `line` is the guest shell's prompt (`[vm DIR]# `, the agent's
/// PS1; tmux drops the trailing space).
fn is_prompt(line: &str) -> bool {
    let line = line.trim_end();
    line.starts_with("[vm ") && line.ends_with("]#")
}

/// Whether the screen's last line (of those with anything on them) is a
/// prompt, with `after` on some line above it: the shell has finished what
/// printed `after` and waits for the next command.
fn prompt_after(screen: &str, after: &str) -> bool {
    let lines: Vec<&str> = screen
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let Some((last, above)) = lines.split_last() else {
        return false;
    };
    is_prompt(last) && above.iter().any(|line| line.contains(after))
}

/// Waits until the shell shows its prompt again below `after`.
fn wait_for_prompt_after(session: &str, after: &str, within: Duration) {
    let seen = wait_until(
        Instant::now() + within,
        Duration::from_millis(200),
        || match prompt_after(&screen(session), after) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        },
    );
    assert!(
        seen.is_some(),
        "never saw the prompt below {after:?}; the screen:\n{}",
        screen(session)
    );
}

/// A tmux session, killed however the test ends.
struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

/// The pid of the harness running in the session's pane (the pane's shell's child).
fn harness_pid_in(session: &str) -> u32 {
    let output = Command::new("tmux")
        .args(["list-panes", "-t", session, "-F", "#{pane_pid}"])
        .output()
        .unwrap();
    let pane: u32 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let children = std::fs::read_to_string(format!("/proc/{pane}/task/{pane}/children")).unwrap();
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .find(|pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "harness")
        })
        .expect("no harness in the tmux pane")
}

#[test]
fn a_shell_under_tmux_runs_commands_takes_ctrl_c_and_exits_cleanly() {
    let session = Tmux(format!("shell-test-{}", std::process::id()));
    let command = format!(
        "{} shell; echo harness-exited-$?; sleep 30",
        harness_binary().display()
    );
    let size = ["-x", "150", "-y", "40"];
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session.0])
        .args(size)
        .arg(&command)
        .status()
        .unwrap();
    assert!(status.success());
    let session = &session.0;
    wait_for_screen(session, "[vm ", Duration::from_secs(90));
    let harness = harness_pid_in(session);
    type_line(session, &["echo hello-$((6*7)); lsmod", "Enter"]);
    wait_for_prompt_after(session, "hello-42", Duration::from_secs(20));
    let shown = screen(session);
    let (_, below) = shown.rsplit_once("hello-42").unwrap();
    assert!(below.contains("bpf_testmod"), "no module listed:\n{shown}");
    // Ctrl-C goes once the program is in the foreground: it says so itself,
    // then becomes sleep (exec keeps its process and its process group).
    let foreground = "sh -c 'echo in-the-foreground-$((40+2)); exec sleep 300'";
    type_line(session, &[foreground, "Enter"]);
    wait_for_screen(session, "in-the-foreground-42", Duration::from_secs(20));
    type_line(session, &["C-c"]);
    // Back at the prompt long before sleep's 300 s, its status 128 + SIGINT:
    // Ctrl-C ended the guest's foreground program, not the harness.
    wait_for_prompt_after(session, "in-the-foreground-42", Duration::from_secs(20));
    type_line(session, &["echo status-$?", "Enter"]);
    wait_for_prompt_after(session, "status-130", Duration::from_secs(20));
    type_line(session, &["exit", "Enter"]);
    wait_for_screen(session, "harness-exited-0", Duration::from_secs(30));
    assert_no_vm_left(&format!("shell-{harness}"));
}

#[test]
fn gdb_reads_a_kernel_and_a_module_symbol_then_the_vm_finishes() {
    let mut child = Command::new(harness_binary())
        .args(["exec", "--module", "--gdb", "--", "echo", "after-gdb"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The harness goes on writing to stderr: keep reading it all along.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (gdb_tx, gdb_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.starts_with("gdb ") {
                let _ = gdb_tx.send(line.clone());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let gdb_line = gdb_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the harness printed no gdb command");
    // The printed command, in batch mode, with a few reads, then detach.
    let script = format!(
        "{} -ex 'print jiffies > 0' -ex 'print *bpf_testmod_ops_struct_ops.name@15' -ex detach",
        gdb_line.replacen("gdb ", "gdb -batch ", 1)
    );
    let output = Command::new("timeout")
        .args(["120", "bash", "-c", &script])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("$1 = 1"), "a kernel symbol: {said}");
    assert!(
        said.contains("$2 = \"bpf_testmod_ops\""),
        "a module symbol: {said}"
    );
    let pid = child.id();
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        status.success(),
        "the VM did not finish normally: {status}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "after-gdb");
    assert_no_vm_left(&format!("exec-{pid}"));
}
