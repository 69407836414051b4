//! Reads what the kernel printed: /dev/kmsg for the complete log, and the
//! trace buffer for the ordered timeline. With the printk:console event
//! enabled, every printk line lands in the trace buffer too, beside the BPF
//! program's bpf_printk lines and stamped by the same clock, so the buffer
//! holds both streams in the order they happened.
//!
//! Both are drained continuously by a thread of their own, at real-time
//! priority, from before the module loads: a fast guest can print more than
//! any buffer holds before a scenario ends, and a record overwritten before
//! it was read could have been a splat. What is lost anyway is counted.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::splat::{Splat, SplatScanner};
use anyhow::{anyhow, Context, Result};
use harness_wire::guest_setup::{TRACE_EVENT_PID, TRACE_OFF, TRACE_ON, TRACE_SWITCHES, TRACING};
use harness_wire::kernel_type::{ExitScanner, TypeExit};
use harness_wire::protocol::{LogStats, Source, TimelineLine};

/// The trace instance that records the kernel lines a subject owns
/// (its type's, such as sched_ext's) from every task, kthread and interrupt.
const OWNED: &str = "instances/harness-owned";
/// How many of the last kernel log records a result carries.
const KMSG_TAIL: usize = 200;
/// How long the drain thread sleeps when both streams are quiet.
const POLL_MS: i32 = 5;
/// Above every normal task, below the kernel's own real-time threads.
const DRAIN_PRIORITY: i32 = 10;

pub(crate) struct KernelOutput {
    readers: Arc<Readers>,
    stop: Arc<AtomicBool>,
    drainers: Vec<JoinHandle<()>>,
}

struct Readers {
    kmsg: Mutex<KmsgReader>,
    trace: Mutex<TraceReader>,
    /// The lines a subject and its type own, whoever printed them.
    owned: Option<Mutex<TraceReader>>,
}

/// What /dev/kmsg said during the scenario.
pub(crate) struct KernelLog {
    pub(crate) stats: LogStats,
    /// The last records, for a person reading a failure.
    pub(crate) tail: Vec<String>,
    /// Each splat with the records that followed it.
    pub(crate) splats: Vec<Splat>,
    /// How the kernel ended implementations of a type it defines.
    pub(crate) exits: Vec<TypeExit>,
}

impl KernelOutput {
    /// Starts capturing: later reads return only what is printed from now on,
    /// and of that only what this process and its descendants (the loaders,
    /// their threads) printed, so the kernel's background chatter (a
    /// clocksource switch in a kworker, say) cannot wander into a step, and
    /// the lines that start with one of `owned_prefixes` (a kernel type's,
    /// a subject's own), whoever printed them. The full log, background
    /// included, is scanned for splats as it is read from /dev/kmsg.
    pub(crate) fn start(owned_prefixes: &[String]) -> Result<Self> {
        // Done before the ready line by PID 1; a no-op then.
        arm()?;
        let owned = set_up_owned(owned_prefixes)?;
        // Room for bursts the drain thread has not reached yet.
        write_tracing_file("buffer_size_kb", "2048")?;
        clear_trace()?;
        let readers = Arc::new(Readers {
            kmsg: Mutex::new(KmsgReader::open()?),
            trace: Mutex::new(TraceReader::open(&format!("{TRACING}/trace_pipe"), true)?),
            owned: match owned {
                true => Some(Mutex::new(TraceReader::open(
                    &format!("{TRACING}/{OWNED}/trace_pipe"),
                    false,
                )?)),
                false => None,
            },
        });
        let stop = Arc::new(AtomicBool::new(false));
        // One thread per stream, so each can have a CPU to itself.
        let streams = [Stream::Kmsg, Stream::Trace, Stream::Owned];
        let drainers = (streams.into_iter())
            .filter(|stream| *stream != Stream::Owned || readers.owned.is_some())
            .map(|stream| {
                let readers = Arc::clone(&readers);
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("drain-{stream:?}"))
                    .spawn(move || drain_until_stopped(&readers, stream, &stop))
                    .context("starting a kernel output drain thread")
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KernelOutput {
            readers,
            stop,
            drainers,
        })
    }

