//! The loader's concurrent building blocks: triggers racing attach and
//! detach, skeletons freed while calls may be in flight with rmmod racing
//! them, and several processes attaching at the same moment.

use std::io::{BufRead, BufReader, Write};
use std::mem::MaybeUninit;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use harness::loader::race::{self, RareSide};
use harness::loader::{report_programs, Failure};
use harness::{module, Errno};

use harness::loader::struct_ops::{attach, errno_name, map, update};
use libbpf_rs::Object;

use super::contract_cases;
use super::ops::{self as struct_ops_loader, AttachError, TriggerError};
use crate::contract::{
    race_member, ConcurrentAttachReport, MemberStormReport, ReleaseRaceReport, Report,
    StressReport, TriggerStormReport, UpdateRaceReport,
};

/// Threads that write to the trigger file until `stop`, each returning its count.
fn start_triggers(
    threads: u32,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Result<u64, TriggerError>>> {
    (0..threads)
        .map(|_| {
            let stop = Arc::clone(stop);
            thread::spawn(move || {
                let mut count = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    struct_ops_loader::trigger("stress")?;
                    count += 1;
                }
                Ok(count)
            })
        })
        .collect()
}

/// Stops the trigger threads and adds up their counts.
fn join_triggers(
    stop: &AtomicBool,
    triggers: Vec<JoinHandle<Result<u64, TriggerError>>>,
) -> Result<u64, Failure> {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for handle in triggers {
        match handle.join() {
            Ok(Ok(count)) => total += count,
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => return Err(Failure::other("a trigger thread panicked".to_owned())),
        }
    }
    Ok(total)
}

/// Triggers from `threads` threads while this one attaches and detaches one skeleton.
pub fn stress(threads: u32, duration: Duration) -> Result<(), Failure> {
    let mut storage = MaybeUninit::uninit();
    let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
    let stop = Arc::new(AtomicBool::new(false));
    let triggers = start_triggers(threads, &stop);
    let deadline = Instant::now() + duration;
    let mut cycles = 0u64;
    let mut attach_failure = None;
    while Instant::now() < deadline {
        match struct_ops_loader::attach(&mut skel) {
            Ok(attachment) => {
                thread::sleep(Duration::from_millis(5));
                drop(attachment);
                cycles += 1;
            }
            Err(err) => {
                attach_failure = Some(Failure::from(err));
                break;
            }
        }
    }
    let triggered = join_triggers(&stop, triggers)?;
    if let Some(failure) = attach_failure {
        return Err(failure);
    }
    let report = StressReport {
        cycles,
        threads: threads.into(),
        triggers: triggered,
    };
    println!("{}", report.render());
    Ok(())
}

/// Triggers from `threads` threads while this one attaches `ops_b_kfunc`,
/// switches its link to `ops_a` and back `updates` times in all and
/// detaches, cycle after cycle until `duration` is over: the module's .reg,
/// .update and .unreg as often as they go, each racing calls, the kfunc's
/// among them.
pub fn update_race(threads: u32, updates: u32, duration: Duration) -> Result<(), Failure> {
    let mut object = contract_cases::load(&["ops_a", UPDATE_RACE_KFUNC])?;
    let ((cycles, updates), triggers) = while_triggering(threads, || {
        attach_update_detach_until(&mut object, updates, Instant::now() + duration)
    })?;
    let report = UpdateRaceReport {
        cycles,
        updates,
        threads: threads.into(),
        triggers,
    };
    println!("{}", report.render());
    Ok(())
}

/// The implementation `update_race` attaches and (after an even number of
/// updates) detaches: one that calls the kfunc, so that what only the
/// kfunc reads races .reg and .unreg, whose writes come just after calls
/// start reaching it and just after they stop.
const UPDATE_RACE_KFUNC: &str = "ops_b_kfunc";

/// On a kernel with KCSAN, `update_race` runs at least this many cycles,
/// past its deadline if need be: the cycles, not the seconds, find a race.
/// Beside two busy loops a run made 50-180 cycles in its 3 s, and a field
/// only the kfunc reads was found in 4 runs of 10, against 8 and 10 of 10
/// at 300-480 cycles on an idle host.
const UPDATE_RACE_MIN_CYCLES_WITH_KCSAN: u64 = 300;

