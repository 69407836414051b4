//! What a congestion control's loader needs to put it to work: one loopback
//! TCP connection whose client selects the algorithm by name
//! (`TCP_CONGESTION`) before it connects, echo transfers over it checked
//! byte for byte, and the client's `TCP_INFO` read before it closes. The
//! server side is a thread of the same process that keeps the system's
//! default algorithm, so the algorithm's callbacks count the client only.
//!
//! ```no_run
//! use harness_loader::tcp::Connection;
//! # fn main() -> anyhow::Result<()> {
//! let mut connection = Connection::open("my_ca").map_err(anyhow::Error::from)?;
//! connection.transfer(1 << 20)?;
//! let info = connection.info()?;
//! connection.close()?;
//! let lines: String = info.render(); // cwnd, ssthresh, retransmits: the step's stdout
//! # let _ = lines;
//! # Ok(())
//! # }
//! ```

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use harness_wire::tcp_info::{CaState, TcpInfo};

use crate::Failure;

/// Longest a read or write may block: generous for TCG, short of the
/// harness's own timeouts, so a stuck transfer fails with a message.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel's TCP_CA_NAME_MAX, the NUL included.
const CA_NAME_MAX: usize = 16;

/// Why a socket could not get the congestion control it asked for.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// `setsockopt(TCP_CONGESTION)` said ENOENT.
    #[error(
        "setsockopt(TCP_CONGESTION, {0:?}) failed with ENOENT: \
         no congestion control of that name is registered"
    )]
    NotRegistered(String),
    /// Anything else: the socket, the option, the connection.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl SelectError {
    /// The loader's failure, with the exit code `not_registered` when no
    /// algorithm of the name is registered (the subject's contract names
    /// that code; [`crate::exit::UNAVAILABLE`] if it has none of its own).
    pub fn failure(self, not_registered: u8) -> Failure {
        match self {
            SelectError::NotRegistered(_) => Failure::new(not_registered, self.to_string()),
            SelectError::Other(err) => err.into(),
        }
    }
}

/// A TCP socket, not yet connected, that selected `algorithm`; checked with
/// getsockopt, which names the congestion control the socket really has.
pub fn select(algorithm: &str) -> Result<OwnedFd, SelectError> {
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(anyhow::Error::new(io::Error::last_os_error())
            .context("creating a TCP socket")
            .into());
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    match set_congestion(socket.as_fd(), algorithm) {
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
            return Err(SelectError::NotRegistered(algorithm.to_owned()))
        }
        result => result.with_context(|| format!("setsockopt(TCP_CONGESTION, {algorithm:?})"))?,
    }
    let got = congestion(socket.as_fd()).context("getsockopt(TCP_CONGESTION)")?;
    if got != algorithm {
        return Err(anyhow::anyhow!(
            "setsockopt(TCP_CONGESTION, {algorithm:?}) succeeded but the socket reports {got:?}"
        )
        .into());
    }
    Ok(socket)
}

