//! Memory leaks, as kmemleak finds them (the debug flavour has it): at a
//! scenario's start the agent clears what kmemleak already suspects; at its
//! end, once the subject's module is unloaded (its globals referenced what
//! it allocated until then), it scans, and once what the scenario allocated
//! is old enough for kmemleak to judge and a later scan has run, it
//! reports every object still unreferenced that the scenario's processes
//! allocated, with the stack that allocated it. The module's frames are named from the symbols the
//! agent read while it was loaded: kmemleak prints a bare address for them
//! once it is gone.
//!
//! kmemleak reports an object only when two scans in a row found it
//! unreferenced and unchanged (the first only takes its checksum), and only
//! once it is 5 s old. In a VM that runs several scenarios one after
//! another, the scan after each scenario takes the checksums of what it
//! allocated and judges what the earlier ones did: one scan a scenario, not
//! two, and no idle wait but the last one's ([`LeakQueue`]).

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// kmemleak reports an object only once it is 5 s old (MSECS_MIN_AGE, fixed
/// in the kernel), so that a pointer still in a register is not taken for a
/// leak; the margin covers a scan that starts a tick early.
const MIN_AGE: Duration = Duration::from_millis(5_300);

/// The kernel's jiffies, as `times(2)` gives them (in USER_HZ ticks):
/// kmemleak ages objects in jiffies, and they are not the monotonic clock.
/// The kernel counts a jiffy per timer tick it handles, and a guest under
/// TCG on a busy host loses ticks: in a debug VM on this project's 2-core
/// machine with 6 busy loops, 5 s of the monotonic clock were 3.98 to
/// 4.72 s of jiffies (0.98 to 1.0 with 2 loops, 1.0 idle). Waiting
/// MIN_AGE by the monotonic clock, the agent once scanned before 100
/// leaked objects were old enough for kmemleak and reported no leak (a
/// `vm_debug_kernel` test, in a whole `cargo nextest run` with both cores
/// busy).
#[derive(Debug, Clone, Copy)]
struct Jiffies(u64);

impl Jiffies {
    fn now() -> Self {
        // times(2) with a null buffer returns the ticks since boot, from
        // jiffies; it cannot fail.
        let ticks = unsafe { libc::times(std::ptr::null_mut()) };
        Jiffies(ticks as u64)
    }

    /// How long since `self`, in the kernel's jiffies.
    fn elapsed(self) -> Duration {
        self.elapsed_at(Self::now())
    }

    /// How long from `self` to `later`, in the kernel's jiffies.
    fn elapsed_at(self, later: Jiffies) -> Duration {
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticks = later.0.saturating_sub(self.0);
        Duration::from_millis(ticks * 1000 / per_second)
    }
}

/// A scenario's leak check, on a kernel with kmemleak.
pub(crate) struct LeakCheck {
    /// Objects allocated by this pid and later ones are the scenario's.
    first_pid: u32,
    /// The subject's module's symbols, read while it was loaded.
    module_symbols: Vec<(u64, String)>,
}

impl LeakCheck {
    /// Clears kmemleak's suspects; None on a kernel without kmemleak.
    pub(crate) fn start() -> Result<Option<Self>> {
        if !Path::new(KMEMLEAK).exists() {
            return Ok(None);
        }
        write("clear")?;
        Ok(Some(LeakCheck {
            first_pid: last_pid()? + 1,
            module_symbols: Vec::new(),
        }))
    }

    /// Reads the symbols of the module `name` from /proc/kallsyms.
    pub(crate) fn module_loaded(&mut self, name: &str) {
        let tag = format!("[{name}]");
        let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        self.module_symbols = kallsyms
            .lines()
            .filter(|line| line.ends_with(&tag))
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let address = u64::from_str_radix(words.next()?, 16).ok()?;
                let name = words.nth(1)?;
                Some((address, format!("{name} {tag}")))
            })
            .collect();
        self.module_symbols.sort();
    }

    /// The reports in kmemleak's file of objects this scenario's processes
    /// allocated (pids `first_pid..=last_pid`), the module's frames named.
    fn leaks_in(&self, text: &str, last_pid: u32) -> Vec<String> {
        reports(text)
            .into_iter()
            .filter(|report| {
                pid_of(report).is_some_and(|pid| (self.first_pid..=last_pid).contains(&pid))
            })
            .map(|report| self.name_frames(&report))
            .collect()
    }

    /// The module's frames, bare addresses (`0xffffffffc0001234`, after
    /// `[<...>] ` before 6.x), as `symbol+0x34 [module]`.
    fn name_frames(&self, report: &str) -> String {
        let mut named = String::new();
        for line in report.lines() {
            let frame = line.trim();
            let frame = frame.rsplit_once("] ").map_or(frame, |(_, after)| after);
            let address = frame
                .strip_prefix("0x")
                .and_then(|hex| u64::from_str_radix(hex, 16).ok());
            match address.and_then(|address| self.symbol_at(address)) {
                Some(symbol) => named.push_str(&line.replace(frame, &symbol)),
                None => named.push_str(line),
            }
            named.push('\n');
        }
        named
    }

    fn symbol_at(&self, address: u64) -> Option<String> {
        let index = self
            .module_symbols
            .partition_point(|(start, _)| *start <= address);
        let (start, name) = self.module_symbols.get(index.checked_sub(1)?)?;
        let (symbol, module) = name.split_once(' ')?;
        Some(format!("{symbol}+{:#x} {module}", address - start))
    }
}