/// Attach `ops_b_kfunc`, `updates` link updates alternating `ops_a` and
/// `ops_b_kfunc`, detach, until `deadline` (and on a kernel with KCSAN
/// [`UPDATE_RACE_MIN_CYCLES_WITH_KCSAN`] times at least); returns the cycles and the
/// updates done. Each detach is watched densely
/// ([`RareSide::against_every_call`]): `.unreg` races only the calls
/// already under way as it runs, a window one access in 100 watched
/// rarely catches.
fn attach_update_detach_until(
    object: &mut Object,
    updates: u32,
    deadline: Instant,
) -> Result<(u64, u64), Failure> {
    let (mut cycles, mut updated) = (0u64, 0u64);
    let floor = match race::kcsan_present() {
        true => UPDATE_RACE_MIN_CYCLES_WITH_KCSAN,
        false => 0,
    };
    while Instant::now() < deadline || cycles < floor {
        let link = attach(object, UPDATE_RACE_KFUNC)?;
        for round in 0..updates {
            let to = if round % 2 == 0 {
                "ops_a"
            } else {
                UPDATE_RACE_KFUNC
            };
            update(&link, &map(object, to)?).map_err(|errno| {
                Failure::other(format!("updating the link to {to}: {}", errno_name(errno)))
            })?;
            updated += 1;
        }
        let watched = RareSide::against_every_call()?;
        drop(link);
        drop(watched);
        cycles += 1;
    }
    Ok((cycles, updated))
}

/// Runs `work` while `threads` threads trigger; returns what it returned
/// and the triggers' count. The triggers stop and are joined whether or not
/// `work` failed; its failure comes first.
fn while_triggering<T>(
    threads: u32,
    work: impl FnOnce() -> Result<T, Failure>,
) -> Result<(T, u64), Failure> {
    let stop = Arc::new(AtomicBool::new(false));
    let triggers = start_triggers(threads, &stop);
    let worked = work();
    let triggered = join_triggers(&stop, triggers);
    Ok((worked?, triggered?))
}

/// Triggers from `threads` threads for `duration`, nothing attached: the
/// module's own path under concurrency, as fast as it goes.
pub fn trigger_storm(threads: u32, duration: Duration) -> Result<(), Failure> {
    let ((), triggered) = while_triggering(threads, || {
        thread::sleep(duration);
        Ok(())
    })?;
    let report = TriggerStormReport {
        threads: threads.into(),
        triggers: triggered,
    };
    println!("{}", report.render());
    Ok(())
}

/// Triggers from `threads` threads for `duration` while this one attaches
/// `ops_every`, holds it for [`MEMBER_STORM_HOLD`] and detaches, cycle
/// after cycle: each of the module's call paths (every member, the kfunc,
/// the sleepable member outside the RCU section) under concurrency,
/// racing the module's .reg and .unreg.
pub fn member_storm(threads: u32, duration: Duration) -> Result<(), Failure> {
    let mut object = contract_cases::load(&["ops_every"])?;
    let (cycles, triggers) = while_triggering(threads, || {
        attach_detach_until(&mut object, "ops_every", Instant::now() + duration)
    })?;
    report_programs(&object);
    let report = MemberStormReport {
        cycles,
        threads: threads.into(),
        triggers,
    };
    println!("{}", report.render());
    Ok(())
}

/// How long `member_storm` keeps `ops_every` attached each cycle. On the
/// race kernel a cycle's attach and detach take about 7 ms more, so
/// with 2 ms about half the triggers go through every member and .reg
/// and .unreg run over 100 times a second (with 20 ms held, 54 cycles in
/// 2 s, and a flag written in .unreg and read on every call was found in
/// 2 runs of 10, not 7).
const MEMBER_STORM_HOLD: Duration = Duration::from_millis(2);

/// Attaches `name`, holds it, detaches, until `deadline`; returns the cycles.
fn attach_detach_until(object: &mut Object, name: &str, deadline: Instant) -> Result<u64, Failure> {
    let mut cycles = 0u64;
    while Instant::now() < deadline {
        let link = attach(object, name)?;
        thread::sleep(MEMBER_STORM_HOLD);
        drop(link);
        cycles += 1;
    }
    Ok(cycles)
}

