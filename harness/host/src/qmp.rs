//! QMP, QEMU's control socket (through the qapi crate): the VM's run state,
//! its vCPUs, pausing and ending it. Its events come on a second monitor,
//! read by `vm::events`.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use qapi::{qmp, Qmp, Stream};

use crate::qemu::QemuProcess;
use harness_wire::wait::{wait_until, Poll};

type QmpStream = Stream<BufReader<UnixStream>, UnixStream>;

pub(crate) struct QmpClient {
    qmp: Qmp<QmpStream>,
}

impl QmpClient {
    /// Connects once QEMU has created its socket; fails early if QEMU exits first.
    pub(crate) fn connect(socket: &Path, qemu: &QemuProcess, deadline: Instant) -> Result<Self> {
        let stream = wait_until(
            deadline,
            Duration::from_millis(10),
            || match UnixStream::connect(socket) {
                Ok(stream) => Poll::Ready(Ok(stream)),
                Err(_) => match qemu.try_wait() {
                    Ok(Some(status)) => Poll::Ready(Err(anyhow::anyhow!(
                        "QEMU exited ({status}) before its QMP socket was up:\n{}",
                        qemu.stderr_tail(20)
                    ))),
                    Err(err) => Poll::Ready(Err(err)),
                    Ok(None) => Poll::Pending,
                },
            },
        )
        .with_context(|| format!("QMP at {} did not come up in time", socket.display()))??;
        // A QEMU that stops answering must not hang the harness.
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let reader = BufReader::new(stream.try_clone().context("cloning the QMP socket")?);
        let mut qmp = Qmp::new(Stream::new(reader, stream));
        if let Err(err) = qmp.handshake() {
            // Most often QEMU rejected its arguments and is going: wait for
            // its exit (briefly), then say what it said.
            let _ = wait_until(
                Instant::now() + Duration::from_secs(2),
                Duration::from_millis(20),
                || match qemu.try_wait() {
                    Ok(None) => Poll::Pending,
                    _ => Poll::Ready(()),
                },
            );
            bail!(
                "QMP handshake failed ({err}); QEMU's stderr:\n{}",
                qemu.stderr_tail(20)
            );
        }
        Ok(QmpClient { qmp })
    }

    /// The VM's run state as QEMU names it (`running`, `paused`, `guest-panicked`, ...).
    pub(crate) fn status(&mut self) -> Result<String> {
        let status = self
            .qmp
            .execute(&qmp::query_status {})
            .context("QMP query-status")?;
        Ok(format!("{:?}", status.status)
            .to_lowercase()
            .replace('_', "-"))
    }

    /// Pauses the vCPUs (until `cont`, or a debugger's continue).
    pub(crate) fn stop(&mut self) -> Result<()> {
        self.qmp.execute(&qmp::stop {}).context("QMP stop")?;
        Ok(())
    }

    /// What a human monitor command prints (`info registers`, `info
    /// lapic`): on vCPU `cpu` for those that show one vCPU's state.
    pub(crate) fn human(&mut self, command: &str, cpu: Option<i64>) -> Result<String> {
        self.qmp
            .execute(&qmp::human_monitor_command {
                command_line: command.to_owned(),
                cpu_index: cpu,
            })
            .with_context(|| format!("QMP human-monitor-command {command:?}"))
    }

    /// Each vCPU's index and the host thread that runs it.
    pub(crate) fn vcpu_threads(&mut self) -> Result<Vec<(i64, i64)>> {
        let cpus = self
            .qmp
            .execute(&qmp::query_cpus_fast {})
            .context("QMP query-cpus-fast")?;
        // The harness runs qemu-system-x86_64 only.
        Ok(cpus
            .iter()
            .filter_map(|cpu| match cpu {
                qmp::CpuInfoFast::x86_64(base) => Some((base.cpu_index, base.thread_id)),
                _ => None,
            })
            .collect())
    }

    /// Asks QEMU to exit now.
    pub(crate) fn quit(&mut self) -> Result<()> {
        self.qmp.execute(&qmp::quit {}).context("QMP quit")?;
        Ok(())
    }
}
