//! netem, the qdisc that delays and drops an interface's outgoing packets,
//! as a scenario asks for it: [`Netem`] says what (`Netem::on("lo")
//! .delay(..).loss_percent(..)`), `Context::netem` installs it with
//! `tc qdisc replace` as a step, and the Context removes it when the
//! scenario ends, however it ends. On loopback every packet leaves through
//! `lo` once, so the delay is half the round trip and the loss hits data
//! and ACKs alike: what makes a congestion control's loss members
//! (ssthresh, set_state) run; a reordering makes TCP retransmit what was
//! not lost and undo it, which runs undo_cwnd.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};
use harness_wire::protocol::Outcome;

use super::exec::PATH;
use super::loader::{run_to_end, Finished};

/// How long `tc` may take: it returns at once, unless the kernel hangs.
const TC_LIMIT: Duration = Duration::from_secs(10);

/// The kernel options netem needs, for the fix a failure names.
pub(crate) const NETEM_OPTIONS: &str = "CONFIG_NET_SCHED=y and CONFIG_NET_SCH_NETEM=y";

/// A netem qdisc for one interface: its delay and its random loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Netem {
    device: String,
    delay: Duration,
    loss_percent: f32,
    reorder_every: Option<u32>,
}

impl Netem {
    /// netem on `device` (`lo`), adding nothing yet.
    pub fn on(device: &str) -> Self {
        Netem {
            device: device.to_owned(),
            delay: Duration::ZERO,
            loss_percent: 0.0,
            reorder_every: None,
        }
    }

    /// Every packet waits `delay` before it leaves (a microsecond's precision).
    pub fn delay(self, delay: Duration) -> Self {
        Netem { delay, ..self }
    }

    /// Each packet is dropped with this probability, in percent (0 to 100).
    pub fn loss_percent(self, percent: f32) -> Self {
        Netem {
            loss_percent: percent,
            ..self
        }
    }

    /// Every `n`th packet leaves at once, ahead of those still delayed
    /// (`reorder 100% gap N`; it needs a delay). TCP takes the reordering
    /// for a loss, retransmits, and undoes its reaction once the original
    /// arrives (a DSACK or the echoed timestamp says so): what runs a
    /// congestion control's undo_cwnd, which a loss alone never does. Every
    /// `n`th, not a random share, so that it happens in every run.
    pub fn reorder_every(self, n: u32) -> Self {
        Netem {
            reorder_every: Some(n),
            ..self
        }
    }

    /// The interface it is for.
    pub(crate) fn device(&self) -> &str {
        &self.device
    }

    /// What `tc` is given, after its name: `qdisc replace dev lo root
    /// netem delay 5ms loss 2%`; the same words every run.
    pub(crate) fn words(&self) -> Result<Vec<String>> {
        check_device(&self.device)?;
        if !(0.0..=100.0).contains(&self.loss_percent) {
            bail!(
                "netem's loss on {} is {}%: a percentage is from 0 to 100",
                self.device,
                self.loss_percent
            );
        }
        let mut words = qdisc_words("replace", &self.device);
        words.push("netem".to_owned());
        if !self.delay.is_zero() {
            words.extend(["delay".to_owned(), tc_time(self.delay)]);
        }
        if self.loss_percent > 0.0 {
            words.extend(["loss".to_owned(), format!("{}%", self.loss_percent)]);
        }
        if let Some(n) = self.reorder_every {
            self.check_reorder(n)?;
            words.extend(["reorder", "100%", "gap"].map(str::to_owned));
            words.push(n.to_string());
        }
        Ok(words)
    }

    /// netem reorders only what it delays, and every packet is not a gap.
    fn check_reorder(&self, n: u32) -> Result<()> {
        if self.delay.is_zero() {
            bail!(
                "netem on {} reorders only delayed packets: give it a delay",
                self.device
            );
        }
        if n < 2 {
            bail!(
                "netem on {}: every {n}th packet is no reordering; say every 2nd or more",
                self.device
            );
        }
        Ok(())
    }
}

/// `qdisc del dev DEVICE root`: the interface's default qdisc again.
pub(crate) fn removal_words(device: &str) -> Result<Vec<String>> {
    check_device(device)?;
    Ok(qdisc_words("del", device))
}

fn qdisc_words(verb: &str, device: &str) -> Vec<String> {
    ["qdisc", verb, "dev", device, "root"]
        .map(str::to_owned)
        .to_vec()
}

/// An interface name as the kernel takes it (IFNAMSIZ, no separators), so
/// that the words are what a shell would pass too.
fn check_device(device: &str) -> Result<()> {
    let fits = !device.is_empty()
        && device.len() < 16
        && device
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !fits {
        bail!("{device:?} is not an interface name (up to 15 letters, digits, '-', '_', '.')");
    }
    Ok(())
}

/// A time as tc reads it: `5ms`, or `250us` below a whole millisecond.
fn tc_time(time: Duration) -> String {
    let micros = time.as_micros();
    if micros.is_multiple_of(1000) {
        format!("{}ms", micros / 1000)
    } else {
        format!("{micros}us")
    }
}

