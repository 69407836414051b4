//! Keeping child processes from outliving us.

/// For duct's `before_spawn`: the kernel kills the child when the thread
/// that spawned it dies, so a test killed by nextest's timeout or a Ctrl-C
/// leaves no QEMU or virtiofsd behind.
pub(crate) fn die_with_parent(command: &mut std::process::Command) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, which is all that may run between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(())
}

/// The first `name` on PATH.
pub(crate) fn which(name: &str) -> Option<std::path::PathBuf> {
    which_in(name, std::env::var_os("PATH"))
}

/// The first `name` in the directories of `path` (a PATH value).
pub(crate) fn which_in(name: &str, path: Option<std::ffi::OsString>) -> Option<std::path::PathBuf> {
    std::env::split_paths(&path?)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Processes whose command line mentions `needle` (a VM's socket or log
/// directory), as (pid, command line): what a leak check looks for.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline
                .contains(needle)
                .then(|| (pid, cmdline.trim_end().to_owned()))
        })
        .collect()
}

/// Runs `command` to completion; returns its status and its stdout and
/// stderr together, as text (what a person would have seen).
pub fn combined_output(
    command: duct::Expression,
) -> std::io::Result<(std::process::ExitStatus, String)> {
    let output = command
        .stderr_to_stdout()
        .stdout_capture()
        .unchecked()
        .run()?;
    Ok((
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// The first `MAJOR.MINOR` in `text`: `QEMU emulator version 7.2.19`,
/// `Debian clang version 14.0.6`.
pub(crate) fn first_version(text: &str) -> Option<(u32, u32)> {
    let pattern = regex::Regex::new(r"version (\d+)\.(\d+)").ok()?;
    let captures = pattern.captures(text)?;
    Some((captures[1].parse().ok()?, captures[2].parse().ok()?))
}

/// The first line `program arg` prints (a tool's version), or `missing`.
pub(crate) fn first_line_of(program: &str, arg: &str) -> String {
    combined_output(duct::cmd!(program, arg))
        .ok()
        .filter(|(status, _)| status.success())
        .and_then(|(_, text)| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "missing".to_owned())
}

/// How a person runs the harness here: `cargo run -p harness --` in the
/// harness's own repository (its binary is in this directory's target),
/// `harness` elsewhere. It lives with the process helpers, which depend on
/// nothing of the crate: setup's advice names it, and in `report` it closed
/// the cycle artifacts -> setup -> setup/apt -> report -> artifacts.
pub(crate) fn harness_command() -> &'static str {
    let in_own_repository = std::env::current_exe()
        .ok()
        .zip(std::env::current_dir().ok())
        .is_some_and(|(exe, dir)| exe.starts_with(dir.join("target")));
    if in_own_repository {
        "cargo run -p harness --"
    } else {
        "harness"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    fn finds_a_child_by_its_command_line_and_not_after_it_is_gone() {
        let marker = format!("sleep-marker-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg0(&marker)
            .arg("30")
            .spawn()
            .unwrap();
        // The child's command line is readable once it has exec'd; allow it a moment.
        let found = harness_wire::wait::wait_until(
            std::time::Instant::now() + std::time::Duration::from_secs(5),
            std::time::Duration::from_millis(10),
            || match processes_mentioning(&marker) {
                found if found.is_empty() => harness_wire::wait::Poll::Pending,
                found => harness_wire::wait::Poll::Ready(found),
            },
        )
        .unwrap_or_default();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, child.id());
        assert!(processes_mentioning(&marker).is_empty());
    }
}
