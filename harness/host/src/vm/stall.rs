//! What a stalled boot's vCPUs were doing when its deadline ended it: the
//! console is silent by then (it shows warnings and worse only), so this
//! is what says where the guest was. Each vCPU's instruction pointer (by
//! kernel symbol), whether it was halted and took interrupts, its local
//! APIC (the timer that drives its tick, and what is pending) and whether
//! QEMU's thread for it was running or asleep; the full monitor output is
//! kept in the logs as `vcpus.txt`, and the kernel's own log, info lines
//! included, read out of the guest's memory, as `dmesg.txt`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::qmp::QmpClient;

/// One vCPU, as the monitor and the host's /proc saw it.
#[derive(Debug, Default, PartialEq)]
struct Vcpu {
    index: i64,
    rip: Option<u64>,
    /// `HLT=1`: waiting for an interrupt.
    halted: Option<bool>,
    /// RFLAGS.IF: whether it takes interrupts.
    interrupts: Option<bool>,
    /// The LVT timer and Timer lines of `info lapic`.
    timer: String,
    /// Requested and in-service vectors (`IRR`, `ISR`).
    pending: String,
    /// QEMU's thread for it: /proc state letter and CPU seconds.
    thread: Option<(char, f64)>,
}

/// A one-line summary of each vCPU, and the monitor's full output, for a
/// VM whose QEMU is `qemu_pid` and whose kernel's symbols are `system_map`.
pub(super) fn describe(
    qmp: &mut QmpClient,
    qemu_pid: Option<u32>,
    system_map: &Path,
) -> (String, String) {
    let threads = match qmp.vcpu_threads() {
        Ok(threads) => threads,
        Err(err) => return (format!("unknown (QMP: {err:#})"), String::new()),
    };
    let symbols = std::fs::read_to_string(system_map).unwrap_or_default();
    let mut detail = String::new();
    let mut summary = Vec::new();
    for (index, thread) in threads {
        let registers = qmp.human("info registers", Some(index)).unwrap_or_default();
        let lapic = qmp.human("info lapic", Some(index)).unwrap_or_default();
        let _ = writeln!(
            detail,
            "=== vCPU {index} (host thread {thread}) ===\n{registers}\n{lapic}"
        );
        let mut vcpu = parse(index, &registers, &lapic);
        vcpu.thread = qemu_pid.and_then(|pid| thread_state(pid, thread));
        summary.push(vcpu.summary(&symbols));
    }
    for command in ["info pic", "info irq"] {
        let output = qmp
            .human(command, None)
            .unwrap_or_else(|err| format!("{err:#}"));
        let _ = writeln!(detail, "=== {command} ===\n{output}");
    }
    (summary.join("; "), detail)
}

