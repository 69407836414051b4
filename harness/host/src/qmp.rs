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

    /// Saves the paused VM's state into `state` (the guest's shared memory
    /// stays in its backend's file, `x-ignore-shared`) and waits until the
    /// file is whole. QEMU 7.2 has no `file:` migration, hence `cat`, which
    /// may still be writing when QEMU calls the save completed: it writes
    /// beside `state` and renames its file when done.
    pub(crate) fn save_state(&mut self, state: &Path, deadline: Instant) -> Result<()> {
        self.ignore_shared_memory()?;
        let partial = state.with_extension("partial");
        let (partial_word, state_word) = (shell_path(&partial)?, shell_path(state)?);
        let uri = format!("exec:cat > {partial_word} && mv {partial_word} {state_word}");
        self.qmp
            .execute(&qmp::migrate {
                uri: Some(uri),
                channels: None,
                detach: None,
                resume: None,
            })
            .context("QMP migrate")?;
        self.wait_for_migration(deadline, "saving the VM's state")?;
        let written = wait_until(deadline, Duration::from_millis(5), || {
            match state.exists() {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        });
        written.with_context(|| format!("{} was not written in time", state.display()))
    }

    /// Loads a VM started with `-incoming defer` from `state`, and waits
    /// until it runs.
    pub(crate) fn load_state(&mut self, state: &Path, deadline: Instant) -> Result<()> {
        self.ignore_shared_memory()?;
        let uri = format!("exec:cat {}", shell_path(state)?);
        self.qmp
            .execute(&qmp::migrate_incoming {
                uri: Some(uri),
                channels: None,
                exit_on_error: None,
            })
            .context("QMP migrate-incoming")?;
        let loaded = wait_until(deadline, Duration::from_millis(2), || {
            let migration = self.qmp.execute(&qmp::query_migrate {});
            if let Ok(qmp::MigrationInfo {
                status: Some(qmp::MigrationStatus::failed),
                error_desc,
                ..
            }) = migration
            {
                return Poll::Ready(Err(anyhow::anyhow!(
                    "loading {} failed: {}",
                    state.display(),
                    error_desc.unwrap_or_default()
                )));
            }
            match (migration, self.status()) {
                (_, Ok(status)) if status == "running" => Poll::Ready(Ok(())),
                // The template was saved paused, so its clone loads paused.
                (
                    Ok(qmp::MigrationInfo {
                        status: Some(qmp::MigrationStatus::completed),
                        ..
                    }),
                    Ok(status),
                ) if status == "paused" => Poll::Ready(self.cont()),
                (_, Ok(_)) => Poll::Pending,
                (_, Err(err)) => Poll::Ready(Err(err)),
            }
        });
        match loaded {
            Some(loaded) => loaded,
            None => {
                let status = self.status().unwrap_or_else(|err| format!("{err:#}"));
                let migration = self.qmp.execute(&qmp::query_migrate {});
                anyhow::bail!(
                    "loading {} took too long: the VM is {status}; migration: {migration:?}",
                    state.display()
                )
            }
        }
    }

    /// Both sides of a save leave the memory backend's shared pages out.
    fn ignore_shared_memory(&mut self) -> Result<()> {
        let capability = qmp::MigrationCapabilityStatus {
            capability: qmp::MigrationCapability::x_ignore_shared,
            state: true,
        };
        self.qmp
            .execute(&qmp::migrate_set_capabilities {
                capabilities: vec![capability],
            })
            .context("QMP migrate-set-capabilities x-ignore-shared")?;
        Ok(())
    }

    fn wait_for_migration(&mut self, deadline: Instant, what: &str) -> Result<()> {
        let mut info = || self.qmp.execute(&qmp::query_migrate {});
        wait_until(deadline, Duration::from_millis(5), || match info() {
            Ok(info) => match info.status {
                Some(qmp::MigrationStatus::completed) => Poll::Ready(Ok(())),
                Some(
                    qmp::MigrationStatus::failed
                    | qmp::MigrationStatus::cancelled
                    | qmp::MigrationStatus::cancelling,
                ) => Poll::Ready(Err(anyhow::anyhow!(
                    "{what} failed: {}",
                    info.error_desc.unwrap_or_default()
                ))),
                _ => Poll::Pending,
            },
            Err(err) => Poll::Ready(Err(anyhow::Error::from(err).context("QMP query-migrate"))),
        })
        .with_context(|| format!("{what} took too long"))?
    }

    /// Runs the vCPUs again.
    pub(crate) fn cont(&mut self) -> Result<()> {
        self.qmp.execute(&qmp::cont {}).context("QMP cont")?;
        Ok(())
    }

    /// Asks QEMU to exit now.
    pub(crate) fn quit(&mut self) -> Result<()> {
        self.qmp.execute(&qmp::quit {}).context("QMP quit")?;
        Ok(())
    }
}

/// `path` for QEMU's `exec:` shell line: single-quoted, and refused when it
/// holds a quote (the cache's paths never do).
fn shell_path(path: &Path) -> Result<String> {
    let text = path.to_str().context("a state file's path is not UTF-8")?;
    if text.contains('\'') {
        anyhow::bail!("{text} holds a quote, which QEMU's exec: migration cannot carry; move the cache (STRUCT_OPS_CACHE_DIR)");
    }
    Ok(format!("'{text}'"))
}
