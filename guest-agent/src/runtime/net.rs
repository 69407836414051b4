//! The loopback interface, which scenarios that open TCP connections need
//! (nothing beyond it: the guest has no other network).

use anyhow::{bail, Result};
use harness_wire::guest_setup::LOOPBACK;

/// `ip link set lo up`, through the ioctls, since there is no `ip` to run.
pub(crate) fn bring_up_loopback() -> Result<()> {
    // SAFETY: a datagram socket only to carry the interface ioctls; closed below.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        bail!(
            "opening a socket to bring up {LOOPBACK}: {}",
            std::io::Error::last_os_error()
        );
    }
    let outcome = set_up(socket);
    // SAFETY: the socket opened above, closed once.
    unsafe { libc::close(socket) };
    outcome
}

fn set_up(socket: libc::c_int) -> Result<()> {
    // SAFETY: an all-zero ifreq is a valid value; its name is set below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(LOOPBACK.bytes().chain([0])) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) < 0 {
            let err = std::io::Error::last_os_error();
            bail!("reading {LOOPBACK}'s flags: {err}");
        }
        let up = libc::IFF_UP as libc::c_short;
        // Up already when `stage0` brought it up in a template.
        if request.ifr_ifru.ifru_flags & up != 0 {
            return Ok(());
        }
        request.ifr_ifru.ifru_flags |= up;
        if libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) < 0 {
            let err = std::io::Error::last_os_error();
            bail!("bringing {LOOPBACK} up: {err}");
        }
    }
    Ok(())
}
