//! The VM's reader threads and the one stream of events they feed: the
//! console's and the agent's lines, an exec'd command's output, QMP's
//! events, and the exits of QEMU and virtiofsd, in the order they came.
//!
//! QEMU connects each channel to a socket the harness listens on (and
//! still writes the channel's log file itself, with `logfile=`), so each
//! reader blocks on its socket and the watch wakes only when there is
//! something new, or when one of its deadlines comes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::qemu::Channel;
use harness_wire::wait::{wait_until, Poll};

/// A process the VM depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Process {
    Qemu,
    Virtiofsd,
}

/// What a reader thread saw.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// A line of the console or of the result port, without its newline
    /// (a last line QEMU left unfinished comes as the channel closes).
    Line(Channel, String),
    /// Bytes an exec'd command wrote.
    Output(Channel, Vec<u8>),
    /// QMP's GUEST_PANICKED.
    GuestPanicked,
    /// QEMU closed the channel: it exited, or is exiting.
    Closed(Channel),
    /// The process exited (it is not reaped: its status is still there to read).
    Exited(Process),
}

/// The sockets QEMU connects to, bound before it starts.
pub(super) struct Listeners(Vec<(Channel, UnixListener)>);

/// How long QEMU's connections may take to show, once its QMP answers.
const ACCEPT_WAIT: Duration = Duration::from_secs(5);

impl Listeners {
    /// A socket for each of `channels`, in `dir`.
    pub(super) fn bind(dir: &Path, channels: &[Channel]) -> Result<Self> {
        let mut listeners = Vec::new();
        for &channel in channels {
            let path = channel.socket(dir);
            let listener = UnixListener::bind(&path)
                .with_context(|| format!("listening on {}", path.display()))?;
            listener.set_nonblocking(true)?;
            listeners.push((channel, listener));
        }
        Ok(Listeners(listeners))
    }

    /// Takes QEMU's connection on each socket and starts its reader; the
    /// channels that are open. QEMU connects each chardev as it starts, so
    /// by the time its QMP answers, the connections are waiting.
    pub(super) fn accept(self, events: &Sender<Event>) -> Result<Vec<Channel>> {
        self.accept_within(ACCEPT_WAIT, events)
    }

    fn accept_within(self, wait: Duration, events: &Sender<Event>) -> Result<Vec<Channel>> {
        let mut open = Vec::new();
        for (channel, listener) in self.0 {
            let accepted =
                wait_until(
                    Instant::now() + wait,
                    Duration::from_millis(10),
                    || match listener.accept() {
                        Ok((stream, _)) => Poll::Ready(Ok(stream)),
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Poll::Pending,
                        Err(err) => Poll::Ready(Err(err)),
                    },
                );
            let stream = accepted
                .with_context(|| format!("QEMU did not connect its {} chardev", channel.id()))?
                .with_context(|| format!("accepting QEMU's {} chardev", channel.id()))?;
            stream.set_nonblocking(false)?;
            start_reader(channel, stream, events.clone())?;
            open.push(channel);
        }
        Ok(open)
    }
}

fn start_reader(channel: Channel, stream: UnixStream, events: Sender<Event>) -> Result<()> {
    let name = format!("vm-{}", channel.id());
    let reader = move || {
        match channel {
            Channel::Console | Channel::Result => read_lines(channel, stream, &events),
            Channel::Stdout | Channel::Stderr => read_output(channel, stream, &events),
            Channel::QmpEvents => read_qmp_events(stream, &events),
        }
        let _ = events.send(Event::Closed(channel));
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(reader)
        .with_context(|| format!("starting the {} reader", channel.id()))?;
    Ok(())
}

/// Each line as it completes, until QEMU closes the channel.
fn read_lines(channel: Channel, stream: UnixStream, events: &Sender<Event>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']).to_owned();
                if events.send(Event::Line(channel, text)).is_err() {
                    return;
                }
            }
        }
    }
}

