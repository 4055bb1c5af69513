//! Spawn, parent side, in order: prepare every C string and pointer the child will
//! use, clone into new namespaces, write the id maps, let the caller place init (in a
//! cgroup), attach the monitor (ptrace) to it, then let it go. What the child does is
//! in [`super::child`].

use super::child::{init_main, Prepared};
use super::mnt::{MountOps, NulInPath};
use super::stage::ChildFailure;
use super::sys;
use crate::plan::{Plan, NAMESPACES};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// Why the jail could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JailError {
    /// The kernel refused the clone with new namespaces: user namespaces are blocked
    /// or exhausted on this host (see `moat check` for the cause and the fix).
    #[error("cannot create the jail's namespaces: {}", io::Error::from_raw_os_error(*.errno))]
    Namespaces {
        /// The errno of the clone.
        errno: i32,
    },
    /// A planned string the kernel would have to take holds a NUL byte.
    #[error("cannot hand the plan to the kernel: {0}")]
    Nul(String),
    /// A step of the parent's side failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: &'static str,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

impl From<NulInPath> for JailError {
    fn from(e: NulInPath) -> JailError {
        JailError::Nul(e.to_string())
    }
}

fn sys_err(what: &'static str) -> impl FnOnce(io::Error) -> JailError {
    move |source| JailError::Sys { what, source }
}

/// The start and end of this process's argv strings (they never move), read once.
fn args_area() -> Option<(usize, usize)> {
    static AREA: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *AREA.get_or_init(read_args_area)
}

/// Fields 48 and 49 of /proc/self/stat.
fn read_args_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses; fields count from the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

fn cstring(bytes: &[u8]) -> Result<CString, JailError> {
    CString::new(bytes).map_err(|_| JailError::Nul(String::from_utf8_lossy(bytes).into_owned()))
}

fn prepare(
    plan: &Plan,
    err_fd: RawFd,
    go_fd: RawFd,
    stdio: [RawFd; 3],
) -> Result<Prepared, JailError> {
    let ptrs = |v: &[CString]| {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect::<Vec<_>>()
    };
    let insns = plan.filter.insns();
    Ok(Prepared {
        mounts: MountOps::prepare(&plan.tree)?,
        hostname: cstring(plan.policy.hostname.as_bytes())?,
        program: cstring(plan.program.as_os_str().as_bytes())?,
        argv: ptrs(&plan.argv),
        envp: ptrs(&plan.envp),
        cwd: cstring(plan.policy.cwd.as_os_str().as_bytes())?,
        filter: libc::sock_fprog {
            // The compiler refuses programs longer than the kernel's 4096 instructions.
            len: u16::try_from(insns.len()).map_err(|_| JailError::Nul("filter".into()))?,
            filter: insns.as_ptr() as *mut libc::sock_filter,
        },
        rlimits: plan
            .rlimits
            .iter()
            .map(|&(r, soft, hard)| {
                (
                    r,
                    libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    },
                )
            })
            .collect(),
        uid: plan.ids.inside_uid,
        gid: plan.ids.inside_gid,
        drop_groups: plan.ids.may_setgroups(),
        err_fd,
        go_fd,
        stdio,
        args_area: args_area(),
    })
}

fn kill_init(init: libc::pid_t, pidfd: Option<&OwnedFd>) {
    if let Some(fd) = pidfd {
        if sys::pidfd_kill(fd).is_ok() {
            return;
        }
    }
    // SAFETY: init is our child and not yet reaped while the monitor runs.
    unsafe { libc::kill(init, libc::SIGKILL) };
}

/// The running jail, as the parent holds it.
pub struct Jail {
    /// The jail's init (PID 1 inside), our child.
    pub init: libc::pid_t,
    /// A pidfd for init, so a late kill can never hit a recycled pid.
    pidfd: Option<Arc<OwnedFd>>,
    /// Read end of the error pipe: empty unless setup failed before the exec.
    errors: OwnedFd,
}

impl Jail {
    /// Kills the whole jail: SIGKILL to its init makes the kernel kill every process in
    /// the PID namespace, including stopped and traced ones.
    pub fn kill(&self) {
        kill_init(self.init, self.pidfd.as_deref());
    }

