//! The child's side, one linear sequence: init (PID 1 inside) becomes the inside ids,
//! builds the root and pivots into it, sets the hostname and loopback, forks the
//! program's process and stays behind as its init; the program's process sheds every
//! privilege, loads the seccomp filter and execs.
//!
//! Everything here runs after a clone of a possibly multi-threaded parent: it
//! allocates nothing and takes no lock, it only makes system calls on what
//! [`Prepared`] holds.

use super::mnt::MountOps;
use super::stage::{ChildFailure, Stage};
use super::sys::{self, errno};
use super::{init, net, privs};
use std::ffi::CString;
use std::os::fd::RawFd;

/// Most descriptors one program can be given (stdio plus pipe ends).
pub const MAX_FDS: usize = 64;

/// A work-dir file the program's process opens for one of its descriptors, after it
/// has changed into the jail's working directory.
pub enum Open {
    /// `path` opened with `flags` (mode 0644 when created) onto `target`.
    File {
        target: RawFd,
        path: CString,
        flags: libc::c_int,
    },
    /// `target` becomes a copy of `same_as` (stdout and stderr into one file: one open
    /// file description, so neither overwrites the other).
    Same { target: RawFd, same_as: RawFd },
}

/// Everything the child touches, prepared in the parent before the clone.
pub struct Prepared<'a> {
    pub mounts: &'a MountOps,
    /// The run's detached mounts (id-mapped writable binds), by slot, at or above
    /// `fd_base`; init attaches and closes each while it builds the root.
    pub detached: Vec<RawFd>,
    pub hostname: &'a CString,
    pub program: &'a CString,
    /// NUL-terminated arrays of pointers into the plan's argv and envp.
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
    pub cwd: &'a CString,
    pub filter: libc::sock_fprog,
    pub rlimits: &'a [(crate::config::limits::Resource, libc::rlimit)],
    pub uid: u32,
    pub gid: u32,
    pub drop_groups: bool,
    pub err_fd: RawFd,
    /// init's end of the control socket: the parent's two go-aheads come in on it, and
    /// init's "ready" (with the work dir's descriptor) goes out.
    pub ctl_fd: RawFd,
    /// (target, source): the program's descriptors, sources numbered as in this
    /// process. At most [`MAX_FDS`].
    pub fds: Vec<(RawFd, RawFd)>,
    /// A number above every target; err_fd and ctl_fd are at or above it, and sources
    /// are moved above it before they are placed, so no placement clobbers another.
    pub fd_base: RawFd,
    /// What init keeps open when it starts, sorted: err_fd, ctl_fd, the detached mounts
    /// and the sources.
    pub keep: Vec<RawFd>,
    /// Work-dir files opened by the program's process, in order.
    pub opens: &'a [Open],
    /// The work dir inside, if there is one: init sends the parent a descriptor for it,
    /// from which files are copied out once the jail is gone.
    pub workdir: Option<&'a CString>,
    /// moat's command line in memory (arg_start, arg_end from /proc/self/stat), which
    /// init wipes: it never execs, and /proc/1/cmdline would show it to the program.
    pub args_area: Option<(usize, usize)>,
    /// Bring the loopback up (only when the program may open sockets).
    pub loopback: bool,
    /// Whether init waits, after its "ready", for the parent's second go-ahead (given
    /// once the parent has placed it in the run's cgroup).
    pub await_placement: bool,
    /// The caller's CPU mask, put back by init after its fork and by the program's
    /// process before its exec (setup runs pinned to one CPU; see `spawn::Pin`).
    pub cpus: Option<libc::cpu_set_t>,
    /// The run's wall-time limit, armed as init's own timer (see `arm_wall_alarm`).
    pub wall: Option<libc::timeval>,
}

/// Reports a failure to the parent and leaves. No allocation.
fn fail(p: &Prepared, stage: Stage, index: u32, err: i32) -> ! {
    let rec = ChildFailure::new(stage, index, err);
    // Nothing more can be done if the pipe is gone: the parent then sees the exit code.
    let _ = sys::write_all(p.err_fd, &rec.to_bytes());
    exit(rec.exit_code())
}

/// Leaves at once, running no destructor or atexit handler of the parent's copy of
/// the address space.
fn exit(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Sets every signal but SIGKILL and SIGSTOP to its default action. No allocation.
fn default_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: installing SIG_DFL touches no memory of ours.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

/// Arms init's real-time timer for the run's wall-time limit. When it fires, the
/// SIGALRM stops init (it is traced) and wakes the monitor, which ends the run if the
/// deadline has passed by its own clock: no thread of moat's has to sleep until then.
/// The timer counts from now, after the monitor's start mark, so it never fires
/// before the deadline; it stays with init (the program's process, forked next, does
/// not inherit it), and the program cannot touch it. A SIGALRM the program sends init
/// itself wakes the monitor just the same and, before the deadline, is dropped. No
/// allocation.
fn arm_wall_alarm(p: &Prepared) {
    let Some(value) = p.wall else { return };
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: value,
    };
    // SAFETY: setitimer reads a stack itimerval; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) } < 0 {
        fail(p, Stage::WallTimer, 0, errno());
    }
}

