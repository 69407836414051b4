//! The virtio-serial ports between the agent and the host: the result port
//! the agent writes its messages to, the output ports of an exec'd command,
//! and the control port the host answers on.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use harness_wire::protocol::{Message, CONTROL_PORT_NAME, GO, RESULT_PORT_NAME};

/// How long a virtio port may take to get its name (set asynchronously).
const PORT_WAIT: Duration = Duration::from_secs(5);

/// The device of the port named `wanted`, once udev-less sysfs names it.
pub(crate) fn find(wanted: &str) -> Result<PathBuf> {
    let deadline = Instant::now() + PORT_WAIT;
    loop {
        if let Some(port) = named_port(wanted) {
            return Ok(port);
        }
        if Instant::now() >= deadline {
            bail!("no virtio port named {wanted} after {PORT_WAIT:?} (is virtio-serial missing?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn named_port(wanted: &str) -> Option<PathBuf> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    ports.flatten().find_map(|port| {
        let name = std::fs::read_to_string(port.path().join("name")).ok()?;
        (name.trim() == wanted).then(|| PathBuf::from("/dev").join(port.file_name()))
    })
}

/// Opens the port named `name` for writing.
pub(crate) fn open_for_writing(name: &str) -> Result<File> {
    let path = find(name)?;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The agent's side of the conversation with the host.
pub(crate) struct HostLink {
    result: File,
}

impl HostLink {
    pub(crate) fn open() -> Result<Self> {
        Ok(HostLink {
            result: open_for_writing(RESULT_PORT_NAME)?,
        })
    }

    /// One message, one line.
    pub(crate) fn send(&mut self, message: &Message) -> Result<()> {
        writeln!(self.result, "{}", message.to_json()).context("writing to the result port")?;
        self.result.flush().context("writing to the result port")
    }

    /// Blocks until the host says `GO` on the control port. A port whose
    /// host end is not connected reads as ended; the host connects at boot,
    /// but the read is retried a while in case it is late.
    pub(crate) fn wait_for_go(&self) -> Result<()> {
        let path = find(CONTROL_PORT_NAME)?;
        let deadline = Instant::now() + PORT_WAIT;
        while Instant::now() < deadline {
            let port = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            for line in BufReader::new(port).lines() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim() == GO {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the host never connected to the control port to say go")
    }
}