/// A vCPU from its `info registers` and `info lapic`.
fn parse(index: i64, registers: &str, lapic: &str) -> Vcpu {
    let field = |name: &str| {
        registers
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .map(str::to_owned)
    };
    let rip = field("RIP=").and_then(|hex| u64::from_str_radix(&hex, 16).ok());
    let flags = field("RFL=").and_then(|hex| u64::from_str_radix(&hex, 16).ok());
    let lines = |prefixes: &[&str]| {
        lapic
            .lines()
            .filter(|line| prefixes.iter().any(|prefix| line.starts_with(prefix)))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Vcpu {
        index,
        rip,
        halted: field("HLT=").map(|value| value == "1"),
        interrupts: flags.map(|flags| flags & 0x200 != 0),
        timer: lines(&["LVTT", "Timer"]),
        pending: lines(&["ISR", "IRR"]),
        thread: None,
    }
}

impl Vcpu {
    fn summary(&self, symbols: &str) -> String {
        let at = self.rip.map_or("rip unknown".to_owned(), |rip| {
            symbolise(symbols, rip).unwrap_or_else(|| format!("rip {rip:#x}"))
        });
        let mut words = vec![format!("vCPU {} at {at}", self.index)];
        words.extend(self.halted.map(|halted| match halted {
            true => "halted".to_owned(),
            false => "running".to_owned(),
        }));
        words.extend(self.interrupts.map(|on| match on {
            true => "interrupts on".to_owned(),
            false => "interrupts off".to_owned(),
        }));
        words.extend(
            self.thread
                .map(|(state, secs)| format!("QEMU thread {state} after {secs:.1}s of CPU")),
        );
        for lapic in [&self.timer, &self.pending] {
            if !lapic.is_empty() {
                words.push(format!("[{lapic}]"));
            }
        }
        words.join(", ")
    }
}

/// The guest kernel's log, read out of its memory into `logs/dmesg.txt`:
/// the console shows warnings and worse only, and a stalled guest's
/// /dev/kmsg is out of reach. The text of the printk ring, record by
/// record in the order written (2 MB, which a boot does not wrap), found
/// through the `log_buf` pointer and `log_buf_len` (no KASLR: System.map's
/// addresses are the running kernel's).
pub(super) fn save_kernel_log(qmp: &mut QmpClient, system_map: &Path, logs: &Path) -> Result<()> {
    let symbols = std::fs::read_to_string(system_map)
        .with_context(|| format!("reading {}", system_map.display()))?;
    let pointer = read_word(qmp, symbol_address(&symbols, "log_buf")?, "g")?;
    let length = read_word(qmp, symbol_address(&symbols, "log_buf_len")?, "w")?;
    let raw = logs.join("log_buf.raw");
    // Quoted: unquoted, the path's leading / reads as a division of the size.
    let command = format!("memsave {pointer:#x} {length} \"{}\"", raw.display());
    // Silent on success; an error is its words.
    let said = qmp.human(&command, Some(0))?;
    anyhow::ensure!(said.trim().is_empty(), "{command}: {}", said.trim());
    let bytes = std::fs::read(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let _ = std::fs::remove_file(&raw);
    let text = printable_runs(&bytes);
    let path = logs.join("dmesg.txt");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// The address of the symbol `name` in a System.map.
fn symbol_address(system_map: &str, name: &str) -> Result<u64> {
    system_map
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let (address, _, symbol) = (words.next()?, words.next()?, words.next()?);
            (symbol == name).then(|| u64::from_str_radix(address, 16).ok())?
        })
        .with_context(|| format!("no symbol {name} in the kernel's System.map"))
}

/// The guest word (`g`: 8 bytes, `w`: 4) at virtual `address`, from the
/// monitor's `x` (`ffffffff820c3e88: 0xffff88801e000000`).
fn read_word(qmp: &mut QmpClient, address: u64, size: &str) -> Result<u64> {
    let output = qmp.human(&format!("x /1{size}x {address:#x}"), Some(0))?;
    parse_word(&output)
        .with_context(|| format!("reading {address:#x}: the monitor said {output:?}"))
}

fn parse_word(output: &str) -> Option<u64> {
    let (_, value) = output.split_once(':')?;
    u64::from_str_radix(value.trim().trim_start_matches("0x"), 16).ok()
}

/// Each run of at least 8 printable characters in `bytes`, a line each: the
/// records' text, without the binary between them.
fn printable_runs(bytes: &[u8]) -> String {
    let printable = |byte: &u8| (0x20..0x7f).contains(byte) || *byte == b'\t';
    let mut text = String::new();
    for run in bytes.split(|byte| !printable(byte)) {
        if run.len() >= 8 {
            text.push_str(&String::from_utf8_lossy(run));
            text.push('\n');
        }
    }
    text
}

/// `name+0xoffset` for `address`, from a System.map's text symbols.
fn symbolise(system_map: &str, address: u64) -> Option<String> {
    let (start, name) = system_map
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let start = u64::from_str_radix(words.next()?, 16).ok()?;
            let kind = words.next()?;
            let name = words.next()?;
            let text = matches!(kind, "T" | "t" | "W" | "w");
            (text && start <= address).then(|| (start, name.to_owned()))
        })
        .max_by_key(|(start, _)| *start)?;
    Some(format!("{name}+{:#x}", address - start))
}