/// Blocks SIGCHLD in the calling thread. No allocation.
fn block_sigchld() {
    // SAFETY: an all-zero sigset_t is a valid set to fill; sigaddset and sigprocmask
    // work on that stack set only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Closes every descriptor but those in `keep` (sorted), so nothing the parent holds,
/// including other jails' pipes opened by other threads, reaches the jail. No
/// allocation.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut from: libc::c_uint = 0;
    for &k in keep {
        if k < 0 || (k as libc::c_uint) < from {
            continue;
        }
        if k as libc::c_uint > from {
            sys::close_range(from, k as libc::c_uint - 1);
        }
        from = k as libc::c_uint + 1;
    }
    sys::close_range(from, libc::c_uint::MAX);
}

/// Puts every source on its target. Sources are first copied above every target
/// (`fd_base`), so a target that is also another entry's source is never overwritten
/// before it is read. No allocation.
fn place_fds(p: &Prepared) {
    let mut moved = [-1 as RawFd; MAX_FDS];
    for (i, &(target, source)) in p.fds.iter().enumerate() {
        match sys::dup_above(source, p.fd_base) {
            Ok(fd) => moved[i] = fd,
            Err(e) => fail(p, Stage::Stdio, target as u32, e),
        }
    }
    for &(_, source) in &p.fds {
        sys::close(source);
    }
    for (i, &(target, _)) in p.fds.iter().enumerate() {
        // dup2 leaves the copy without close-on-exec: the program keeps it.
        if let Err(e) = sys::dup2(moved[i], target) {
            fail(p, Stage::Stdio, target as u32, e);
        }
        sys::close(moved[i]);
    }
}

/// Tells the parent the root is built, handing it the work dir, and, when the parent
/// places it in a cgroup, waits for its go-ahead (given once init is in the run's
/// cgroup: what setup wrote, the files put in above all, is charged to moat, not to
/// the program). No allocation.
fn ready(p: &Prepared) {
    let mut dir = -1;
    if let Some(path) = &p.workdir {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        match sys::open(path, flags, 0) {
            Ok(fd) => dir = fd,
            Err(e) => fail(p, Stage::Ready, 0, e),
        }
    }
    if let Err(e) = sys::send_byte_with_fd(p.ctl_fd, b'r', dir) {
        fail(p, Stage::Ready, 0, e);
    }
    if dir >= 0 {
        sys::close(dir);
    }
    if p.await_placement {
        await_go(p);
    }
    sys::close(p.ctl_fd);
}