/// Each chunk as it comes, until QEMU closes the channel.
fn read_output(channel: Channel, mut stream: UnixStream, events: &Sender<Event>) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if events
                    .send(Event::Output(channel, buffer[..read].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// QMP's greeting, the capabilities handshake, then the events: a guest
/// panic is passed on.
fn read_qmp_events(stream: UnixStream, events: &Sender<Event>) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(stream).lines();
    // Events go only to monitors out of capabilities negotiation.
    let greeted = lines.next().is_some_and(|line| line.is_ok());
    if !greeted
        || writer
            .write_all(b"{\"execute\":\"qmp_capabilities\"}\n")
            .is_err()
    {
        return;
    }
    for line in lines {
        let Ok(line) = line else { return };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["event"] == "GUEST_PANICKED" && events.send(Event::GuestPanicked).is_err() {
            return;
        }
    }
}

/// Sends `Exited(process)` once the process `pid` exits. It must be an
/// unreaped child of this process, so its pid names it and no other.
pub(super) fn watch_exit(pid: u32, process: Process, events: &Sender<Event>) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("a pid out of range")?;
    // SAFETY: pidfd_open takes a pid and flags, and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("pidfd_open of {process:?} (pid {pid})"));
    }
    let fd = i32::try_from(fd).context("a descriptor out of range")?;
    // SAFETY: the descriptor was just opened, and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let events = events.clone();
    let waiter = move || {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // A pidfd turns readable when its process exits.
        loop {
            // SAFETY: one valid pollfd, owned by this thread.
            let ready = unsafe { libc::poll(&mut poll, 1, -1) };
            let interrupted =
                std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
            if ready >= 0 || !interrupted {
                break;
            }
        }
        let _ = events.send(Event::Exited(process));
    };
    std::thread::Builder::new()
        .name(format!("vm-{process:?}-exit"))
        .spawn(waiter)
        .context("starting a process-exit watch")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn next(events: &mpsc::Receiver<Event>) -> Event {
        events.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn a_reader_sends_each_line_once_it_is_complete_then_says_closed() {
        let dir = tempfile::tempdir().unwrap();
        let listeners = Listeners::bind(dir.path(), &[Channel::Console]).unwrap();
        let mut qemu = UnixStream::connect(Channel::Console.socket(dir.path())).unwrap();
        let (sender, events) = mpsc::channel();
        assert_eq!(listeners.accept(&sender).unwrap(), [Channel::Console]);
        drop(sender);
        qemu.write_all(b"[ 1.0] one\r\n[ 1.1] tw").unwrap();
        let one = Event::Line(Channel::Console, "[ 1.0] one".into());
        assert_eq!(next(&events), one);
        assert!(events.recv_timeout(Duration::from_millis(100)).is_err());
        qemu.write_all(b"o\nlast, unfinished").unwrap();
        assert_eq!(
            next(&events),
            Event::Line(Channel::Console, "[ 1.1] two".into())
        );
        drop(qemu);
        let last = Event::Line(Channel::Console, "last, unfinished".into());
        assert_eq!(next(&events), last);
        assert_eq!(next(&events), Event::Closed(Channel::Console));
        assert!(events.recv().is_err(), "the reader has ended");
    }

    #[test]
    fn a_qmp_reader_negotiates_and_passes_on_a_guest_panic() {
        let dir = tempfile::tempdir().unwrap();
        let listeners = Listeners::bind(dir.path(), &[Channel::QmpEvents]).unwrap();
        let qemu = UnixStream::connect(Channel::QmpEvents.socket(dir.path())).unwrap();
        let (sender, events) = mpsc::channel();
        listeners.accept(&sender).unwrap();
        let mut writer = qemu.try_clone().unwrap();
        writer.write_all(b"{\"QMP\": {\"version\": {}}}\n").unwrap();
        let mut asked = String::new();
        BufReader::new(&qemu).read_line(&mut asked).unwrap();
        assert_eq!(asked, "{\"execute\":\"qmp_capabilities\"}\n");
        writer
            .write_all(b"{\"return\": {}}\n{\"event\": \"RESUME\"}\n")
            .unwrap();
        writer
            .write_all(b"{\"event\": \"GUEST_PANICKED\", \"data\": {}}\n")
            .unwrap();
        assert_eq!(next(&events), Event::GuestPanicked);
        drop((qemu, writer));
        assert_eq!(next(&events), Event::Closed(Channel::QmpEvents));
    }

    #[test]
    fn a_channel_qemu_never_connects_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let listeners = Listeners::bind(dir.path(), &[Channel::Result]).unwrap();
        let (sender, _events) = mpsc::channel();
        let accepted = listeners.accept_within(Duration::from_millis(50), &sender);
        let error = format!("{:#}", accepted.unwrap_err());
        assert!(
            error.contains("QEMU did not connect its result chardev"),
            "{error}"
        );
    }

    #[test]
    fn an_exit_is_sent_once_the_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let (sender, events) = mpsc::channel();
        watch_exit(child.id(), Process::Virtiofsd, &sender).unwrap();
        assert_eq!(next(&events), Event::Exited(Process::Virtiofsd));
        assert!(child.wait().unwrap().success(), "still there to reap");
    }
}
