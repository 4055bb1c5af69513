//! The raw system calls the jail makes, each wrapped once. Several are also made in
//! the cloned child, so none of them allocates or takes a lock.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The calling thread's errno (EIO if none is set). No allocation.
pub fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A fork-like clone: `flags` (namespaces, say) plus SIGCHLD, no new stack, no shared
/// memory. Returns the child's pid in the parent, 0 in the child, or -1 with errno.
///
/// glibc's fork runs atfork handlers and takes locks; the raw call runs nothing, so it
/// is safe from a multi-threaded parent as long as the child only makes system calls
/// on data prepared before (which every caller here does).
pub fn clone_fork(flags: libc::c_int) -> libc::pid_t {
    // SAFETY: clone without CLONE_VM and with a null stack duplicates the address space
    // as fork does; the child continues on a copy of this thread's stack.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    r as libc::pid_t
}

/// A pidfd for `pid`: signals sent through it can never reach a recycled pid.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new descriptor or
    // -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGKILL through a pidfd. Ok when the process is gone already (ESRCH).
pub fn pidfd_kill(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: a valid pidfd, SIGKILL, a null siginfo (allowed: the kernel fills it in
    // as kill() would) and no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 || errno() == libc::ESRCH {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A pipe whose ends close on exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh from pipe2 and owned by no one else.
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// pivot_root(2), which libc does not wrap. No allocation.
pub fn pivot_root(new: &CStr, old: &CStr) -> libc::c_int {
    // SAFETY: both arguments are NUL-terminated strings that outlive the call.
    unsafe { libc::syscall(libc::SYS_pivot_root, new.as_ptr(), old.as_ptr()) as libc::c_int }
}

/// Writes all of `buf` to `fd`, retrying on EINTR and short writes. No allocation.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: write from a live slice of the given length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(libc::EIO);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// -1 becomes the errno. No allocation.
pub fn check(r: libc::c_int) -> Result<(), i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// mount(2). No allocation.
pub fn mount(
    src: Option<&CStr>,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    check(unsafe { libc::mount(ptr(src), dst.as_ptr(), ptr(fstype), flags, ptr(data).cast()) })
}

/// umount2(2). No allocation.
pub fn umount2(target: &CStr, flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

/// chdir(2). No allocation.
pub fn chdir(path: &CStr) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::chdir(path.as_ptr()) })
}

/// mkdir(2); an existing entry is fine when `exist_ok`. No allocation.
pub fn mkdir(path: &CStr, mode: libc::mode_t, exist_ok: bool) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(libc::EEXIST) if exist_ok => Ok(()),
        r => r,
    }
}

/// symlink(2). No allocation.
pub fn symlink(target: &CStr, path: &CStr) -> Result<(), i32> {
    // SAFETY: two NUL-terminated strings.
    check(unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) })
}

/// open(2), returning the descriptor. No allocation.
pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Result<RawFd, i32> {
    // SAFETY: a NUL-terminated path; the mode is read only with O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags, libc::c_uint::from(mode)) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// close(2), for descriptors the caller owns by number. No allocation.
pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor of this process that nothing else uses.
    unsafe { libc::close(fd) };
}

/// `struct mount_attr` (linux/mount.h).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on `path` and every mount below it, setting `attr_set`. No
/// allocation.
pub fn mount_setattr_recursive(path: &CStr, attr_set: u64) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a stack struct of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(r as libc::c_int)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_and_writes() {
        let (r, w) = pipe().unwrap();
        write_all(w.as_raw_fd(), b"moat").unwrap();
        drop(w);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut got).unwrap();
        assert_eq!(got, "moat");
    }

    #[test]
    fn pidfd_kills_a_child_and_tolerates_its_end() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let fd = pidfd_open(child.id() as libc::pid_t).unwrap();
        pidfd_kill(&fd).unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        // Reaped: the pidfd still names that (gone) process, never a new one.
        pidfd_kill(&fd).unwrap();
    }
}