    /// A handle that kills the jail from any thread, for as long as anyone holds it.
    /// Through the pidfd it can never hit another process, even after the jail is
    /// gone; without one (kernels before 5.3) only while the jail is being watched.
    pub fn killer(&self) -> Arc<dyn Fn() + Send + Sync> {
        let (init, pidfd) = (self.init, self.pidfd.clone());
        Arc::new(move || kill_init(init, pidfd.as_deref()))
    }

    /// What the child reported through the error pipe (call once init is reaped).
    pub fn failures(&self) -> Vec<ChildFailure> {
        let mut out = Vec::new();
        let mut buf = [0u8; ChildFailure::SIZE];
        loop {
            // SAFETY: read into a stack buffer of the given size.
            let n =
                unsafe { libc::read(self.errors.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n != buf.len() as isize {
                break;
            }
            out.push(ChildFailure::from_bytes(&buf));
        }
        out
    }
}

const PTRACE_OPTIONS: libc::c_int = libc::PTRACE_O_EXITKILL
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACEEXIT;

/// Clones the jail and attaches the monitor. Returns once the child has been let go.
/// Must be called from the thread that will run the monitor: ptrace ties a tracee to
/// the thread that attached it.
///
/// `stdio`: descriptors for the program's stdin, stdout and stderr (-1 keeps moat's).
/// `before_start`: runs with init's pid after the id maps are written and before init
/// does anything, e.g. to put it into the run's cgroup (every process it starts then
/// starts there too).
pub fn spawn(
    plan: &Plan,
    stdio: [RawFd; 3],
    before_start: &dyn Fn(libc::pid_t) -> io::Result<()>,
) -> Result<Jail, JailError> {
    let (err_r, err_w) = sys::pipe().map_err(sys_err("creating a pipe"))?;
    let (go_r, go_w) = sys::pipe().map_err(sys_err("creating a pipe"))?;
    // The parent reads errors without blocking once the jail is gone.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(err_r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let prepared = prepare(plan, err_w.as_raw_fd(), go_r.as_raw_fd(), stdio)?;

    let mut flags: libc::c_int = NAMESPACES.iter().fold(0, |acc, (_, f)| acc | f);
    let pid = loop {
        let pid = sys::clone_fork(flags);
        if pid == 0 {
            init_main(&prepared);
        }
        if pid > 0 {
            break pid;
        }
        let errno = sys::errno();
        // Kernels without cgroup namespaces refuse the flag; the jail works without it.
        if errno == libc::EINVAL && flags & libc::CLONE_NEWCGROUP != 0 {
            flags &= !libc::CLONE_NEWCGROUP;
            continue;
        }
        return Err(JailError::Namespaces { errno });
    };
    drop(err_w);
    drop(go_r);

    let jail = Jail {
        init: pid,
        pidfd: sys::pidfd_open(pid).ok().map(Arc::new),
        errors: err_r,
    };
    let abort = |e: JailError| {
        jail.kill();
        // SAFETY: reap the child we just killed so nothing is left behind.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) };
        e
    };

    if let Err(e) = plan.ids.write(pid) {
        return Err(abort(sys_err("writing the id maps")(e)));
    }
    if let Err(e) = before_start(pid) {
        return Err(abort(sys_err("placing the jail in its cgroup")(e)));
    }
    // Attach before the child does anything: every process it starts is then traced
    // from birth, and EXITKILL kills the jail if moat itself dies.
    // SAFETY: PTRACE_SEIZE of our own child with an options word.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, PTRACE_OPTIONS as libc::c_long) };
    if r < 0 {
        return Err(abort(sys_err("attaching the monitor (ptrace)")(
            io::Error::last_os_error(),
        )));
    }
    if let Err(e) = sys::write_all(go_w.as_raw_fd(), b"g") {
        return Err(abort(sys_err("starting the jail")(
            io::Error::from_raw_os_error(e),
        )));
    }
    drop(go_w);
    drop(prepared);
    Ok(jail)
}