/// An ended scenario's leak check, waiting for a scan to judge it.
struct Pending {
    /// Who asked: the runner's name for the scenario.
    id: usize,
    check: LeakCheck,
    /// The last pid the scenario could have made.
    last_pid: u32,
    /// When the scenario last allocated (its module unloaded).
    ended: Jiffies,
    /// Whether a scan has run since it ended (and took its objects' checksums).
    checksummed: bool,
    /// Its reports so far: the next scenario's `clear` hides reported objects.
    found: Vec<String>,
}

/// What a scan settled: each scenario's leaks, or why the check failed.
pub(crate) type Settled = Vec<(usize, Result<Vec<String>, String>)>;

/// The leak checks of ended scenarios, oldest first, each settled by the
/// first scan that both follows its checksum scan and starts once its
/// objects are [`MIN_AGE`] old.
#[derive(Default)]
pub(crate) struct LeakQueue {
    pending: VecDeque<Pending>,
}

impl LeakQueue {
    /// Whether no check waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether the check of scenario `id` waits.
    pub(crate) fn waits_for(&self, id: usize) -> bool {
        self.pending.iter().any(|pending| pending.id == id)
    }

    /// Queues a scenario's check as it ends (after its module's unload).
    pub(crate) fn push(&mut self, id: usize, check: LeakCheck) -> Result<()> {
        let last_pid = last_pid()?;
        if last_pid < check.first_pid {
            // Pids wrapped around: the scenario's are no longer one range.
            anyhow::bail!(
                "the kernel's pids wrapped around during the scenario (from {} to {last_pid}), \
                 so its allocations cannot be told from others'; run it in a fresh VM",
                check.first_pid
            );
        }
        self.pending.push_back(Pending {
            id,
            check,
            last_pid,
            ended: Jiffies::now(),
            checksummed: false,
            found: Vec::new(),
        });
        Ok(())
    }

    /// One scan: it takes the checksums of the newest checks' objects and
    /// settles the checks it can.
    pub(crate) fn scan(&mut self) -> Settled {
        let started = Jiffies::now();
        let text = write("scan").and_then(|()| {
            std::fs::read_to_string(KMEMLEAK)
                .with_context(|| format!("reading {KMEMLEAK} after a scan"))
        });
        let mut settled = Vec::new();
        for pending in &mut self.pending {
            if let Ok(text) = &text {
                for leak in pending.check.leaks_in(text, pending.last_pid) {
                    if !pending.found.contains(&leak) {
                        pending.found.push(leak);
                    }
                }
            }
        }
        while let Some(oldest) = self.pending.front() {
            let judged = oldest.checksummed && oldest.ended.elapsed_at(started) >= MIN_AGE;
            if text.is_ok() && !judged {
                break;
            }
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            let outcome = match &text {
                Ok(_) => Ok(oldest.found),
                Err(err) => Err(format!("{err:#}")),
            };
            settled.push((oldest.id, outcome));
        }
        for pending in &mut self.pending {
            pending.checksummed = true;
        }
        settled
    }

    /// Settles every check: a checksum scan for the newest when it has
    /// had none, the wait until its objects are old enough, a scan.
    pub(crate) fn settle_all(&mut self) -> Settled {
        let mut settled = Vec::new();
        while let Some(newest) = self.pending.back() {
            // By jiffies, which may run slow: sleep, then look again.
            if newest.checksummed {
                loop {
                    let age = newest.ended.elapsed();
                    if age >= MIN_AGE {
                        break;
                    }
                    std::thread::sleep(MIN_AGE - age);
                }
            }
            settled.extend(self.scan());
        }
        settled
    }
}