/// Waits for one byte from the parent; leaves quietly if it gave up (it kills the jail
/// and reports why itself).
fn await_go(p: &Prepared) {
    let mut byte = 0u8;
    loop {
        // SAFETY: a one-byte read into a stack variable.
        let n = unsafe { libc::read(p.ctl_fd, (&mut byte as *mut u8).cast(), 1) };
        if n == 1 {
            return;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        exit(125);
    }
}

/// Opens the work-dir files the program reads or writes as its stdio. No allocation.
fn open_files(p: &Prepared) {
    for open in p.opens {
        let (target, got) = match open {
            Open::File {
                target,
                path,
                flags,
            } => (*target, sys::open(path, *flags, 0o644)),
            Open::Same { target, same_as } => (*target, sys::dup_above(*same_as, 0)),
        };
        let fd = match got {
            Ok(fd) => fd,
            Err(e) => fail(p, Stage::Open, target as u32, e),
        };
        if fd != target {
            if let Err(e) = sys::dup2(fd, target) {
                fail(p, Stage::Open, target as u32, e);
            }
            sys::close(fd);
        } else if let Err(e) = sys::clear_cloexec(fd) {
            fail(p, Stage::Open, target as u32, e);
        }
    }
}

/// Dies with the parent: until the monitor is attached (EXITKILL) this is what takes
/// the jail down if moat is killed. No allocation.
pub fn die_with_parent() {
    // SAFETY: a prctl with integer arguments on ourselves.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

/// The jail's first process (PID 1 inside). Never returns.
pub fn init_main(p: &Prepared) -> ! {
    die_with_parent();
    close_fds_except(&p.keep);
    // The parent's first go: the id maps are written.
    await_go(p);
    init_go(p)
}

/// init from the parent's first go on (the id maps written, the monitor attached): a
/// jail made ahead enters here once its order has come. Never returns.
pub fn init_go(p: &Prepared) -> ! {
    // The run's descriptors (files, pipes, the output relay's pipes).
    place_fds(p);
    // Init is a copy of moat's memory and runs as the same uid as the program:
    // non-dumpable, the program can neither read it (/proc/1/mem, environ,
    // process_vm_readv) nor attach to it. Only now, since the parent had to write our
    // id maps first (a non-dumpable process's /proc files are root's); the program's
    // own exec makes it dumpable again for itself.
    // SAFETY: a prctl with integer arguments on ourselves.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };

    // Become the inside ids now, while keeping every capability of this user namespace
    // (the old id was not the namespace's root, so nothing is cleared): files the root
    // build creates are then owned by an id that exists inside.
    if p.drop_groups && privs::set_groups_none() < 0 {
        fail(p, Stage::Groups, 0, errno());
    }
    if privs::set_ids(p.uid, p.gid) < 0 {
        fail(p, Stage::Ids, 0, errno());
    }
    if let Err((stage, step, e)) = p.mounts.apply(&p.detached) {
        fail(p, stage, step, e);
    }
    // SAFETY: sethostname with a prepared buffer and its length.
    if unsafe { libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) } < 0 {
        fail(p, Stage::Hostname, 0, errno());
    }
    if p.loopback {
        if let Err(e) = net::loopback_up() {
            fail(p, Stage::Loopback, 0, e);
        }
    }
    ready(p);
    // What both init and the program's process must shed is shed once, here, before
    // the fork, so the program's own path to its exec stays short: every signal to its
    // default action (init never execs, and a PID 1 then ignores whatever the program
    // sends it; the program's process would otherwise have to undo moat's ignored
    // SIGPIPE itself, as ignored signals survive exec), and securebits locked with the
    // bounding set empty (both inherited across fork).
    default_signals();
    if let Err((stage, e)) = privs::lock_securebits_and_bounding() {
        fail(p, stage, 0, e);
    }
    // init waits for its children with wait4 and needs no SIGCHLD: blocked, it is never
    // delivered, so the monitor sees no signal stop of init when the program ends (one
    // round trip fewer on every run's way out). The program's process empties its mask.
    block_sigchld();
    arm_wall_alarm(p);
    let pid = sys::clone_fork(0);
    if pid == 0 {
        program_main(p);
    }
    if pid < 0 {
        fail(p, Stage::Fork, 0, errno());
    }
    if let Some(cpus) = &p.cpus {
        let _ = sys::set_affinity(cpus);
    }
    // Init is a copy of moat that never execs: leave the program nothing in it to
    // target. Wipe moat's command line (readable in /proc/1/cmdline) and give up every
    // capability it still holds in the jail's user namespace.
    if let Some((start, end)) = p.args_area {
        // SAFETY: the argv strings of this process's own (copied) address space; the
        // bounds came from the kernel, and nothing in the child reads argv again.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, end - start) };
    }
    let _ = privs::drop_rest(p.uid, p.gid, false);
    // init needs no descriptor to reap: holding none, it keeps no pipe from its end
    // once the program is gone (the error pipe's copy is the program's, closed on exec).
    sys::close_from(0);
    init::reap_until(pid)
}

/// The program's process: sheds everything, then execs. Never returns.
fn program_main(p: &Prepared) -> ! {
    // A new session without a controlling terminal: the program cannot reach the
    // caller's terminal through /dev/tty or job control.
    // SAFETY: setsid has no arguments.
    if unsafe { libc::setsid() } < 0 {
        fail(p, Stage::Setsid, 0, errno());
    }
    // Every signal has its default action already (init reset them before the fork);
    // the mask must not leak into the program either: init's blocked SIGCHLD, and
    // whatever moat's thread had blocked.
    // SAFETY: an all-zero sigset_t is a valid (empty) set.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigemptyset and sigprocmask on a stack set.
    if unsafe {
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut())
    } < 0
    {
        fail(p, Stage::Signals, 0, errno());
    }
    if let Err(e) = sys::chdir(p.cwd) {
        fail(p, Stage::Chdir, 0, e);
    }
    open_files(p);
    for (i, (resource, limit)) in p.rlimits.iter().enumerate() {
        // SAFETY: setrlimit reads a prepared rlimit struct.
        if unsafe { libc::setrlimit(*resource, limit) } < 0 {
            fail(p, Stage::Rlimit, i as u32, errno());
        }
    }
    if let Err((stage, e)) = privs::drop_rest(p.uid, p.gid, false) {
        fail(p, stage, 0, e);
    }
    // The program runs on every CPU its caller may use, never on the one setup was
    // pinned to.
    if let Some(cpus) = &p.cpus {
        if let Err(e) = sys::set_affinity(cpus) {
            fail(p, Stage::Cpus, 0, e);
        }
    }
    if let Err((stage, e)) = privs::load_filter(&p.filter) {
        fail(p, stage, 0, e);
    }
    // SAFETY: execve with prepared NUL-terminated arrays. The error pipe is O_CLOEXEC,
    // so after a successful exec the program holds only the descriptors it was given.
    unsafe { libc::execve(p.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    fail(p, Stage::Exec, 0, errno())
}
