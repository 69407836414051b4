//! Reads what the kernel printed: /dev/kmsg for the complete log, and the
//! trace buffer for the ordered timeline. With the printk:console event
//! enabled, every printk line lands in the trace buffer too, beside the BPF
//! program's bpf_printk lines and stamped by the same clock, so the buffer
//! holds both streams in the order they happened.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use guest_agent::protocol::{Source, TimelineLine};

const TRACING: &str = "/sys/kernel/tracing";

pub struct KernelOutput {
    kmsg: File,
    /// Times /dev/kmsg said records were overwritten before we read them.
    pub kmsg_overruns: usize,
    /// Reading trace_pipe consumes exactly what was read, so no line printed
    /// between two reads is lost (as it would be between reading and clearing `trace`).
    trace_pipe: File,
    /// The start of a trace line whose end has not been read yet.
    partial_line: String,
    /// The task names (comm) of the scenario's processes: the agent and the loader.
    own_tasks: Vec<String>,
}

impl KernelOutput {
    /// Starts capturing: later reads return only what is printed from now on,
    /// and of that only what the scenario's own tasks (`own_tasks`) printed, so
    /// the kernel's background chatter (a clocksource switch, say) cannot
    /// wander into a step. The full log, background included, comes from
    /// /dev/kmsg (the kernel is booted with a log buffer large enough for the
    /// stress scenario; an overrun fails the scenario).
    pub fn start(own_tasks: Vec<String>) -> Result<Self> {
        write_tracing_file("events/printk/console/enable", "1")?;
        // A large buffer keeps long scenarios (100 cycles) from overwriting their start.
        write_tracing_file("buffer_size_kb", "8192")?;
        clear_trace()?;
        let trace_pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("{TRACING}/trace_pipe"))
            .context("opening the trace pipe")?;
        let mut kmsg = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .context("opening /dev/kmsg")?;
        kmsg.seek(SeekFrom::End(0))
            .context("seeking to the end of /dev/kmsg")?;
        Ok(KernelOutput {
            kmsg,
            kmsg_overruns: 0,
            trace_pipe,
            partial_line: String::new(),
            own_tasks,
        })
    }

    /// Everything printed since the last call, in order.
    pub fn take_timeline(&mut self) -> Result<Vec<TimelineLine>> {
        let mut text = std::mem::take(&mut self.partial_line);
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match self.trace_pipe.read(&mut buffer) {
                Ok(0) => break,
                Ok(len) => text.push_str(&String::from_utf8_lossy(&buffer[..len])),
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                Err(err) => return Err(err).context("reading the trace pipe"),
            }
        }
        let complete = match text.rfind('\n') {
            Some(end) => {
                self.partial_line = text[end + 1..].to_owned();
                &text[..end + 1]
            }
            None => {
                self.partial_line = text;
                return Ok(Vec::new());
            }
        };
        Ok(parse_trace(complete, &self.own_tasks))
    }

    /// The /dev/kmsg records written since the last call, as their message text.
    pub fn take_kmsg(&mut self) -> Result<Vec<String>> {
        let mut records = Vec::new();
        // One read returns one record; EAGAIN means we are caught up.
        let mut buffer = vec![0u8; 8192];
        loop {
            match self.kmsg.read(&mut buffer) {
                Ok(0) => break,
                Ok(len) => {
                    let record = String::from_utf8_lossy(&buffer[..len]);
                    records.push(kmsg_message(&record).to_owned());
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before we read them. Go on with the
                // rest, but remember: a splat may have been among the lost ones.
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => {
                    self.kmsg_overruns += 1;
                    continue;
                }
                Err(err) => return Err(err).context("reading /dev/kmsg"),
            }
        }
        Ok(records)
    }
}

fn write_tracing_file(name: &str, value: &str) -> Result<()> {
    std::fs::write(format!("{TRACING}/{name}"), value)
        .with_context(|| format!("writing {value} to {TRACING}/{name}"))
}

fn clear_trace() -> Result<()> {
    let mut trace = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(format!("{TRACING}/trace"))
        .context("clearing the trace buffer")?;
    trace.flush().context("clearing the trace buffer")
}

