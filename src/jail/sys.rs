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
/// A small /proc file read whole, in one call or two: /proc reports a size of 0, so a
/// plain read-to-end grows its buffer from 32 bytes, one read per doubling. Parent
/// side (it allocates).
pub fn read_proc(path: &str) -> Option<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    std::fs::File::open(path)
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The calling thread's CPU mask, if it fits a `cpu_set_t` (1024 CPUs).
pub fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set for the kernel to fill.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the given size into the set.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

/// Sets the calling thread's CPU mask. No allocation.
pub fn set_affinity(set: &libc::cpu_set_t) -> Result<(), i32> {
    // SAFETY: sched_setaffinity reads the set of the given size.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// The CPU the calling thread runs on.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no arguments.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// SIGKILL through a pidfd given by number, from a signal handler: one system call,
/// no allocation, the result ignored (a process already gone is fine).
pub fn pidfd_kill_raw(fd: RawFd) {
    // SAFETY: pidfd_send_signal with a descriptor number, SIGKILL, a null siginfo and
    // no flags; a descriptor that is no pidfd only fails.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

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

/// fchmod(2). No allocation.
pub fn fchmod(fd: RawFd, mode: libc::mode_t) -> Result<(), i32> {
    // SAFETY: fchmod on a descriptor of ours.
    check(unsafe { libc::fchmod(fd, mode) })
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

/// `OPEN_TREE_CLONE` (linux/mount.h): open_tree makes a detached copy of the mount.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `MOVE_MOUNT_F_EMPTY_PATH` (linux/mount.h): move_mount's source is the descriptor.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A system call's result: the non-negative value, or the errno.
fn ret(r: libc::c_long) -> Result<libc::c_long, i32> {
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// open_tree(2) with `OPEN_TREE_CLONE` on what `fd` names (Linux 5.2): a detached
/// bind mount of it, and of it alone (no `AT_RECURSIVE`: the mounts below it are not
/// copied), closed on exec. Parent side.
pub fn open_tree_clone(fd: RawFd) -> Result<OwnedFd, i32> {
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: open_tree with a descriptor of ours, an empty NUL-terminated path and a
    // flags word; it returns a new descriptor or -1.
    let r = ret(unsafe { libc::syscall(libc::SYS_open_tree, fd, c"".as_ptr(), flags) })?;
    let fd = RawFd::try_from(r).map_err(|_| libc::EBADF)?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount_setattr(2) on the detached mount `fd` itself (not below it), setting
/// `attr_set`, with `userns_fd` as the idmapping when `attr_set` holds
/// `MOUNT_ATTR_IDMAP` (Linux 5.12). Parent side.
pub fn mount_setattr_fd(fd: RawFd, attr_set: u64, userns_fd: RawFd) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns_fd).unwrap_or(0),
    };
    // SAFETY: a descriptor of ours, an empty NUL-terminated path, and a stack struct of
    // the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    ret(r).map(drop)
}

/// move_mount(2) of the detached mount `fd` onto `dst` (Linux 5.2). No allocation.
pub fn move_mount_fd(fd: RawFd, dst: &CStr) -> Result<(), i32> {
    // SAFETY: a descriptor number, an empty and a NUL-terminated path, and a flags
    // word; no memory is written.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd,
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    ret(r).map(drop)
}

/// A pair of connected unix sockets (SOCK_SEQPACKET, close-on-exec): one message per
/// send, and a descriptor can travel with it.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array it is given.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by no one else.
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

/// Room for one control message carrying one descriptor, aligned as a cmsghdr.
#[repr(C, align(8))]
struct OneFd([u8; 32]);

/// An iovec over one byte. No allocation.
fn one_byte(data: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

/// A message of the one iovec `iov`, with no control data yet. No allocation.
fn message(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg
}

/// recvmsg into `msg`, again after EINTR; the bytes read. No allocation.
fn recvmsg(sock: RawFd, msg: &mut libc::msghdr) -> io::Result<isize> {
    loop {
        // SAFETY: recvmsg writes into the buffers `msg` points to, which the caller
        // keeps alive and as long as their lengths say.
        let n = unsafe { libc::recvmsg(sock, msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            return Ok(n);
        }
        if errno() != libc::EINTR {
            return Err(io::Error::last_os_error());
        }
    }
}

/// Sends one byte on a socket, with `fd` attached (when it is not -1). No allocation.
pub fn send_byte_with_fd(sock: RawFd, byte: u8, fd: RawFd) -> Result<(), i32> {
    let mut data = [byte];
    let mut iov = one_byte(&mut data);
    let mut room = OneFd([0; 32]);
    let mut msg = message(&mut iov);
    if fd >= 0 {
        // SAFETY: CMSG_SPACE is arithmetic on a length.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
        msg.msg_control = room.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is 32 bytes, aligned for a cmsghdr, and at least
        // CMSG_SPACE(4) = 24 long, so the first header and its data fit inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
    }
    loop {
        // SAFETY: sendmsg reads the message, its one iovec and its control buffer, all
        // alive on this stack.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n == 1 {
            return Ok(());
        }
        let e = errno();
        if n < 0 && e == libc::EINTR {
            continue;
        }
        return Err(if n < 0 { e } else { libc::EIO });
    }
}

/// Receives one byte and the descriptor sent with it, if any. None when the other end
/// is closed without sending (the peer died).
pub fn recv_byte_with_fd(sock: RawFd) -> io::Result<Option<(u8, Option<OwnedFd>)>> {
    let mut data = [0u8];
    let mut iov = one_byte(&mut data);
    let mut room = OneFd([0; 32]);
    let mut msg = message(&mut iov);
    msg.msg_control = room.0.as_mut_ptr().cast();
    msg.msg_controllen = room.0.len() as _;
    let n = recvmsg(sock, &mut msg)?;
    if n == 0 {
        return Ok(None);
    }
    let mut fd = None;
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of control
    // messages; CMSG_FIRSTHDR/NXTHDR stay inside them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                // Only one was sent; any other would be a stray we must still close.
                let owned = OwnedFd::from_raw_fd(raw);
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some((data[0], fd)))
}

/// fcntl(F_DUPFD_CLOEXEC): a copy of `fd` at the lowest free number >= `min`. No
/// allocation.
pub fn dup_above(fd: RawFd, min: RawFd) -> Result<RawFd, i32> {
    // SAFETY: fcntl on descriptors of our own table.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// dup2(2). No allocation.
pub fn dup2(from: RawFd, to: RawFd) -> Result<(), i32> {
    // SAFETY: dup2 on descriptors of our own table.
    check(unsafe { libc::dup2(from, to) })
}

/// Closes every descriptor from `from` up. No allocation.
pub fn close_from(from: RawFd) {
    close_range(from as libc::c_uint, libc::c_uint::MAX);
}

/// Closes the descriptors `from..=to`. No allocation.
pub fn close_range(from: libc::c_uint, to: libc::c_uint) {
    if from > to {
        return;
    }
    // SAFETY: close_range on our own descriptor table.
    if unsafe { libc::syscall(libc::SYS_close_range, from, to, 0) } < 0 {
        // Kernels before 5.9: close one by one up to a sane bound.
        for fd in from..=to.min(65_535) {
            close(fd as RawFd);
        }
    }
}

/// Clears close-on-exec on `fd`. No allocation.
pub fn clear_cloexec(fd: RawFd) -> Result<(), i32> {
    // SAFETY: fcntl on a descriptor of our own table.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })
}

/// Most descriptors one message of [`send_with_fds`] carries: a jail's order brings
/// two of its own, up to `MAX_FDS` (64) of the program's and one per id-mapped bind
/// (the kernel's own cap, SCM_MAX_FD, is 253).
pub const MAX_PASSED_FDS: usize = 128;

/// Room for the control message of [`MAX_PASSED_FDS`] descriptors, aligned as a
/// cmsghdr.
#[repr(C, align(8))]
struct ManyFds([u8; 16 + 4 * MAX_PASSED_FDS]);

/// Sends `data` as one message (a SOCK_SEQPACKET socket keeps it whole) with `fds`
/// attached. For the pool, on the parent's side: it may allocate.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors in one message; at most {MAX_PASSED_FDS}",
                fds.len()
            ),
        ));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut room = ManyFds([0; 16 + 4 * MAX_PASSED_FDS]);
    let mut msg = message(&mut iov);
    if !fds.is_empty() {
        let len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is arithmetic on a length.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(len) } as _;
        msg.msg_control = room.0.as_mut_ptr().cast();
        // SAFETY: the control buffer holds a cmsghdr (16 bytes) and 4 bytes per
        // descriptor up to MAX_PASSED_FDS, checked above, so the header and its data
        // fit inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: sendmsg reads the message, its iovec and its control buffer, all
        // alive here.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 && n as usize == data.len() {
            return Ok(());
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(if n < 0 {
            io::Error::last_os_error()
        } else {
            io::Error::new(io::ErrorKind::WriteZero, "a message sent in part")
        });
    }
}