    /// Everything our tasks printed since the last call, and the lines the
    /// subject owns, in the order their timestamps say.
    pub(crate) fn take_timeline(&self) -> Result<Vec<TimelineLine>> {
        let mut trace = lock(&self.readers.trace);
        trace.drain()?;
        let ours = std::mem::take(&mut trace.lines);
        let owned = match &self.readers.owned {
            Some(owned) => {
                let mut owned = lock(owned);
                owned.drain()?;
                std::mem::take(&mut owned.lines)
            }
            None => Vec::new(),
        };
        Ok(merge_by_time(ours, owned))
    }

    /// Stops the drain threads, reads what is left and says what the log held.
    pub(crate) fn finish(&mut self) -> Result<KernelLog> {
        self.stop_drainer();
        let mut kmsg = lock(&self.readers.kmsg);
        kmsg.drain()?;
        let mut trace = lock(&self.readers.trace);
        trace.drain()?;
        let mut stats = kmsg.stats.clone();
        stats.trace_lines = trace.stats.trace_lines;
        // trace_pipe's LOST lines and the buffers' overrun counts see the same loss.
        stats.trace_lost = trace.stats.trace_lost.max(trace.overruns_since_start());
        let log = KernelLog {
            stats,
            tail: kmsg.tail.iter().cloned().collect(),
            splats: kmsg.splats.splats().to_vec(),
            exits: kmsg.exits.take(),
        };
        Ok(log)
    }

    fn stop_drainer(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for drainer in self.drainers.drain(..) {
            let _ = drainer.join();
        }
    }
}

impl Drop for KernelOutput {
    fn drop(&mut self) {
        self.stop_drainer();
    }
}

/// A poisoned lock only means a drain panicked mid-read; the data is still ours.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Kmsg,
    Trace,
    Owned,
}

fn drain_until_stopped(readers: &Readers, stream: Stream, stop: &AtomicBool) {
    raise_priority();
    let owned = || readers.owned.as_ref().map(lock);
    let fd = match stream {
        Stream::Kmsg => lock(&readers.kmsg).file.as_raw_fd(),
        Stream::Trace => lock(&readers.trace).file.as_raw_fd(),
        Stream::Owned => match owned() {
            Some(reader) => reader.file.as_raw_fd(),
            None => return,
        },
    };
    while !stop.load(Ordering::Relaxed) {
        // Errors are kept by each reader and reported by the next take.
        let _ = match stream {
            Stream::Kmsg => lock(&readers.kmsg).drain(),
            Stream::Trace => lock(&readers.trace).drain(),
            Stream::Owned => owned().map_or(Ok(()), |mut reader| reader.drain()),
        };
        wait_for_input(fd);
    }
}

/// SCHED_FIFO, so that tasks flooding the log cannot starve the one reading
/// it: the reader then sets the pace. Best effort (not root under vng, say).
fn raise_priority() {
    let param = libc::sched_param {
        sched_priority: DRAIN_PRIORITY,
    };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid param.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param);
    }
}

fn wait_for_input(fd: i32) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd we own.
    unsafe {
        libc::poll(&mut poll, 1, POLL_MS);
    }
}

/// /dev/kmsg, read record by record: every record is scanned for splats, the
/// last ones are kept, and gaps in the sequence numbers count lost records.
struct KmsgReader {
    file: File,
    stats: LogStats,
    next_seq: Option<u64>,
    tail: std::collections::VecDeque<String>,
    splats: SplatScanner,
    /// sched_ext's exits, read from every record whoever printed it.
    exits: ExitScanner,
    error: Option<String>,
}

impl KmsgReader {
    fn open() -> Result<Self> {
        use std::io::{Seek, SeekFrom};
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .context("opening /dev/kmsg")?;
        file.seek(SeekFrom::End(0))
            .context("seeking to the end of /dev/kmsg")?;
        Ok(KmsgReader {
            file,
            stats: LogStats::default(),
            next_seq: None,
            tail: std::collections::VecDeque::with_capacity(KMSG_TAIL),
            splats: SplatScanner::new(40),
            exits: ExitScanner::default(),
            error: None,
        })
    }

