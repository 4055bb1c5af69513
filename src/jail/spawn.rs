//! Spawn: clone the jail and start the program in it.
//!
//! Parent side, in order: prepare every C string and pointer the child will use, clone
//! into new namespaces, write the id maps, attach the monitor (ptrace) to the new
//! process, then let it go. Child side (no allocation, no locks: the parent may have
//! other threads): become the inside ids, build the root and pivot into it, set the
//! hostname and loopback, then fork the program's process and stay behind as its init.
//! The program's process drops every privilege, loads the seccomp filter and execs.

use crate::jail::mnt::MountOps;
use crate::jail::privs::{self, PrivStep};
use crate::plan::{Plan, NAMESPACES};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A failure in the child, as written to the error pipe: which stage, which step of it,
/// and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ChildFailure {
    pub stage: u32,
    pub index: u32,
    pub errno: i32,
}

pub const STAGE_SYNC: u32 = 1;
pub const STAGE_IDS: u32 = 2;
pub const STAGE_MOUNT: u32 = 3;
pub const STAGE_HOSTNAME: u32 = 4;
pub const STAGE_LOOPBACK: u32 = 5;
pub const STAGE_FORK: u32 = 6;
pub const STAGE_SETSID: u32 = 7;
pub const STAGE_CHDIR: u32 = 8;
pub const STAGE_RLIMIT: u32 = 9;
pub const STAGE_PRIVS: u32 = 10;
pub const STAGE_EXEC: u32 = 11;
pub const STAGE_SIGNALS: u32 = 12;
pub const STAGE_STDIO: u32 = 13;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create the jail's namespaces: {0}")]
    Namespaces(String),
    #[error("cannot use the cgroup given: {0}")]
    Cgroup(String),
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::Sys { what, source }
}

/// Everything the child touches, prepared before the clone.
struct Prepared<'a> {
    mounts: MountOps,
    hostname: CString,
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    filter: libc::sock_fprog,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    uid: u32,
    gid: u32,
    drop_groups: bool,
    err_fd: RawFd,
    go_fd: RawFd,
    /// Descriptors to put on the program's 0, 1 and 2 (-1: keep moat's own).
    stdio: [RawFd; 3],
    /// moat's command line in memory (arg_start, arg_end from /proc/self/stat), which
    /// init wipes: it never execs, and /proc/1/cmdline would show it to the program.
    args_area: Option<(usize, usize)>,
    _plan: &'a Plan,
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
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