/// setsockopt(`level`, `option`) with the bytes of `value`.
fn set_option(
    socket: BorrowedFd<'_>,
    (level, option): (libc::c_int, libc::c_int),
    value: &[u8],
) -> io::Result<()> {
    // SAFETY: the option value is `value`'s bytes, valid for their length.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            option,
            value.as_ptr().cast(),
            libc::socklen_t::try_from(value.len()).unwrap_or(libc::socklen_t::MAX),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_congestion(socket: BorrowedFd<'_>, algorithm: &str) -> io::Result<()> {
    let option = (libc::IPPROTO_TCP, libc::TCP_CONGESTION);
    set_option(socket, option, algorithm.as_bytes())
}

fn congestion(socket: BorrowedFd<'_>) -> io::Result<String> {
    let mut name = [0u8; CA_NAME_MAX];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `name` and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    let name = &name[..(len as usize).min(CA_NAME_MAX)];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// The socket's `TCP_INFO`, as the kernel fills it now.
pub fn tcp_info(socket: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut raw: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `raw` and updates `len`.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(raw).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpInfo {
        snd_cwnd: raw.tcpi_snd_cwnd,
        snd_ssthresh: raw.tcpi_snd_ssthresh,
        snd_mss: raw.tcpi_snd_mss,
        total_retrans: raw.tcpi_total_retrans,
        retransmits: raw.tcpi_retransmits,
        lost: raw.tcpi_lost,
        ca_state: CaState::from_raw(raw.tcpi_ca_state),
        rtt_us: raw.tcpi_rtt,
        rttvar_us: raw.tcpi_rttvar,
    })
}

fn connect(socket: &OwnedFd, to: SocketAddrV4) -> io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a complete sockaddr_in, and its size is passed with it.
    let ret = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How the client's socket is set up beyond its congestion control, for a
/// transfer through loss: on loopback a socket sends 64 KiB segments and
/// offloads them in 64 KiB packets, so a few megabytes are a few dozen
/// packets, and a loss of a few percent hits a few of them or none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// TCP_MAXSEG, set before connecting: the client advertises it, so
    /// both sides' segments are at most this many bytes, and the window
    /// counts segments the size of a real network's.
    pub max_segment: Option<u16>,
    /// SO_MAX_PACING_RATE, bytes per second: TCP paces the client's
    /// packets to it and sizes each to a millisecond's worth (two segments
    /// at least), so a random loss drops a segment or two, not dozens, and
    /// the transfer takes about its bytes over this rate.
    pub max_pacing_rate: Option<u64>,
}

impl Options {
    fn apply(self, socket: BorrowedFd<'_>) -> anyhow::Result<()> {
        if let Some(mss) = self.max_segment {
            let value = libc::c_int::from(mss).to_ne_bytes();
            set_option(socket, (libc::IPPROTO_TCP, libc::TCP_MAXSEG), &value)
                .with_context(|| format!("setsockopt(TCP_MAXSEG, {mss})"))?;
        }
        if let Some(rate) = self.max_pacing_rate {
            let option = (libc::SOL_SOCKET, libc::SO_MAX_PACING_RATE);
            set_option(socket, option, &rate.to_ne_bytes())
                .with_context(|| format!("setsockopt(SO_MAX_PACING_RATE, {rate})"))?;
        }
        Ok(())
    }
}

/// The client side of a loopback connection, and the echo server's thread.
pub struct Connection {
    stream: TcpStream,
    server: JoinHandle<io::Result<u64>>,
    /// Bytes sent so far; the next transfer's pattern continues from here,
    /// so a chunk echoed twice or out of order cannot match.
    sent: u64,
}

impl Connection {
    /// Selects `algorithm` on a new socket and connects it to an echo server
    /// on 127.0.0.1; the algorithm's init runs when the connection is
    /// established. Segments are as large as loopback allows (64 KiB).
    pub fn open(algorithm: &str) -> Result<Self, SelectError> {
        Connection::open_with(algorithm, Options::default())
    }

    /// The same, the client's socket set up with `options` first.
    pub fn open_with(algorithm: &str, options: Options) -> Result<Self, SelectError> {
        let socket = select(algorithm)?;
        options.apply(socket.as_fd())?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("listening on 127.0.0.1 (is the loopback interface up?)")?;
        let addr = match listener.local_addr().context("the listener's address")? {
            std::net::SocketAddr::V4(addr) => addr,
            other => return Err(anyhow::anyhow!("listening on {other}, not IPv4").into()),
        };
        let server = thread::spawn(move || echo_one(listener));
        connect(&socket, addr)
            .with_context(|| format!("connecting to {addr} (is the loopback interface up?)"))?;
        let stream = TcpStream::from(socket);
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .context("setting the client's timeouts")?;
        Ok(Connection {
            stream,
            server,
            sent: 0,
        })
    }

    /// The client's local port, as the algorithm's init sees it.
    pub fn local_port(&self) -> anyhow::Result<u16> {
        Ok(self
            .stream
            .local_addr()
            .context("the client's address")?
            .port())
    }

    /// The client's `TCP_INFO` now: after a transfer and before
    /// [`Connection::close`], what its congestion control made of it.
    pub fn info(&self) -> anyhow::Result<TcpInfo> {
        tcp_info(self.stream.as_fd()).context("getsockopt(TCP_INFO) on the client's socket")
    }