/// The host thread `thread` of process `pid`: its state letter (R running,
/// S asleep) and the CPU time it has had, from /proc.
fn thread_state(pid: u32, thread: i64) -> Option<(char, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{thread}/stat")).ok()?;
    // The fields after the command's name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // utime and stime are the 14th and 15th fields of stat, 12th and 13th after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((state, ticks as f64 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTERS: &str = "RAX=0000000000000000 RBX=ffffffff82a0c940 RCX=0000000000000001\n\
        RIP=ffffffff81e7a0eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1\n\
        ES =0000 0000000000000000 00000000 00000000\n";
    const LAPIC: &str = "dumping local APIC state for CPU 1\n\n\
        LVT0\t 0x00010700 active-hi edge  masked                      ExtINT (vec 0)\n\
        LVTT\t 0x000200ec active-hi edge                 periodic     Fixed  (vec 236)\n\
        Timer\t DCR=0x3 (divide by 16) initial_count = 62500 current_count = 1234\n\
        SPIV\t 0x000001ff APIC enabled, focus=off, spurious vec 255\n\
        ISR\t (none)\n\
        IRR\t 236\n";
    const SYSTEM_MAP: &str = "ffffffff81000000 T _text\n\
        ffffffff81e7a0e0 T default_idle\n\
        ffffffff81e7a100 t default_idle_call\n\
        ffffffff82a0c940 D init_task\n";

    #[test]
    fn a_halted_vcpu_is_named_by_its_symbol_and_its_timer() {
        let vcpu = parse(1, REGISTERS, LAPIC);
        assert_eq!(vcpu.rip, Some(0xffff_ffff_81e7_a0eb));
        assert_eq!(vcpu.halted, Some(true));
        assert_eq!(vcpu.interrupts, Some(true));
        let summary = Vcpu {
            thread: Some(('S', 0.5)),
            ..vcpu
        }
        .summary(SYSTEM_MAP);
        assert_eq!(
            summary,
            "vCPU 1 at default_idle+0xb, halted, interrupts on, QEMU thread S after 0.5s of CPU, \
             [LVTT 0x000200ec active-hi edge periodic Fixed (vec 236), Timer DCR=0x3 (divide by \
             16) initial_count = 62500 current_count = 1234], [ISR (none), IRR 236]"
        );
    }

    #[test]
    fn what_the_monitor_did_not_say_is_left_out() {
        let vcpu = parse(0, "", "");
        assert_eq!(vcpu.summary(""), "vCPU 0 at rip unknown");
        // The nearest text symbol at or below, never a data symbol.
        let in_call = symbolise(SYSTEM_MAP, 0xffff_ffff_81e7_a105);
        assert_eq!(in_call.as_deref(), Some("default_idle_call+0x5"));
        assert_eq!(symbolise(SYSTEM_MAP, 0x1000), None);
    }

    #[test]
    fn the_kernel_log_is_found_by_its_symbols_and_read_as_its_text() {
        let map = "ffffffff820c3e80 d log_buf_len\nffffffff820c3e88 d log_buf\n";
        assert_eq!(
            symbol_address(map, "log_buf").unwrap(),
            0xffff_ffff_820c_3e88
        );
        assert_eq!(
            symbol_address(map, "log_buf_len").unwrap(),
            0xffff_ffff_820c_3e80
        );
        let missing = symbol_address(map, "prb").unwrap_err().to_string();
        assert!(missing.contains("no symbol prb"), "{missing}");
        assert_eq!(
            parse_word("ffffffff820c3e88: 0xffff88801e000000\r\n"),
            Some(0xffff_8880_1e00_0000)
        );
        assert_eq!(parse_word("Cannot access memory\r\n"), None);
        let ring = b"\x01\0\0\0\0\0\0\0Linux version 6.12.118\0\0\x02\0\0\0\0\0\0\0smp: Brought up 1 node, 2 CPUs\xff\xffab";
        assert_eq!(
            printable_runs(ring),
            "Linux version 6.12.118\nsmp: Brought up 1 node, 2 CPUs\n"
        );
    }

    #[test]
    fn this_thread_reads_as_running() {
        let pid = std::process::id();
        // SAFETY: gettid has no preconditions.
        let thread = unsafe { libc::gettid() };
        let (state, secs) = thread_state(pid, i64::from(thread)).unwrap();
        assert_eq!(state, 'R');
        assert!(secs >= 0.0);
        assert_eq!(thread_state(pid, -1), None);
    }
}