fn write(command: &str) -> Result<()> {
    std::fs::write(KMEMLEAK, command).map_err(|err| {
        // kmemleak refuses every command once it has turned itself off.
        let why = if err.kind() == std::io::ErrorKind::PermissionDenied {
            ": kmemleak is off, and the kernel log's `kmemleak:` lines say why \
             (\"Memory pool empty\": raise CONFIG_DEBUG_KMEMLEAK_MEM_POOL_SIZE)"
        } else {
            ""
        };
        anyhow::Error::new(err).context(format!("writing {command} to {KMEMLEAK}{why}"))
    })
}

/// The pid created last (the last field of /proc/loadavg).
fn last_pid() -> Result<u32> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    loadavg
        .split_whitespace()
        .last()
        .and_then(|pid| pid.parse().ok())
        .with_context(|| format!("no last pid in /proc/loadavg: {loadavg:?}"))
}

/// Each `unreferenced object` report of kmemleak's file, whole.
fn reports(text: &str) -> Vec<String> {
    let mut reports: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("unreferenced object") {
            reports.push(String::new());
        }
        if let Some(report) = reports.last_mut() {
            report.push_str(line);
            report.push('\n');
        }
    }
    reports
}

/// The pid that allocated a report's object: `  comm "x", pid 123, jiffies ...`.
fn pid_of(report: &str) -> Option<u32> {
    let (_, after) = report.split_once(", pid ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
unreferenced object 0xffff888003b1c0a0 (size 32):
  comm \"init\", pid 1, jiffies 4294892000
  backtrace (crc 0):
    [<ffffffff81234567>] kmemleak_alloc+0x4a/0x80
unreferenced object 0xffff888003b1c100 (size 22):
  comm \"vm-1234\", pid 87, jiffies 4294895000
  hex dump (first 22 bytes):
    48 65 6c 6c 6f 20 66 72 6f 6d 20 75 73 65 72 73  Hello from users
  backtrace (crc 5d2c61fa):
    [<ffffffff81234567>] kmemleak_alloc+0x4a/0x80
    [<ffffffff81345678>] kmemdup_noprof+0x24/0x60
    [<ffffffffc0001234>] 0xffffffffc0001234
    [<ffffffff81456789>] proc_reg_write+0x9a/0xe0
";

    /// 6.12's form: frames without the `[<address>]` prefix.
    const FILE_612: &str = "\
unreferenced object 0xffff888008aa8b00 (size 32):
  comm \"sh\", pid 43, jiffies 4294893589
  backtrace (crc 33c9ba40):
    __kmalloc_node_track_caller_noprof+0x26c/0x420
    kmemdup_noprof+0x20/0x40
    0xffffffffc000142f
    proc_reg_write+0x1a5/0x270
";

    #[test]
    fn an_age_is_counted_in_the_kernels_ticks() {
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let (from, to) = (Jiffies(1_000), Jiffies(1_000 + 53 * per_second / 10));
        assert_eq!(from.elapsed_at(to), MIN_AGE);
        // A clock that went no further, or back, is no age.
        assert_eq!(to.elapsed_at(from), Duration::ZERO);
        assert!(Jiffies::now().0 > 0, "times(2) gave no ticks");
    }

    #[test]
    fn a_bare_module_frame_is_named_in_either_form() {
        let check = LeakCheck {
            first_pid: 40,
            module_symbols: vec![(0xffffffffc0001400, "trigger_write [demo_mod]".into())],
        };
        let named = check.name_frames(&reports(FILE_612)[0]);
        assert!(
            named.contains("    trigger_write+0x2f [demo_mod]\n"),
            "{named}"
        );
        assert!(named.contains("kmemdup_noprof+0x20/0x40"));
    }

    #[test]
    fn only_the_scenarios_leaks_are_kept_with_the_modules_frames_named() {
        let check = LeakCheck {
            first_pid: 80,
            module_symbols: vec![
                (0xffffffffc0001000, "planted_leak [demo_mod]".into()),
                (0xffffffffc0001200, "trigger_write [demo_mod]".into()),
            ],
        };
        // A later scenario's pids (87 here, for one that ended at 86) are its own.
        assert!(check.leaks_in(FILE, 86).is_empty());
        let kept = check.leaks_in(FILE, 90);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].contains("(size 22)"));
        assert!(
            kept[0].contains("[<ffffffffc0001234>] trigger_write+0x34 [demo_mod]"),
            "{}",
            kept[0]
        );
        assert!(kept[0].contains("proc_reg_write+0x9a/0xe0"));
    }
}
