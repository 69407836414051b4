//! Hunting races whose both sides are rare: KCSAN watching every access
//! while a loader runs a rare side (an attach, a map write, a detach) in
//! several processes at once.
//!
//! While a scenario that hunts races runs, the agent has KCSAN watch one
//! access in a hundred of the subject's and the BPF core's. That finds a
//! race whose one side runs on every call, because the calls are many. Two
//! sides that each run once per attach, such as two processes' `.validate`
//! bumping the same count, meet a handful of times a scenario, and a
//! watchpoint is on one of them about once in a hundred meetings. A
//! [`RareSide`] makes KCSAN watch every access for as long as it is held,
//! so every meeting is watched:
//!
//! ```no_run
//! use harness_loader::race::RareSide;
//! use harness_loader::Failure;
//! # fn attach_in_every_process() -> Result<(), Failure> { Ok(()) }
//! fn round() -> Result<(), Failure> {
//!     let watched = RareSide::begin()?;
//!     attach_in_every_process()?;
//!     drop(watched); // KCSAN samples as before
//!     Ok(())
//! }
//! ```
//!
//! Every access then waits on its watchpoint, so hold one around the rare
//! side only, never around a program's load: the verifier's accesses are
//! the BPF core's too, and with the whole of `concurrent_attach` watched
//! so densely a run took 76 s instead of 6.
//!
//! A rare side whose other side is every call needs no long watch, only
//! its own accesses watched: [`RareSide::against_every_call`] around each
//! detach made `update_race` see a flag `.unreg` writes and only the
//! kfunc reads in 10 runs of 10 (0 of 10 with one access in 100 watched;
//! the long watches of [`RareSide::begin`] slowed the loop so much that a
//! field the attach writes went from 8 runs of 10 to 2).
//!
//! It raises the odds, not to a certainty: with 4 processes attaching at
//! once 20 times, `concurrent_attach` found a race between two
//! `.validate` calls in 2 runs of 10 (none without it), at 14 s a run
//! instead of 6; with 8 processes, in 4 of 10 at 27 s.

use crate::Failure;
use harness_wire::splat::{KCSAN_SKIP_WATCH, KCSAN_UDELAY_TASK};
use std::path::Path;

/// KCSAN's sampling interval while a [`RareSide`] is held: a watchpoint on
/// every instrumented access.
pub const RARE_SIDE_SKIP_WATCH: u32 = 1;

/// How long each watchpoint holds while a [`RareSide`] is held, in
/// microseconds (randomised down to 0 by KCSAN; 80 by default): long enough
/// to span the gap between two processes reaching the same line after a
/// map write's trampolines, each of which waits for the others' (measured
/// on `concurrent_attach`: 80 found `PLANT_VALIDATE_RACE` in no run of 10,
/// 1000 in 2).
pub const RARE_SIDE_UDELAY_TASK: u32 = 1000;

/// KCSAN watching every access, each for longer, until dropped; then
/// sampling as it did before. Hold one at a time in a VM (one process runs
/// the round, as `concurrent_attach`'s parent does): each puts back what it
/// read, so of two that overlap, the one dropped last puts back the dense
/// values. If the loader is killed while it holds one, the agent puts the
/// boot values back when the scenario's steps end.
#[derive(Debug)]
#[must_use = "KCSAN samples as before as soon as a RareSide is dropped"]
pub struct RareSide {
    /// Each knob written, with the value to put back.
    before: Vec<(String, String)>,
}

/// Whether this kernel has KCSAN (its sampling knobs exist): a loader that
/// hunts races may then run its rare side for longer.
pub fn kcsan_present() -> bool {
    Path::new(KCSAN_SKIP_WATCH).exists()
}

impl RareSide {
    /// Has KCSAN watch every access from now on
    /// ([`RARE_SIDE_SKIP_WATCH`], [`RARE_SIDE_UDELAY_TASK`]). On a kernel
    /// without KCSAN it does nothing; a KCSAN knob that cannot be read or
    /// written is an error naming it (a loader runs as root in the VM).
    pub fn begin() -> Result<RareSide, Failure> {
        RareSide::begin_with(&[
            (KCSAN_SKIP_WATCH, RARE_SIDE_SKIP_WATCH),
            (KCSAN_UDELAY_TASK, RARE_SIDE_UDELAY_TASK),
        ])
    }

    /// Has KCSAN watch every access from now on ([`RARE_SIDE_SKIP_WATCH`]),
    /// each for as long as before: for a rare side whose other side is
    /// every call (a detach against the calls still under way), held
    /// around that side alone, as often as it runs. It costs a detach a
    /// few milliseconds where [`RareSide::begin`]'s long watches cost tens.
    /// On a kernel without KCSAN it does nothing.
    pub fn against_every_call() -> Result<RareSide, Failure> {
        RareSide::begin_with(&[(KCSAN_SKIP_WATCH, RARE_SIDE_SKIP_WATCH)])
    }

    fn begin_with(knobs: &[(&str, u32)]) -> Result<RareSide, Failure> {
        let mut side = RareSide { before: Vec::new() };
        for &(knob, value) in knobs {
            if !Path::new(knob).exists() {
                continue;
            }
            let io = |err: std::io::Error| {
                Failure::other(format!("watching a rare side densely: {knob}: {err}"))
            };
            let before = std::fs::read_to_string(knob).map_err(io)?;
            std::fs::write(knob, value.to_string()).map_err(io)?;
            // Pushed once written, so a later knob's error puts it back.
            side.before
                .push((knob.to_owned(), before.trim().to_owned()));
        }
        Ok(side)
    }
}

impl Drop for RareSide {
    fn drop(&mut self) {
        for (knob, before) in &self.before {
            // A failure here leaves sampling dense until the scenario's
            // steps end, when the agent puts the boot values of both back.
            let _ = std::fs::write(knob, before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn knob(dir: &Path, name: &str, value: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_rare_side_sets_each_knob_and_puts_it_back_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let skip = knob(dir.path(), "skip_watch", "100\n");
        let delay = knob(dir.path(), "udelay_task", "80\n");
        let side = RareSide::begin_with(&[(&skip, 1), (&delay, 1000)]).unwrap();
        assert_eq!(std::fs::read_to_string(&skip).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(&delay).unwrap(), "1000");
        drop(side);
        assert_eq!(std::fs::read_to_string(&skip).unwrap(), "100");
        assert_eq!(std::fs::read_to_string(&delay).unwrap(), "80");
    }

    #[test]
    fn a_kernel_without_kcsan_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("skip_watch");
        let side = RareSide::begin_with(&[(missing.to_str().unwrap(), 1)]).unwrap();
        assert!(side.before.is_empty());
        drop(side);
        assert!(!missing.exists());
    }

    #[test]
    fn a_knob_that_cannot_be_used_is_named_and_the_others_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let skip = knob(dir.path(), "skip_watch", "100");
        // A directory where the second knob should be: reading it fails.
        let unusable = dir.path().join("udelay_task");
        std::fs::create_dir(&unusable).unwrap();
        let knobs = [(skip.as_str(), 1), (unusable.to_str().unwrap(), 1000)];
        let err = RareSide::begin_with(&knobs).unwrap_err();
        assert!(err.message.contains("udelay_task"), "{}", err.message);
        assert_eq!(std::fs::read_to_string(&skip).unwrap(), "100");
    }
}