/// The message of a /dev/kmsg record `prio,seq,usec,flags[,...];message\n`
/// (continuation lines, which start with a space, are dropped).
pub fn kmsg_message(record: &str) -> &str {
    let first_line = record.lines().next().unwrap_or("");
    first_line
        .split_once(';')
        .map_or(first_line, |(_, message)| message)
}

/// The task name (comm) the kernel shows for a process running `binary`.
pub fn task_name(binary: &std::path::Path) -> String {
    let name = binary
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    // TASK_COMM_LEN is 16, with the terminating NUL.
    name.chars().take(15).collect()
}

/// Turns the text of /sys/kernel/tracing/trace into timeline lines, keeping
/// the console (printk) and bpf_trace_printk events of `own_tasks` and
/// dropping the rest. A line whose task the trace could not name (`<...>`)
/// is kept: better an extra line in a snapshot than a lost one.
pub fn parse_trace(trace: &str, own_tasks: &[String]) -> Vec<TimelineLine> {
    trace
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| match trace_task(line) {
            Some("<...>") | None => true,
            Some(task) => own_tasks.iter().any(|own| own == task),
        })
        .filter_map(parse_trace_line)
        .collect()
}

/// `struct_ops` from `      struct_ops-63      [000] ...`.
fn trace_task(line: &str) -> Option<&str> {
    let (task_and_pid, _) = line.trim_start().split_once(" [")?;
    let (task, _pid) = task_and_pid.trim_end().rsplit_once('-')?;
    Some(task)
}

fn parse_trace_line(line: &str) -> Option<TimelineLine> {
    // "  task-pid  [cpu] flags  12.345678: event: message": the event name
    // follows the timestamp's ": ".
    for (marker, source) in [
        (": bpf_trace_printk: ", Source::Bpf),
        (": console: ", Source::Kernel),
    ] {
        if let Some(position) = line.find(marker) {
            let text = line[position + marker.len()..].trim_end().to_owned();
            return Some(TimelineLine { source, text });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\
# tracer: nop
#
#                                _-----=> irqs-off/BH-disabled
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
      struct_ops-63      [000] d..1.     2.902107: console: bpf_testmod_ops registered
     kworker/0:1-23      [000] d..1.     2.905000: console: clocksource: Switched to clocksource tsc
      struct_ops-63      [000] ...1.     2.910931: console: Calling struct_ops callbacks:
      struct_ops-63      [000] ...11     2.911002: bpf_trace_printk: BPF test_1 called!
      struct_ops-63      [000] ...1.     2.911250: console: test_1() returned: 42
      struct_ops-63      [001] ...11     2.911300: bpf_trace_printk: Full buffer: Hello: from userspace!
";

    #[test]
    fn trace_keeps_both_sources_of_our_tasks_in_order() {
        let timeline = parse_trace(TRACE, &["struct_ops".to_owned(), "guest-agent".to_owned()]);
        let rendered: Vec<_> = timeline
            .iter()
            .map(|line| format!("{:?} {}", line.source, line.text))
            .collect();
        assert_eq!(
            rendered,
            [
                "Kernel bpf_testmod_ops registered",
                "Kernel Calling struct_ops callbacks:",
                "Bpf BPF test_1 called!",
                "Kernel test_1() returned: 42",
                "Bpf Full buffer: Hello: from userspace!",
            ]
        );
    }

    #[test]
    fn the_task_is_read_from_the_trace_line() {
        assert_eq!(
            trace_task("      struct_ops-63      [000] d..1.     2.902107: console: x"),
            Some("struct_ops")
        );
        assert_eq!(
            trace_task("     kworker/0:1-23      [000] d..1.  2.9: console: x"),
            Some("kworker/0:1")
        );
        assert_eq!(
            trace_task("           <...>-57      [001] .....  2.9: console: x"),
            Some("<...>")
        );
        assert_eq!(
            task_name(std::path::Path::new("/x/a-very-long-binary-name")),
            "a-very-long-bin"
        );
    }

    #[test]
    fn kmsg_record_yields_its_message() {
        assert_eq!(
            kmsg_message("6,345,2902107,-;bpf_testmod_ops registered\n"),
            "bpf_testmod_ops registered"
        );
        assert_eq!(
            kmsg_message("4,12,5,-,caller=T1;WARNING: CPU: 0 PID: 1\n SUBSYSTEM=x\n"),
            "WARNING: CPU: 0 PID: 1"
        );
    }
}