    /// Sends `bytes` bytes and reads them back from the echo server,
    /// checking each one. A second thread writes so that neither side
    /// blocks on a full buffer while the other waits.
    pub fn transfer(&mut self, bytes: u64) -> anyhow::Result<()> {
        let payload = pattern(self.sent, bytes);
        let mut writer = self
            .stream
            .try_clone()
            .context("cloning the client socket")?;
        let sending = payload.clone();
        let sender = thread::spawn(move || writer.write_all(&sending));
        let mut echoed = vec![0u8; payload.len()];
        let read = self.stream.read_exact(&mut echoed);
        let written = sender
            .join()
            .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?;
        written.with_context(|| format!("sending {bytes} bytes"))?;
        read.with_context(|| format!("reading {bytes} echoed bytes back"))?;
        if let Some(at) = payload.iter().zip(&echoed).position(|(a, b)| a != b) {
            bail!(
                "the echo differs from what was sent at byte {}",
                self.sent + at as u64
            );
        }
        self.sent += bytes;
        Ok(())
    }

    /// Closes the connection gracefully: our FIN, the server's EOF and
    /// close, our EOF, then close(2). Checks that the server echoed exactly
    /// what was sent.
    pub fn close(mut self) -> anyhow::Result<()> {
        self.stream
            .shutdown(Shutdown::Write)
            .context("shutting down the client's sending side")?;
        let mut rest = Vec::new();
        self.stream
            .read_to_end(&mut rest)
            .context("reading until the server closes")?;
        ensure!(
            rest.is_empty(),
            "the server sent {} bytes nobody sent it",
            rest.len()
        );
        drop(self.stream);
        let echoed = self
            .server
            .join()
            .map_err(|_| anyhow::anyhow!("the echo server's thread panicked"))?
            .context("the echo server")?;
        ensure!(
            echoed == self.sent,
            "the server echoed {echoed} bytes, the client sent {}",
            self.sent
        );
        Ok(())
    }
}

/// One connection with `algorithm`, its client set up with `options`,
/// carrying `bytes` each way, closed; the client's `TCP_INFO` as it was
/// before the close.
pub fn transfer(algorithm: &str, bytes: u64, options: Options) -> Result<TcpInfo, SelectError> {
    let mut connection = Connection::open_with(algorithm, options)?;
    connection.transfer(bytes)?;
    let info = connection.info()?;
    connection.close()?;
    Ok(info)
}

/// Accepts one connection and echoes it until EOF; returns the bytes echoed.
fn echo_one(listener: TcpListener) -> io::Result<u64> {
    let (mut stream, _) = listener.accept()?;
    drop(listener);
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buffer[..n])?;
        total += n as u64;
    }
}

/// `len` bytes of a sequence that repeats only every 251 bytes (a prime),
/// starting at position `start`.
fn pattern(start: u64, len: u64) -> Vec<u8> {
    (start..start + len).map(|i| (i % 251) as u8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_continues_across_transfers() {
        let whole = pattern(0, 600);
        let mut parts = pattern(0, 250);
        parts.extend(pattern(250, 350));
        assert_eq!(whole, parts);
        assert_ne!(pattern(0, 256)[..], pattern(256, 256)[..]);
    }

    /// Reno is built into every kernel with IPv4, the host's included.
    #[test]
    fn a_loopback_transfer_reports_the_senders_window_and_segment_size() {
        let options = Options {
            max_segment: Some(1000),
            max_pacing_rate: Some(64 << 20),
        };
        let info = transfer("reno", 1 << 20, options).unwrap();
        assert!(info.snd_cwnd >= 2, "{}", info.render());
        // The MSS option leaves room for TCP options (timestamps: 12 bytes).
        assert!((900..=1000).contains(&info.snd_mss), "{}", info.render());
        assert!(info.rtt_us > 0, "{}", info.render());
    }

    #[test]
    fn an_unregistered_name_is_refused_as_such() {
        let err = Connection::open("no_such_ca").err().unwrap();
        assert!(matches!(err, SelectError::NotRegistered(_)), "{err}");
        assert_eq!(err.failure(9).code, 9);
    }
}