/// Triggers from `threads` threads while this one opens, loads, attaches,
/// detaches and drops fresh skeletons, so struct_ops maps are freed while
/// calls may be in flight; meanwhile rmmod is attempted, but only while a
/// map of the module exists, so every attempt must be refused.
pub fn release_race(threads: u32, duration: Duration) -> Result<(), Failure> {
    let map_exists = Arc::new(RwLock::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let rmmod = {
        let (map_exists, stop, refused) = (map_exists.clone(), stop.clone(), refused.clone());
        thread::spawn(move || attempt_rmmod(&map_exists, &stop, &refused))
    };
    let triggers = start_triggers(threads, &stop);
    let cycles = free_skeletons_until(Instant::now() + duration, &map_exists);
    let triggered = join_triggers(&stop, triggers);
    let rmmod = rmmod
        .join()
        .unwrap_or_else(|_| Err(Failure::other("the rmmod thread panicked".to_owned())));
    let (cycles, triggers) = (cycles?, triggered?);
    rmmod?;
    let report = ReleaseRaceReport {
        cycles,
        threads: threads.into(),
        triggers,
        rmmod_refused: refused.load(Ordering::Relaxed),
    };
    println!("{}", report.render());
    Ok(())
}

/// At least this many cycles, past the deadline if need be: on the race
/// kernel, sampling densely on a loaded host, one load can take most of the
/// run, and a single 20 ms window saw no trigger reach the ops.
const MIN_CYCLES: u64 = 3;

/// Load, attach, detach, drop, until `deadline` and at least [`MIN_CYCLES`]
/// times; returns the number of cycles.
fn free_skeletons_until(deadline: Instant, map_exists: &RwLock<bool>) -> Result<u64, Failure> {
    let mut cycles = 0;
    while Instant::now() < deadline || cycles < MIN_CYCLES {
        let mut storage = MaybeUninit::uninit();
        let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
        set(map_exists, true);
        let attached = struct_ops_loader::attach(&mut skel);
        // Long enough for triggers to be inside the ops when the detach comes.
        thread::sleep(Duration::from_millis(20));
        drop(attached?);
        // No rmmod attempt is under way once this returns, and none starts
        // until the next skeleton is loaded.
        set(map_exists, false);
        drop(skel);
        cycles += 1;
    }
    Ok(cycles)
}

fn set(flag: &RwLock<bool>, value: bool) {
    *flag
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = value;
}

/// rmmod bpf_testmod, over and over while a map exists: the map holds a
/// reference on the module, so each attempt must fail with EAGAIN or EBUSY.
fn attempt_rmmod(
    map_exists: &RwLock<bool>,
    stop: &AtomicBool,
    refused: &AtomicU64,
) -> Result<(), Failure> {
    while !stop.load(Ordering::Relaxed) {
        let guard = map_exists
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *guard {
            match module::rmmod(super::paths::MODULE_NAME) {
                Ok(()) => {
                    return Err(Failure::other(
                        "rmmod succeeded while a struct_ops map of the module existed".to_owned(),
                    ))
                }
                Err(Errno::EAGAIN | Errno::EBUSY) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                Err(errno) => {
                    let errno = std::io::Error::from(errno);
                    return Err(Failure::other(format!("rmmod failed oddly: {errno}")));
                }
            }
        }
        drop(guard);
        thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// One `race-member` process, driven over its stdin and stdout.
struct Member {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Member {
    fn spawn() -> Result<Self, Failure> {
        let mut child = harness::loader::reexec(crate::SUBJECT.name)
            .map_err(|err| Failure::other(format!("finding my own binary: {err}")))?
            .arg("race-member")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|err| Failure::other(format!("starting a race member: {err}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Member {
            child,
            stdin,
            stdout,
        })
    }

    fn send(&mut self, command: &str) -> Result<(), Failure> {
        writeln!(self.stdin, "{command}")
            .map_err(|err| Failure::other(format!("telling a race member to {command}: {err}")))
    }

    fn answer(&mut self) -> Result<String, Failure> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) | Err(_) => Err(Failure::other(
                "a race member ended without answering (its error is above)".to_owned(),
            )),
            Ok(_) => Ok(line.trim_end().to_owned()),
        }
    }
}

/// `processes` members attach at once, `rounds` times, each with a fresh
/// map (see [`race_member`]); exactly one must register each round, and
/// every other must be refused with EEXIST. The attaches are a rare side
/// on both sides of a race (two `.validate` or `.reg` calls): KCSAN
/// watches every access while they run ([`RareSide`]).
pub fn concurrent_attach(processes: u32, rounds: u32) -> Result<(), Failure> {
    let mut members = (0..processes)
        .map(|_| Member::spawn())
        .collect::<Result<Vec<_>, _>>()?;
    for member in &mut members {
        expect_answer(member, race_member::READY)?;
    }
    let mut report = ConcurrentAttachReport {
        rounds: rounds.into(),
        processes: processes.into(),
        attached: 0,
        refused: 0,
    };
    for round in 1..=rounds {
        let watched = RareSide::begin()?;
        let (attached, refused) = attach_at_once(&mut members)?;
        drop(watched);
        if attached != 1 {
            return Err(Failure::other(format!(
                "round {round}: {attached} of {processes} processes attached at once"
            )));
        }
        report.attached += attached;
        report.refused += refused;
        if round == rounds {
            // Each member detaches as its stdin closes, below, without
            // loading a skeleton for a round that will not come.
            break;
        }
        for member in &mut members {
            member.send(race_member::DETACH)?;
        }
        for member in &mut members {
            expect_answer(member, race_member::DETACHED)?;
        }
    }
    for member in members {
        let Member {
            mut child, stdin, ..
        } = member;
        drop(stdin);
        let status = child
            .wait()
            .map_err(|err| Failure::other(err.to_string()))?;
        if !status.success() {
            return Err(Failure::other(format!(
                "a race member exited with {status}"
            )));
        }
    }
    println!("{}", report.render());
    Ok(())
}

/// Tells every member to attach, as close together as the writes go, and
/// counts (attached, refused).
fn attach_at_once(members: &mut [Member]) -> Result<(u64, u64), Failure> {
    for member in members.iter_mut() {
        member.send(race_member::ATTACH)?;
    }
    let (mut attached, mut refused) = (0, 0);
    for member in members.iter_mut() {
        match member.answer()?.as_str() {
            race_member::ATTACHED => attached += 1,
            race_member::REFUSED => refused += 1,
            other => return Err(Failure::other(format!("a race member said: {other}"))),
        }
    }
    Ok((attached, refused))
}

fn expect_answer(member: &mut Member, expected: &str) -> Result<(), Failure> {
    let answer = member.answer()?;
    if answer != expected {
        return Err(Failure::other(format!(
            "a race member said {answer:?}, expected {expected:?}"
        )));
    }
    Ok(())
}

/// Attaches and detaches on command until stdin closes, a fresh skeleton
/// each round: its struct_ops map is written at attach (which runs the
/// module's `.validate`) and registered (`.reg`), so every member's attach
/// runs both, at once with the others', each round; a map once written
/// cannot be written again. Each skeleton is loaded before the member
/// says it is ready for the next round (READY, then DETACHED), so the
/// members' attaches start together rather than after loads of varying
/// length.
pub fn race_member() -> Result<(), Failure> {
    let mut lines = std::io::stdin().lock().lines();
    let mut next_line = move || match lines.next() {
        None => Ok(None),
        Some(Ok(line)) => Ok(Some(line)),
        Some(Err(err)) => Err(Failure::other(format!("reading a command: {err}"))),
    };
    let mut ready = race_member::READY;
    loop {
        let mut storage = MaybeUninit::uninit();
        let mut skel = struct_ops_loader::open_and_load(&mut storage)?;
        println!("{ready}");
        ready = race_member::DETACHED;
        let held = match next_line()?.as_deref() {
            None => return Ok(()),
            Some(race_member::ATTACH) => match struct_ops_loader::attach(&mut skel) {
                Ok(attachment) => {
                    println!("{}", race_member::ATTACHED);
                    Some(attachment)
                }
                Err(AttachError::AlreadyAttached) => {
                    println!("{}", race_member::REFUSED);
                    None
                }
                Err(err) => return Err(err.into()),
            },
            Some(other) => return Err(Failure::other(format!("unknown command {other:?}"))),
        };
        match next_line()?.as_deref() {
            None => return Ok(()),
            // Detached before the next skeleton loads and DETACHED is said.
            Some(race_member::DETACH) => drop(held),
            Some(other) => return Err(Failure::other(format!("unknown command {other:?}"))),
        }
    }
}