impl<'a> Prepared<'a> {
    fn new(plan: &'a Plan, err_fd: RawFd, go_fd: RawFd, stdio: [RawFd; 3]) -> Prepared<'a> {
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        use std::os::unix::ffi::OsStrExt;
        Prepared {
            mounts: MountOps::prepare(&plan.tree),
            hostname: CString::new(plan.policy.hostname.as_bytes()).expect("validated hostname"),
            program: plan.program_c(),
            argv: ptrs(&plan.argv),
            envp: ptrs(&plan.envp),
            cwd: CString::new(plan.policy.cwd.as_os_str().as_bytes()).expect("validated cwd"),
            filter: libc::sock_fprog {
                len: plan.filter.len() as u16,
                filter: plan.filter.insns().as_ptr() as *mut libc::sock_filter,
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
            _plan: plan,
        }
    }
}

/// The running jail, as the parent holds it.
pub struct Jail {
    /// The jail's init (PID 1 inside), our child.
    pub init: libc::pid_t,
    /// A pidfd for init, so a late kill can never hit a recycled pid.
    pub pidfd: Option<OwnedFd>,
    /// Read end of the error pipe: empty unless setup failed before the exec.
    pub errors: OwnedFd,
}

impl Jail {
    /// Kills the whole jail: SIGKILL to its init makes the kernel kill every process in
    /// the PID namespace, including stopped and traced ones.
    pub fn kill(&self) {
        if let Some(fd) = &self.pidfd {
            // SAFETY: pidfd_send_signal on a pidfd we own.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return;
            }
        }
        // SAFETY: init is our child and not yet reaped while the monitor runs.
        unsafe { libc::kill(self.init, libc::SIGKILL) };
    }

    /// Reads what the child reported through the error pipe (call once init is reaped).
    pub fn failures(&self) -> Vec<ChildFailure> {
        let mut out = Vec::new();
        let mut buf = [0u8; std::mem::size_of::<ChildFailure>()];
        loop {
            // SAFETY: read into a stack buffer of the given size.
            let n =
                unsafe { libc::read(self.errors.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n != buf.len() as isize {
                break;
            }
            let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
            out.push(ChildFailure {
                stage: word(0),
                index: word(4),
                errno: word(8) as i32,
            });
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

fn pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a stack array; both fds are owned right after.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(sys("creating a pipe")(std::io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptors from pipe2.
    unsafe { Ok((OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))) }
}

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
    before_start: &dyn Fn(libc::pid_t) -> std::io::Result<()>,
) -> Result<Jail, SpawnError> {
    let (err_r, err_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // The parent reads errors without blocking once the jail is gone.
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(err_r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let prepared = Prepared::new(plan, err_w.as_raw_fd(), go_r.as_raw_fd(), stdio);

    let mut flags: libc::c_int = NAMESPACES.iter().fold(0, |acc, (_, f)| acc | f);
    let pid = loop {
        // SAFETY: a fork-like clone (no new stack, no shared memory). The child runs
        // only `child_main`, which never returns and allocates nothing.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if pid == 0 {
            child_main(&prepared);
        }
        if pid > 0 {
            break pid as libc::pid_t;
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // Kernels without cgroup namespaces refuse the flag; the jail works without it.
        if errno == libc::EINVAL && flags & libc::CLONE_NEWCGROUP != 0 {
            flags &= !libc::CLONE_NEWCGROUP;
            continue;
        }
        return Err(SpawnError::Namespaces(
            crate::check::explain_userns_failure(errno),
        ));
    };
    drop(err_w);
    drop(go_r);

    // SAFETY: pidfd_open on our own unreaped child.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor when non-negative.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as RawFd) });
    let jail = Jail {
        init: pid,
        pidfd,
        errors: err_r,
    };
    let abort = |e: SpawnError| {
        jail.kill();
        // SAFETY: reap the child we just killed so nothing is left behind.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) };
        e
    };

    if let Err(e) = plan.ids.write(pid) {
        return Err(abort(sys("writing the id maps")(e)));
    }
    if let Err(e) = before_start(pid) {
        return Err(abort(sys("placing the jail in its cgroup")(e)));
    }
    // Attach before the child does anything: every process it starts is then traced
    // from birth, and EXITKILL kills the jail if moat itself dies.
    // SAFETY: PTRACE_SEIZE of our own child with an options word.
    let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, PTRACE_OPTIONS as libc::c_long) };
    if r < 0 {
        return Err(abort(sys("attaching the monitor (ptrace)")(
            std::io::Error::last_os_error(),
        )));
    }
    // SAFETY: write one byte from a static buffer.
    let w = unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) };
    if w != 1 {
        return Err(abort(sys("starting the jail")(
            std::io::Error::last_os_error(),
        )));
    }
    drop(go_w);
    drop(prepared);
    Ok(jail)
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Reports a failure to the parent and leaves. No allocation.
fn fail(p: &Prepared, stage: u32, index: u32, err: i32) -> ! {
    let rec = ChildFailure {
        stage,
        index,
        errno: err,
    };
    // SAFETY: write of a plain repr(C) struct; then _exit, which runs no destructors.
    unsafe {
        libc::write(
            p.err_fd,
            (&rec as *const ChildFailure).cast(),
            std::mem::size_of::<ChildFailure>(),
        );
        let code = match (stage, err) {
            (STAGE_EXEC, libc::ENOENT) => 127,
            (STAGE_EXEC, _) => 126,
            _ => 125,
        };
        libc::_exit(code)
    }
}

/// Closes every descriptor but stdio and `keep` (-1 entries ignored), so nothing the
/// parent holds, including other jails' pipes opened by other threads, reaches the
/// jail. No allocation.
fn close_fds_except(mut keep: [RawFd; 5]) {
    keep.sort_unstable();
    let close = |from: libc::c_uint, to: libc::c_uint| {
        if from > to {
            return;
        }
        // SAFETY: close_range on our own descriptor table.
        if unsafe { libc::syscall(libc::SYS_close_range, from, to, 0) } < 0 {
            // Kernels before 5.9: close one by one up to a sane bound.
            for fd in from..=to.min(65_535) {
                // SAFETY: closing a descriptor number nothing else in the child uses.
                unsafe { libc::close(fd as RawFd) };
            }
        }
    };
    let mut from: libc::c_uint = 3;
    for k in keep {
        if k < 0 || (k as libc::c_uint) < from {
            continue;
        }
        close(from, k as libc::c_uint - 1);
        from = k as libc::c_uint + 1;
    }
    close(from, libc::c_uint::MAX);
}

/// The jail's first process (PID 1 inside). Never returns.
fn child_main(p: &Prepared) -> ! {
    // SAFETY (this function): system calls on prepared data only.
    unsafe {
        // Die with moat: until the monitor is attached (EXITKILL) this is what takes the
        // jail down if moat is killed.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    close_fds_except([p.err_fd, p.go_fd, p.stdio[0], p.stdio[1], p.stdio[2]]);
    let mut byte = 0u8;
    // SAFETY: one-byte read into a stack variable.
    let n = unsafe { libc::read(p.go_fd, (&mut byte as *mut u8).cast(), 1) };
    if n != 1 {
        // The parent died or gave up before the maps were written: nothing to do.
        // SAFETY: leave at once.
        unsafe { libc::_exit(125) };
    }
    // SAFETY: descriptor operations on our own table; a prctl on ourselves.
    unsafe {
        libc::close(p.go_fd);
        // The run's stdin/stdout/stderr (files, or the output relay's pipes).
        for (target, fd) in p.stdio.iter().copied().enumerate() {
            if fd >= 0 && fd != target as RawFd && libc::dup2(fd, target as RawFd) < 0 {
                fail(p, STAGE_STDIO, target as u32, errno());
            }
        }
        for fd in p.stdio {
            if fd > 2 {
                libc::close(fd);
            }
        }
        // Init is a copy of moat's memory and runs as the same uid as the program:
        // non-dumpable, the program can neither read it (/proc/1/mem, environ,
        // process_vm_readv) nor attach to it. Only now, since the parent had to
        // write our id maps first (a non-dumpable process's /proc files are root's);
        // the program's own exec makes it dumpable again for itself.
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }

    // Become the inside ids now, while keeping every capability of this user namespace
    // (the old id was not the namespace's root, so nothing is cleared): files the root
    // build creates are then owned by an id that exists inside.
    if p.drop_groups && privs::set_groups_none() < 0 {
        fail(p, STAGE_IDS, 0, errno());
    }
    if privs::set_ids(p.uid, p.gid) < 0 {
        fail(p, STAGE_IDS, 1, errno());
    }
    if let Err((step, e)) = p.mounts.apply() {
        fail(p, STAGE_MOUNT, step, e);
    }
    // SAFETY: sethostname with a prepared buffer and its length.
    if unsafe { libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) } < 0 {
        fail(p, STAGE_HOSTNAME, 0, errno());
    }
    if let Err(e) = crate::jail::net::loopback_up() {
        fail(p, STAGE_LOOPBACK, 0, e);
    }
    // SAFETY: fork-like clone; the child runs only `sandboxee`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        sandboxee(p);
    }
    if pid < 0 {
        fail(p, STAGE_FORK, 0, errno());
    }
    // Init is a copy of moat that never execs: leave the program nothing in it to
    // target. Wipe moat's command line (readable in /proc/1/cmdline), give every
    // signal its default action (a PID 1 then ignores whatever the program sends it),
    // and give up every capability it still holds in the jail's user namespace.
    if let Some((start, end)) = p.args_area {
        // SAFETY: the argv strings of this process's own (copied) address space; the
        // bounds came from the kernel, and nothing in the child reads argv again.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
    }
    // SAFETY: resetting dispositions in our own process.
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP && sig != libc::SIGCHLD {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
    let _ = privs::drop_all(p.uid, p.gid, false);
    crate::jail::init::reap_until(pid as libc::pid_t)
}

/// The program's process: sheds everything, then execs. Never returns.
fn sandboxee(p: &Prepared) -> ! {
    // SAFETY (this function): system calls on prepared data only.
    unsafe {
        // A new session without a controlling terminal: the program cannot reach the
        // caller's terminal through /dev/tty or job control.
        if libc::setsid() < 0 {
            fail(p, STAGE_SETSID, 0, errno());
        }
        // Ignored signals survive exec; moat's own (SIGPIPE ignored by the Rust
        // runtime) must not leak into the program, nor a blocked mask.
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) < 0 {
            fail(p, STAGE_SIGNALS, 0, errno());
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            fail(p, STAGE_CHDIR, 0, errno());
        }
        for (i, (resource, limit)) in p.rlimits.iter().enumerate() {
            if libc::setrlimit(*resource, limit) < 0 {
                fail(p, STAGE_RLIMIT, i as u32, errno());
            }
        }
    }
    if let Err((step, e)) = privs::drop_all(p.uid, p.gid, false) {
        fail(p, STAGE_PRIVS, step as u32, e);
    }
    if let Err((step, e)) = privs::load_filter(&p.filter) {
        fail(p, STAGE_PRIVS, step as u32, e);
    }
    // SAFETY: execve with prepared NUL-terminated arrays. The error pipe is O_CLOEXEC,
    // so after a successful exec the program holds only fds 0, 1 and 2.
    unsafe { libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    fail(p, STAGE_EXEC, 0, errno())
}

/// A readable description of a child failure, for the report.
pub fn describe(plan: &Plan, f: &ChildFailure) -> String {
    let err = std::io::Error::from_raw_os_error(f.errno);
    let what = match f.stage {
        STAGE_SYNC => "waiting for the monitor".to_string(),
        STAGE_IDS => "switching to the inside ids".to_string(),
        STAGE_MOUNT => crate::jail::mnt::describe_step(&plan.tree, f.index),
        STAGE_HOSTNAME => "setting the hostname".to_string(),
        STAGE_LOOPBACK => "bringing up the loopback interface".to_string(),
        STAGE_FORK => "starting the program's process".to_string(),
        STAGE_SETSID => "starting a new session".to_string(),
        STAGE_CHDIR => format!(
            "changing to the working directory {}",
            plan.policy.cwd.display()
        ),
        STAGE_RLIMIT => "setting resource limits".to_string(),
        STAGE_PRIVS => PrivStep::from_u32(f.index)
            .map_or("dropping privileges", PrivStep::describe)
            .to_string(),
        STAGE_SIGNALS => "resetting the signal mask".to_string(),
        STAGE_STDIO => format!("connecting the program's fd {}", f.index),
        STAGE_EXEC => format!("executing {}", plan.program.display()),
        _ => format!("stage {}", f.stage),
    };
    let hint = match (f.stage, f.errno) {
        (STAGE_MOUNT, libc::EACCES) if plan.ids.privileged => {
            " (as root, the jail runs as uid 65534 outside: every bound path must be readable by it)"
        }
        (STAGE_CHDIR, libc::ENOENT) => " (bind the directory, e.g. --bind DIR, or pick another --cwd)",
        (STAGE_EXEC, libc::ENOENT) => " (the program or its interpreter is missing inside the jail)",
        (STAGE_EXEC, libc::EACCES) => {
            " (the program is not executable by the jail's user, or sits on a writable (noexec) mount)"
        }
        _ => "",
    };
    format!("{what} failed: {err}{hint}")
}
