//! Network, child side: the jail has its own network namespace, whose only interface is
//! the loopback. It is brought up so a program may talk to itself (some runtimes do);
//! nothing else is reachable.

use super::sys::errno;

/// Sets `lo` up. Child side: no allocation.
pub fn loopback_up() -> Result<(), i32> {
    // SAFETY: a socket used only for the interface ioctl, on a zeroed stack ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req);
        let e = errno();
        libc::close(fd);
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}
