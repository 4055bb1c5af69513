//! The facts `moat check` reasons from: the [`Host`] trait, and [`LiveHost`], the real
//! machine, whose probes with side effects run in short-lived forked children.

use crate::watch::cgroup::Layout;
use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::kill;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, geteuid, ForkResult, Pid};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

pub(crate) const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
pub(crate) const DEBIAN_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
pub(crate) const APPARMOR_RESTRICT_USERNS: &str =
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
pub(crate) const YAMA_PTRACE_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";
pub(crate) const SECCOMP_ACTIONS: &str = "/proc/sys/kernel/seccomp/actions_avail";
pub(crate) const LSM_LIST: &str = "/sys/kernel/security/lsm";
pub(crate) const SELF_STATUS: &str = "/proc/self/status";
#[cfg(test)]
pub(crate) const SELF_CGROUP: &str = "/proc/self/cgroup";
#[cfg(test)]
pub(crate) const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";
pub(crate) const SELF_USERNS: &str = "/proc/self/ns/user";
pub(crate) const APPARMOR_PROFILE: &str = "/etc/apparmor.d/moat";

/// The namespaces moat creates inside its user namespace.
pub(crate) const INNER_NAMESPACES: &str = "mount, PID, IPC, UTS and network";

/// Other per-namespace-type limits that, at 0, make creating that namespace fail with
/// ENOSPC just like `user.max_user_namespaces` does for user namespaces.
pub(crate) const INNER_NAMESPACE_LIMITS: [&str; 5] = [
    "max_mnt_namespaces",
    "max_pid_namespaces",
    "max_ipc_namespaces",
    "max_uts_namespaces",
    "max_net_namespaces",
];

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`; libc does not export it.
pub(crate) const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// System calls whose presence is probed by calling them with arguments they must
/// reject, so that nothing happens whether or not they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syscall {
    Clone3,
    MountSetattr,
    CloseRange,
}

impl Syscall {
    pub(crate) const ALL: [Syscall; 3] =
        [Syscall::Clone3, Syscall::MountSetattr, Syscall::CloseRange];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Syscall::Clone3 => "clone3",
            Syscall::MountSetattr => "mount_setattr",
            Syscall::CloseRange => "close_range",
        }
    }

    pub(crate) fn since(self) -> &'static str {
        match self {
            Syscall::Clone3 => "5.3",
            Syscall::MountSetattr => "5.12",
            Syscall::CloseRange => "5.9",
        }
    }

    pub(crate) fn without(self) -> &'static str {
        match self {
            Syscall::Clone3 => {
                "children are created with clone(2), which cannot start a child inside \
                 its cgroup (CLONE_INTO_CGROUP), so it is moved there after birth"
            }
            Syscall::MountSetattr => {
                "read-only and nosuid bind mounts are remounted one mount at a time \
                 instead of in one recursive step"
            }
            Syscall::CloseRange => {
                "inherited descriptors are closed one by one from a listing of /proc/self/fd"
            }
        }
    }
}

/// The facts `moat check` reasons from. [`LiveHost`] reads the real machine; tests
/// supply a fake.
pub(crate) trait Host {
    /// Contents of a file, or `None` when it is absent or unreadable.
    fn read(&self, path: &str) -> Option<String>;
    fn exists(&self, path: &str) -> bool;
    fn euid(&self) -> u32;
    /// Whether `cap` is in the caller's effective capability set.
    fn has_cap(&self, cap: Capability) -> bool;
    /// Create a user namespace in a short-lived child. `Err` holds the errno, or minus
    /// the signal number when the child was killed (a seccomp filter that kills).
    fn try_userns(&self) -> Result<(), i32>;
    /// In a short-lived child, create a user namespace and then, inside it, the mount,
    /// PID, IPC, UTS and network namespaces. Same error convention as `try_userns`.
    fn try_userns_inner(&self) -> Result<(), i32>;
    /// Attach with PTRACE_SEIZE to a short-lived child.
    fn try_ptrace(&self) -> Result<(), i32>;
    /// The seccomp actions the kernel offers (`/proc/sys/kernel/seccomp/actions_avail`).
    fn seccomp_actions(&self) -> Option<String>;
    /// Landlock ABI version, or the errno of `landlock_create_ruleset`.
    fn landlock_abi(&self) -> Result<u32, i32>;
    /// Open and close a pidfd for this process.
    fn try_pidfd(&self) -> Result<(), i32>;
    /// The errno `call` fails with when given arguments it must reject: ENOSYS means
    /// the kernel lacks it; 0 means the call did not fail.
    fn syscall_errno(&self, call: Syscall) -> i32;
    /// Kernel name, release, version and machine, as uname(2) reports them.
    fn kernel(&self) -> Option<String>;
    /// Path of the running moat binary, for fixes that must name it.
    fn exe(&self) -> Option<String>;
    /// The cgroup layout a run on this host would use (the same detection).
    fn cgroup_layout(&self) -> Layout;
}

/// The machine this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LiveHost;

/// Run `body` in a forked child and report how it ended: `Ok` for exit status 0, the
/// status as an errno otherwise, minus the signal number if a signal killed it.
///
/// `body` is a plain function so it captures nothing; it must make only
/// async-signal-safe calls, because this process may have other threads whose locks
/// the child inherits held.
fn in_child(body: fn() -> i32) -> Result<(), i32> {
    // SAFETY: the child runs only `body`, which by contract makes raw system calls and
    // nothing that allocates or locks, then `_exit`s.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = body();
            // SAFETY: `_exit` ends the child without running the parent's atexit
            // handlers or flushing its stdio buffers, which the child must not touch.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => reap(child),
        Err(e) => Err(e as i32),
    }
}

fn reap(child: Pid) -> Result<(), i32> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => return Err(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Err(-(sig as i32)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e as i32),
        }
    }
}

fn unshare_errno(flags: CloneFlags) -> i32 {
    match nix::sched::unshare(flags) {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

fn child_new_userns() -> i32 {
    unshare_errno(CloneFlags::CLONE_NEWUSER)
}

fn child_new_userns_and_inner() -> i32 {
    match unshare_errno(CloneFlags::CLONE_NEWUSER) {
        0 => unshare_errno(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWNET,
        ),
        e => e,
    }
}

fn syscall_result(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret < 0 {
        Err(Errno::last_raw())
    } else {
        Ok(ret)
    }
}

impl Host for LiveHost {
    fn cgroup_layout(&self) -> Layout {
        Layout::detect()
    }

    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn euid(&self) -> u32 {
        geteuid().as_raw()
    }

    fn has_cap(&self, cap: Capability) -> bool {
        caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
    }

    fn try_userns(&self) -> Result<(), i32> {
        in_child(child_new_userns)
    }

    fn try_userns_inner(&self) -> Result<(), i32> {
        in_child(child_new_userns_and_inner)
    }

    fn try_ptrace(&self) -> Result<(), i32> {
        // SAFETY: the child makes only the prctl and pause system calls and never
        // returns; see `in_child` for why that matters.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Should this process die before killing the child, the child goes too.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                loop {
                    nix::unistd::pause();
                }
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => return Err(e as i32),
        };
        let seized = nix::sys::ptrace::seize(child, nix::sys::ptrace::Options::PTRACE_O_EXITKILL)
            .map_err(|e| e as i32);
        let _ = kill(child, Signal::SIGKILL);
        let _ = reap(child);
        seized
    }

    fn seccomp_actions(&self) -> Option<String> {
        self.read(SECCOMP_ACTIONS)
    }

    fn landlock_abi(&self) -> Result<u32, i32> {
        // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the kernel
        // only returns the ABI version; it dereferences nothing and creates no file.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        syscall_result(ret).map(|v| v as u32)
    }

    fn try_pidfd(&self) -> Result<(), i32> {
        let pid = std::process::id() as libc::pid_t;
        // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        let fd = syscall_result(ret)?;
        // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        Ok(())
    }

    fn syscall_errno(&self, call: Syscall) -> i32 {
        let ret = match call {
            // SAFETY: a size of 0 is below the smallest struct clone_args, so the kernel
            // fails with EINVAL before reading the null pointer or creating a process.
            Syscall::Clone3 => unsafe {
                libc::syscall(libc::SYS_clone3, std::ptr::null::<libc::c_void>(), 0usize)
            },
            // SAFETY: a size of 0 is below the smallest struct mount_attr, so the kernel
            // fails with EINVAL before looking at the descriptor, path or attributes.
            Syscall::MountSetattr => unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    -1,
                    std::ptr::null::<libc::c_char>(),
                    0u32,
                    std::ptr::null::<libc::c_void>(),
                    0usize,
                )
            },
            // SAFETY: a range whose first descriptor is above its last is rejected with
            // EINVAL before any descriptor is closed.
            Syscall::CloseRange => unsafe {
                libc::syscall(libc::SYS_close_range, 1u32, 0u32, 0u32)
            },
        };
        syscall_result(ret).err().unwrap_or(0)
    }

    fn kernel(&self) -> Option<String> {
        // SAFETY: utsname is plain character arrays, for which all zeroes is valid.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname writes only into the struct it is handed.
        if unsafe { libc::uname(&mut uts) } != 0 {
            return None;
        }
        let field = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Some(format!(
            "{} {} {} {}",
            field(&uts.sysname),
            field(&uts.release),
            field(&uts.version),
            field(&uts.machine)
        ))
    }

    fn exe(&self) -> Option<String> {
        std::env::current_exe()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}