/// `tc WORDS`, run to its end; a missing `tc` is a failed outcome that
/// names the package, not an error, so it is a step like any other.
pub(crate) fn run_tc(words: &[String]) -> Result<Finished> {
    run_tc_from(words, PATH)
}

/// [`run_tc`], finding `tc` in `path`.
fn run_tc_from(words: &[String], path: &str) -> Result<Finished> {
    let Some(tc) = find_in_path("tc", path) else {
        return Ok(Finished {
            outcome: Outcome::Failed {
                reason: format!(
                    "no tc in the guest (PATH={path}): the guest's root is the host's, so \
                     install iproute2 on the host (apt-get install iproute2)"
                ),
            },
            stdout: String::new(),
            stderr: String::new(),
            duration: Duration::ZERO,
        });
    };
    let mut command = Command::new(tc);
    command
        .args(words)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_to_end(command, TC_LIMIT, &format!("{}s", TC_LIMIT.as_secs()))
}

/// The first executable `name` in the `:`-separated directories of `path`.
fn find_in_path(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    path.split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Why tc failed, in terms of the fix, when its words say: the kernel
/// lacks the qdisc (`Specified qdisc kind is unknown`) or qdiscs at all
/// (rtnetlink has no handler for them: `Operation not supported`).
pub(crate) fn explain(stderr: &str) -> Option<String> {
    let lacks = stderr.contains("qdisc kind is unknown")
        || stderr.contains("Unknown qdisc")
        || stderr.contains("Operation not supported");
    lacks.then(|| {
        format!(
            "this kernel has no netem qdisc: build it with {NETEM_OPTIONS} (the harness's \
             default kernel has them: harness/host/images/tcp.config)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_are_the_same_every_run() {
        let netem = Netem::on("lo")
            .delay(Duration::from_millis(5))
            .loss_percent(2.0);
        assert_eq!(
            netem.words().unwrap().join(" "),
            "qdisc replace dev lo root netem delay 5ms loss 2%"
        );
        let fine = Netem::on("lo")
            .delay(Duration::from_micros(1500))
            .loss_percent(0.5);
        assert_eq!(
            fine.words().unwrap().join(" "),
            "qdisc replace dev lo root netem delay 1500us loss 0.5%"
        );
        assert_eq!(
            Netem::on("lo").words().unwrap().join(" "),
            "qdisc replace dev lo root netem"
        );
        let reordered = Netem::on("lo")
            .delay(Duration::from_millis(5))
            .reorder_every(10);
        assert_eq!(
            reordered.words().unwrap().join(" "),
            "qdisc replace dev lo root netem delay 5ms reorder 100% gap 10"
        );
        assert_eq!(
            removal_words("lo").unwrap().join(" "),
            "qdisc del dev lo root"
        );
    }

    #[test]
    fn a_bad_percentage_or_device_is_refused_before_tc_runs() {
        let over = Netem::on("lo").loss_percent(150.0).words().unwrap_err();
        assert!(over.to_string().contains("from 0 to 100"), "{over}");
        assert!(Netem::on("lo").loss_percent(f32::NAN).words().is_err());
        let device = Netem::on("lo; reboot").words().unwrap_err();
        assert!(
            device.to_string().contains("not an interface name"),
            "{device}"
        );
        assert!(removal_words("").is_err());
        let undelayed = Netem::on("lo").reorder_every(10).words().unwrap_err();
        assert!(
            undelayed.to_string().contains("give it a delay"),
            "{undelayed}"
        );
        let delayed = Netem::on("lo").delay(Duration::from_millis(1));
        assert!(delayed.reorder_every(1).words().is_err());
    }

    #[test]
    fn tc_is_found_only_where_it_is() {
        let dir = std::env::temp_dir().join(format!("netem-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = format!("{}:/nonexistent", dir.display());
        assert_eq!(find_in_path("tc", &path), None);
        let tc = dir.join("tc");
        std::fs::write(&tc, "#!/bin/sh\n").unwrap();
        assert_eq!(find_in_path("tc", &path), None, "not executable");
        std::fs::set_permissions(&tc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert_eq!(find_in_path("tc", &path), Some(tc));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_tc_the_step_fails_naming_iproute2() {
        let words = Netem::on("lo").words().unwrap();
        let ran = run_tc_from(&words, "/nonexistent").unwrap();
        match ran.outcome {
            Outcome::Failed { reason } => assert!(reason.contains("iproute2"), "{reason}"),
            other => panic!("expected a failed outcome, got {other}"),
        }
    }

    #[test]
    fn a_kernel_without_netem_is_named_by_its_option() {
        // What tc says on a kernel without sch_netem (seen on one).
        let hint = explain("Error: Specified qdisc kind is unknown.\n").unwrap();
        assert!(hint.contains("CONFIG_NET_SCH_NETEM"), "{hint}");
        assert!(explain("RTNETLINK answers: Operation not supported\n").is_some());
        assert_eq!(
            explain("Error: Cannot delete qdisc with handle of zero.\n"),
            None
        );
    }
}
