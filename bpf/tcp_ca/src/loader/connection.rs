//! One loopback TCP connection whose client side selects a congestion
//! control by name before it connects, and echo transfers over it checked
//! byte for byte. The server side is a thread of this process that keeps
//! the system default, so the algorithm's callbacks count the client only.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};

/// Longest a read or write may block: generous for TCG, short of the
/// harness's own timeouts, so a stuck transfer fails with a message.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel's TCP_CA_NAME_MAX, the NUL included.
const CA_NAME_MAX: usize = 16;

/// Why a socket could not get the congestion control it asked for.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(
        "setsockopt(TCP_CONGESTION, {0:?}) failed with ENOENT: \
         no congestion control of that name is registered"
    )]
    NotRegistered(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
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

fn set_congestion(socket: BorrowedFd<'_>, algorithm: &str) -> io::Result<()> {
    // SAFETY: the option value is `algorithm`'s bytes, valid for their length.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            algorithm.as_ptr().cast(),
            libc::socklen_t::try_from(algorithm.len()).unwrap_or(libc::socklen_t::MAX),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
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
    /// on 127.0.0.1; the algorithm's init runs when the connection is established.
    pub fn open(algorithm: &str) -> Result<Self, SelectError> {
        let socket = select(algorithm)?;
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
    use super::pattern;

    #[test]
    fn the_pattern_continues_across_transfers() {
        let whole = pattern(0, 600);
        let mut parts = pattern(0, 250);
        parts.extend(pattern(250, 350));
        assert_eq!(whole, parts);
        assert_ne!(pattern(0, 256)[..], pattern(256, 256)[..]);
    }
}
