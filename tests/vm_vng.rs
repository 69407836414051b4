//! Manual debugging works: the command `harness vng SCENARIO` prints boots the
//! harness's kernel under virtme-ng (installed by `harness setup` into a
//! virtualenv) and runs the scenario with the agent as a plain command.

use std::io::Read;
use std::time::{Duration, Instant};

mod common;

use harness_host::vng;

#[test]
fn vng_runs_a_scenario_on_the_harness_kernel() {
    let artifacts = common::artifacts();
    let command = vng::vng_command(artifacts, "trigger").unwrap_or_else(|err| panic!("{err:#}"));
    // Its own process group, so that a timeout kills vng's QEMU and virtiofsd too.
    let reader = duct::cmd!("bash", "-c", &command)
        .before_spawn(|command| {
            std::os::unix::process::CommandExt::process_group(command, 0);
            Ok(())
        })
        .stdin_null()
        .stderr_to_stdout()
        .unchecked()
        .reader()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    let output = std::thread::scope(|scope| {
        let collector = scope.spawn(|| {
            let mut output = String::new();
            let _ = (&reader).read_to_string(&mut output);
            output
        });
        while reader.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let group = reader.pids()[0] as i32;
                // SAFETY: kill(2) on the process group we created.
                unsafe { libc::kill(-group, libc::SIGKILL) };
                let _ = reader.kill();
                panic!("vng did not finish within 150 s: {command}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        collector.join().unwrap()
    });
    let status = reader.try_wait().unwrap().expect("vng finished").status;
    assert!(
        status.success(),
        "{command}\nexited with {status}:\n{output}"
    );
    for expected in [
        "scenario trigger: PASS",
        "[kernel] test_1() returned: 42",
        "[kernel] test_2(10, 20) returned: 30",
        "[bpf]    Full buffer: Hello from userspace!",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
}