    /// Reads every record there is now.
    fn drain(&mut self) -> Result<()> {
        if let Some(error) = &self.error {
            return Err(anyhow!("{error}"));
        }
        // One read returns one record; EAGAIN means we are caught up.
        let mut buffer = [0u8; 8192];
        loop {
            match self.file.read(&mut buffer) {
                Ok(0) => return Ok(()),
                Ok(len) => self.record(&String::from_utf8_lossy(&buffer[..len])),
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
                // EPIPE: records were overwritten before we read them; the
                // gap in sequence numbers on the next record says how many.
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(err) => {
                    let message = format!("reading /dev/kmsg: {err}");
                    self.error = Some(message.clone());
                    return Err(anyhow!(message));
                }
            }
        }
    }

    fn record(&mut self, record: &str) {
        if let Some(seq) = kmsg_seq(record) {
            if let Some(expected) = self.next_seq {
                self.stats.kmsg_lost += seq.saturating_sub(expected);
            }
            self.next_seq = Some(seq + 1);
        }
        self.stats.kmsg_records += 1;
        let message = kmsg_message(record);
        self.splats.push(message);
        self.exits.push(message);
        if self.tail.len() == KMSG_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(message.to_owned());
    }
}

/// trace_pipe, which consumes what it returns, so no line printed between
/// two reads is lost (as it would be between reading and clearing `trace`).
struct TraceReader {
    file: File,
    /// The start of a line whose end has not been read yet.
    partial_line: String,
    /// What each read of the pipe returns, allocated once: the drain
    /// thread reads up to every 5 ms.
    buffer: Box<[u8]>,
    /// Each line with its timestamp (microseconds since boot).
    lines: Vec<(u64, TimelineLine)>,
    /// Whether lines printed in interrupt context are dropped: ours are
    /// what our tasks printed; owned lines are kept whoever printed them.
    tasks_only: bool,
    stats: LogStats,
    /// Each CPU buffer's overrun count when capture started.
    overruns_at_start: u64,
    error: Option<String>,
    /// The tasks (`comm-pid`) printing a KCSAN report now, which the splat
    /// check reads from the kernel log: it is the detector's output, not
    /// the step's, even when a step's task printed it.
    in_race_report: Vec<String>,
}

/// KCSAN's reports start and end with a line of these.
const REPORT_RULE: &str = "==================================================================";

impl TraceReader {
    fn open(pipe: &str, tasks_only: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(pipe)
            .with_context(|| format!("opening the trace pipe {pipe}"))?;
        Ok(TraceReader {
            file,
            partial_line: String::new(),
            buffer: vec![0u8; 64 * 1024].into_boxed_slice(),
            lines: Vec::new(),
            tasks_only,
            stats: LogStats::default(),
            overruns_at_start: trace_overruns(),
            error: None,
            in_race_report: Vec::new(),
        })
    }