/// Receives one message of at most `buf.len()` bytes and the descriptors that came
/// with it (close-on-exec). `None` at the end of the stream. A message cut short (it
/// did not fit) is an error.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut room = ManyFds([0; 16 + 4 * MAX_PASSED_FDS]);
    let mut msg = message(&mut iov);
    msg.msg_control = room.0.as_mut_ptr().cast();
    msg.msg_controllen = room.0.len() as _;
    let n = recvmsg(sock, &mut msg)?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of control
    // messages; CMSG_FIRSTHDR/NXTHDR stay inside them, and each SCM_RIGHTS carries
    // (cmsg_len - CMSG_LEN(0)) / 4 descriptors, now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a message or its descriptors did not fit",
        ));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((n as usize, fds)))
}

/// A sealed-size anonymous file holding `bytes`, for handing data too large for one
/// message to another process.
pub fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(c"moat-order".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut at = 0;
    while at < bytes.len() {
        // SAFETY: write from a live slice of the given length.
        let n = unsafe {
            libc::write(
                fd.as_raw_fd(),
                bytes[at..].as_ptr().cast(),
                bytes.len() - at,
            )
        };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return Err(io::Error::last_os_error());
        }
        at += n as usize;
    }
    Ok(fd)
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

    #[test]
    fn a_descriptor_travels_with_its_byte() {
        let (a, b) = socketpair().unwrap();
        let (r, w) = pipe().unwrap();
        send_byte_with_fd(a.as_raw_fd(), b'r', w.as_raw_fd()).unwrap();
        drop(w);
        send_byte_with_fd(a.as_raw_fd(), b'g', -1).unwrap();
        let (byte, fd) = recv_byte_with_fd(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(byte, b'r');
        let got = fd.expect("the pipe's write end came along");
        write_all(got.as_raw_fd(), b"x").unwrap();
        drop(got);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut text).unwrap();
        assert_eq!(text, "x");
        let (byte, fd) = recv_byte_with_fd(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!((byte, fd.is_none()), (b'g', true));
        drop(a);
        assert!(
            recv_byte_with_fd(b.as_raw_fd()).unwrap().is_none(),
            "peer gone"
        );
    }

    #[test]
    fn dup_above_and_close_range() {
        let (r, _w) = pipe().unwrap();
        let high = dup_above(r.as_raw_fd(), 200).unwrap();
        assert!(high >= 200);
        // SAFETY: F_GETFD only queries the descriptor.
        let flags = |fd| unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags(high), libc::FD_CLOEXEC);
        clear_cloexec(high).unwrap();
        assert_eq!(flags(high), 0);
        close_range(high as libc::c_uint, high as libc::c_uint);
        // Closed: EBADF.
        assert_eq!(flags(high), -1);
    }
}