    fn drain(&mut self) -> Result<()> {
        if let Some(error) = &self.error {
            return Err(anyhow!("{error}"));
        }
        loop {
            match self.file.read(&mut self.buffer) {
                Ok(0) => return Ok(()),
                Ok(len) => {
                    let text = String::from_utf8_lossy(&self.buffer[..len]).into_owned();
                    self.text(&text);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(err) => {
                    let message = format!("reading the trace pipe: {err}");
                    self.error = Some(message.clone());
                    return Err(anyhow!(message));
                }
            }
        }
    }

    fn text(&mut self, text: &str) {
        let mut text = std::mem::take(&mut self.partial_line) + text;
        let Some(end) = text.rfind('\n') else {
            self.partial_line = text;
            return;
        };
        self.partial_line = text.split_off(end + 1);
        for line in text.lines() {
            if let Some(lost) = lost_events(line) {
                self.stats.trace_lost += lost;
                continue;
            }
            self.stats.trace_lines += 1;
            // What interrupted our tasks (a timer's clocksource watchdog, say)
            // is not what they printed; the kernel log still has it.
            if self.tasks_only && in_interrupt(line) {
                continue;
            }
            let task = line.split_whitespace().next().unwrap_or("").to_owned();
            let at = trace_timestamp(line).unwrap_or(0);
            if let Some(line) = parse_trace_line(line) {
                self.push(task, at, line);
            }
        }
    }

    /// Keeps a line `task` printed at `at`, unless it belongs to a KCSAN report.
    fn push(&mut self, task: String, at: u64, line: TimelineLine) {
        let kernel = line.source == Source::Kernel;
        if kernel && line.text.starts_with("BUG: KCSAN:") {
            // The rule before the header: the last rule line kept.
            if let Some(rule) = (self.lines.iter()).rposition(|(_, kept)| kept.text == REPORT_RULE)
            {
                self.lines.remove(rule);
            }
            self.in_race_report.push(task);
            return;
        }
        if let Some(at) = self
            .in_race_report
            .iter()
            .position(|printing| *printing == task)
        {
            if kernel && line.text == REPORT_RULE {
                self.in_race_report.remove(at);
            }
            return;
        }
        self.lines.push((at, line));
    }

    /// Events the ring buffer overwrote since capture started (a backstop for
    /// the LOST lines trace_pipe prints).
    fn overruns_since_start(&self) -> u64 {
        trace_overruns().saturating_sub(self.overruns_at_start)
    }
}

/// The sum of every CPU buffer's `overrun:` count.
fn trace_overruns() -> u64 {
    let Ok(cpus) = std::fs::read_dir(format!("{TRACING}/per_cpu")) else {
        return 0;
    };
    cpus.flatten()
        .filter_map(|cpu| std::fs::read_to_string(cpu.path().join("stats")).ok())
        .map(|stats| stat_value(&stats, "overrun"))
        .sum()
}

fn stat_value(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Enables the trace events and the pid filter a scenario's capture uses.
/// Each first enabling registers probes on the scheduler's tracepoints
/// (the filter's, and the comm recording that `printk:console` starts),
/// which patches live kernel text: int3 first, then the new call. Under
/// TCG a vCPU twice ran such a stale int3 in `ttwu_do_activate` (the
/// `sched_wakeup` tracepoint's static call) and the kernel panicked
/// ("Oops: int3"), once in a `.ci/run`. PID 1 arms this before its ready
/// line, so the patches happen once a boot, before any scenario, and a
/// panic there is a failed boot the host boots again (or, in a template,
/// a failed save: the VM boots instead); a scenario's `start` then only
/// writes what is already set (no probe changes). In a restored VM,
/// `stage0` armed the same ([`TRACE_SWITCHES`], its pid 1) in the template
/// before it was saved, so these writes change nothing.
pub(crate) fn arm() -> Result<()> {
    for name in TRACE_SWITCHES {
        write_tracing_file(name, TRACE_ON)?;
    }
    add_event_pid(std::process::id())
}

/// Tracing as after a boot, in a VM restored from a template `stage0`
/// armed, for a command that is not a run (`harness exec` and `shell`):
/// the events off, no pid filter, and an empty buffer, so what a user
/// reads from `trace_pipe` is what it would be after a boot.
pub(crate) fn disarm() -> Result<()> {
    for name in TRACE_SWITCHES {
        write_tracing_file(name, TRACE_OFF)?;
    }
    let pids = format!("{TRACING}/{TRACE_EVENT_PID}");
    std::fs::write(&pids, "").with_context(|| format!("emptying {pids}"))?;
    clear_trace()
}

fn write_tracing_file(name: &str, value: &str) -> Result<()> {
    std::fs::write(format!("{TRACING}/{name}"), value)
        .with_context(|| format!("writing {value} to {TRACING}/{name}"))
}

/// Adds `pid` to the trace event pid filter without truncating it. Opening
/// `set_event_pid` with O_TRUNC unregisters the filter's probes on the
/// scheduler's tracepoints and the write registers them again: dozens of
/// live code patches (int3, then the new call) at every scenario's start.
/// Under TCG a vCPU once ran a stale int3 from such a patch ("Oops: int3"
/// in `ttwu_do_activate`, at the start of a debug VM's second scenario),
/// which panicked the kernel. Appending the agent's own pid, which is the
/// same for every scenario of a VM, patches only the first time. A pid
/// already there (`stage0` put the agent's in a template) is not written
/// again: each write waits for RCU grace periods before it frees the old
/// list, 20 ms of a restored VM's start under TCG.
fn add_event_pid(pid: u32) -> Result<()> {
    let path = format!("{TRACING}/{TRACE_EVENT_PID}");
    let listed = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let pid_line = pid.to_string();
    if listed.lines().any(|line| line.trim() == pid_line) {
        return Ok(());
    }
    let mut file = OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {path}"))?;
    file.write_all(format!("{pid}\n").as_bytes())
        .with_context(|| format!("writing {pid} to {path}"))
}

fn clear_trace() -> Result<()> {
    let mut trace = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(format!("{TRACING}/trace"))
        .context("clearing the trace buffer")?;
    trace.flush().context("clearing the trace buffer")
}

/// Sets up the capture of the lines that start with `prefixes`, whoever
/// prints them: a trace instance of its own records just those (an event
/// filter on the message), and the main one, filtered by our pids, leaves
/// them out, so that none is taken twice. The instance's event is enabled
/// once per boot: enabling it patches the kernel's text (see
/// `add_event_pid`), changing its filter does not. Whether there is
/// anything to capture.
fn set_up_owned(prefixes: &[String]) -> Result<bool> {
    if prefixes.is_empty() {
        // A scenario before this one in the same VM may have set one.
        write_tracing_file("events/printk/console/filter", "0")?;
        return Ok(false);
    }
    let matches = prefixes
        .iter()
        .map(|prefix| format!("msg ~ \"{}*\"", prefix.replace('"', "")))
        .collect::<Vec<_>>()
        .join(" || ");
    let dir = format!("{TRACING}/{OWNED}");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating the trace instance {dir}"))?;
    write_tracing_file(&format!("{OWNED}/buffer_size_kb"), "512")?;
    write_tracing_file(&format!("{OWNED}/events/printk/console/filter"), &matches)?;
    let enable = format!("{OWNED}/events/printk/console/enable");
    let enabled = std::fs::read_to_string(format!("{TRACING}/{enable}")).unwrap_or_default();
    if enabled.trim() != "1" {
        write_tracing_file(&enable, "1")?;
    }
    write_tracing_file("events/printk/console/filter", &format!("!({matches})"))?;
    let mut trace = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(format!("{dir}/trace"))
        .with_context(|| format!("clearing {dir}/trace"))?;
    trace
        .flush()
        .with_context(|| format!("clearing {dir}/trace"))?;
    Ok(true)
}

/// Both streams' lines in the order of their timestamps (the trace
/// instances share the kernel's trace clock); a tie keeps ours first.
fn merge_by_time(
    ours: Vec<(u64, TimelineLine)>,
    owned: Vec<(u64, TimelineLine)>,
) -> Vec<TimelineLine> {
    let mut all: Vec<(u64, u8, TimelineLine)> = (ours.into_iter().map(|(at, line)| (at, 0, line)))
        .chain(owned.into_iter().map(|(at, line)| (at, 1, line)))
        .collect();
    all.sort_by_key(|(at, stream, _)| (*at, *stream));
    all.into_iter().map(|(_, _, line)| line).collect()
}

/// A trace line's timestamp in microseconds: the `12.345678` before the
/// event's name.
fn trace_timestamp(line: &str) -> Option<u64> {
    let (before, _) = line.split_once(": ")?;
    let stamp = before.split_whitespace().last()?;
    let (seconds, micros) = stamp.split_once('.')?;
    Some(seconds.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?)
}

/// The message of a /dev/kmsg record `prio,seq,usec,flags[,...];message\n`
/// (continuation lines, which start with a space, are dropped).
pub(crate) fn kmsg_message(record: &str) -> &str {
    let first_line = record.lines().next().unwrap_or("");
    first_line
        .split_once(';')
        .map_or(first_line, |(_, message)| message)
}

/// The sequence number of a /dev/kmsg record.
fn kmsg_seq(record: &str) -> Option<u64> {
    record.split(',').nth(1)?.parse().ok()
}

/// `CPU:1 [LOST 1234 EVENTS]`, which trace_pipe prints where the ring buffer
/// overwrote events before they were read. An unknown count counts as one.
fn lost_events(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("CPU:")?;
    let (_, lost) = rest.split_once(" [LOST ")?;
    let count = lost.strip_suffix(" EVENTS]").unwrap_or("1");
    Some(count.parse().unwrap_or(1))
}

/// Turns trace text into timeline lines.
#[cfg(test)]
fn parse_trace(trace: &str) -> Vec<TimelineLine> {
    trace.lines().filter_map(parse_trace_line).collect()
}

/// Whether a trace line was recorded in hard or soft interrupt context (or
/// an NMI): the third of its flags, `d.h1.` or `..s1.`.
fn in_interrupt(line: &str) -> bool {
    let Some((_, after_cpu)) = line.split_once("] ") else {
        return false;
    };
    let flags = after_cpu.split_whitespace().next().unwrap_or("");
    matches!(flags.chars().nth(2), Some('h' | 's' | 'H' | 'z'))
}

/// A console (printk) or bpf_trace_printk event as a timeline line.
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
      loader-63      [000] d..1.     2.902107: console: demo_ops registered
      loader-63      [000] ...1.     2.910931: console: Calling struct_ops callbacks:
      loader-63      [000] ...11     2.911002: bpf_trace_printk: BPF test_1 called!
      loader-63      [000] ...1.     2.911250: console: test_1() returned: 42
      loader-63      [001] ...11     2.911300: bpf_trace_printk: Full buffer: Hello: from userspace!
";

    #[test]
    fn trace_keeps_both_sources_in_order() {
        let timeline = parse_trace(TRACE);
        let rendered: Vec<_> = timeline
            .iter()
            .map(|line| format!("{:?} {}", line.source, line.text))
            .collect();
        assert_eq!(
            rendered,
            [
                "Kernel demo_ops registered",
                "Kernel Calling struct_ops callbacks:",
                "Bpf BPF test_1 called!",
                "Kernel test_1() returned: 42",
                "Bpf Full buffer: Hello: from userspace!",
            ]
        );
    }

    #[test]
    fn owned_lines_join_ours_in_the_order_of_their_timestamps() {
        let line = |text: &str| TimelineLine {
            source: Source::Kernel,
            text: text.to_owned(),
        };
        let first = "   sched_ext_ops_h-51   [001] d..1.     2.902107: console: x";
        assert_eq!(trace_timestamp(first), Some(2_902_107));
        let ours = vec![(10, line("a")), (30, line("c"))];
        let owned = vec![(20, line("sched_ext: b")), (30, line("sched_ext: d"))];
        let merged: Vec<String> = merge_by_time(ours, owned)
            .into_iter()
            .map(|line| line.text)
            .collect();
        assert_eq!(merged, ["a", "sched_ext: b", "c", "sched_ext: d"]);
    }

    #[test]
    fn kmsg_record_yields_its_message_and_sequence_number() {
        assert_eq!(
            kmsg_message("6,345,2902107,-;demo_ops registered\n"),
            "demo_ops registered"
        );
        assert_eq!(
            kmsg_message("4,12,5,-,caller=T1;WARNING: CPU: 0 PID: 1\n SUBSYSTEM=x\n"),
            "WARNING: CPU: 0 PID: 1"
        );
        assert_eq!(kmsg_seq("6,345,2902107,-;x\n"), Some(345));
        assert_eq!(kmsg_seq("garbage"), None);
    }

    #[test]
    fn lines_printed_in_interrupt_context_are_told_apart() {
        let task = "      loader-63      [000] ...1.     2.9: console: x";
        let softirq = "      loader-63      [001] ..s1.     2.9: console: clocksource: Watchdog";
        let hardirq = "      loader-63      [001] d.h1.     2.9: console: y";
        assert!(!in_interrupt(task));
        assert!(in_interrupt(softirq));
        assert!(in_interrupt(hardirq));
    }

    #[test]
    fn lost_trace_events_are_counted() {
        assert_eq!(lost_events("CPU:1 [LOST 1234 EVENTS]"), Some(1234));
        assert_eq!(lost_events("CPU:0 [LOST EVENTS]"), Some(1));
        assert_eq!(
            lost_events("      loader-63      [000] d..1.  2.9: console: CPU:1 [LOST 3 EVENTS]"),
            None
        );
    }

    #[test]
    fn overrun_is_read_from_the_cpu_stats() {
        let stats = "entries: 10\noverrun: 42\ncommit overrun: 0\nbytes: 1000\n";
        assert_eq!(stat_value(stats, "overrun"), 42);
        assert_eq!(stat_value(stats, "commit overrun"), 0);
        assert_eq!(stat_value("", "overrun"), 0);
    }
}
