//! Spawn, parent side, in order: prepare every C string and pointer the child will
//! use, clone into new namespaces, write the id maps, attach the monitor (ptrace) to
//! init and let it build the root; once it says it is ready (handing over the work
//! dir), let the caller place it (in a cgroup), then let it start the program. What
//! the child does is in [`super::child`].

use super::child::{init_main, MAX_FDS};
use super::idmap::{self, IdmapError};
use super::mnt::NulInPath;
use super::order::{args_area, Order};
pub use super::order::{Wiring, WorkdirOpen};
use super::pool::PreJail;
use super::stage::ChildFailure;
use super::sys;
use crate::plan::{Plan, NAMESPACES};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

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
    /// A writable bind a root caller's jail could not write cannot be made writable
    /// for it (see [`super::idmap`]); the message names the path and the fix.
    #[error(transparent)]
    Idmap(#[from] IdmapError),
    /// A planned string the kernel would have to take holds a NUL byte.
    #[error("cannot hand the plan to the kernel: {0}")]
    Nul(String),
    /// The program's descriptors cannot be wired as asked.
    #[error("cannot wire the program's descriptors: {0}")]
    Wiring(String),
    /// init did not finish building the jail within the run's wall-time limit.
    #[error("building the jail took longer than the wall-time limit of {}ms", .limit.as_millis())]
    Stalled {
        /// The wall-time limit.
        limit: Duration,
    },
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

/// This thread pinned to the CPU it runs on while the jail is set up, and the mask it
/// had. Setup is a ping-pong between this thread, init and the program's process (go,
/// ready, go, the fork and exec stops), each waiting for the other: on one CPU every
/// hand-over is a wakeup there, not an interrupt to another CPU and a migration
/// (measured on a 2-CPU VM: 0.4 ms less per run). The children inherit the pin; the
/// program's process puts the caller's mask back before it execs, init after its fork,
/// and this thread when the guard goes.
struct Pin {
    saved: Option<libc::cpu_set_t>,
}

impl Pin {
    fn here() -> Pin {
        let saved = sys::affinity();
        let pinned = saved.is_some_and(|_| {
            sys::current_cpu().is_some_and(|cpu| {
                // SAFETY: an all-zero cpu_set_t is the empty set.
                let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                cpu < 8 * std::mem::size_of::<libc::cpu_set_t>() && {
                    // SAFETY: the bit is within the set, as just checked.
                    unsafe { libc::CPU_SET(cpu, &mut one) };
                    sys::set_affinity(&one).is_ok()
                }
            })
        });
        Pin {
            saved: saved.filter(|_| pinned),
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Some(set) = &self.saved {
            let _ = sys::set_affinity(set);
        }
    }
}

/// Every descriptor the program gets, checked: each target once, at most [`MAX_FDS`]
/// of them, none negative.
fn targets(wiring: &Wiring) -> Result<RawFd, JailError> {
    let mut seen = std::collections::BTreeSet::new();
    let all = wiring
        .fds
        .iter()
        .map(|(t, _)| *t)
        .chain(wiring.opens.iter().map(|(t, _)| *t));
    for t in all {
        if t < 0 || !seen.insert(t) {
            return Err(JailError::Wiring(format!(
                "fd {t} is given twice or is negative"
            )));
        }
    }
    if seen.len() > MAX_FDS {
        return Err(JailError::Wiring(format!(
            "{} descriptors; at most {MAX_FDS}",
            seen.len()
        )));
    }
    Ok(seen.last().copied().unwrap_or(2).max(2))
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
    /// The work dir, as init handed it over: it stays readable after the jail is gone,
    /// for as long as this is held.
    pub workdir: Option<OwnedFd>,
    /// When each step of the start was done, for the run's timings.
    pub marks: Marks,
    /// A stop of init's that the start already waited for and the monitor must handle
    /// first (its wait status): when init went on without a second go-ahead, a stop it
    /// reached after its "ready" (its fork of the program, its alarm, its exit) while
    /// the start was looking at it.
    pub pending_stop: Option<i32>,
}

/// When the parent passed each step of the jail's start.
#[derive(Debug, Clone, Copy)]
pub struct Marks {
    /// The clone returned: the namespaces exist.
    pub cloned: std::time::Instant,
    /// The id maps are written and the monitor attached.
    pub attached: Option<std::time::Instant>,
    /// init said the root is built.
    pub ready: Option<std::time::Instant>,
    /// init was placed in its cgroup and let go to start the program (without a cgroup,
    /// init needs no go-ahead: the same moment as `ready`).
    pub released: Option<std::time::Instant>,
}

impl Jail {
    /// A jail whose init is `pid`, just cloned or just taken from the pool.
    fn started(pid: libc::pid_t, pidfd: Option<OwnedFd>, errors: OwnedFd) -> Jail {
        Jail {
            init: pid,
            pidfd: pidfd.map(Arc::new),
            errors,
            workdir: None,
            pending_stop: None,
            marks: Marks {
                cloned: std::time::Instant::now(),
                attached: None,
                ready: None,
                released: None,
            },
        }
    }

    /// Kills the whole jail: SIGKILL to its init makes the kernel kill every process in
    /// the PID namespace, including stopped and traced ones.
    pub fn kill(&self) {
        kill_init(self.init, self.pidfd.as_deref());
    }

    /// A copy of init's pidfd (None on kernels without pidfds), for a registration that
    /// must kill the jail from a signal handler.
    pub fn pidfd_copy(&self) -> Option<OwnedFd> {
        self.pidfd.as_ref()?.try_clone().ok()
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

/// The monitor's ptrace options, for init and (inherited) every process of the jail.
pub const PTRACE_OPTIONS: libc::c_int = libc::PTRACE_O_EXITKILL
    | libc::PTRACE_O_TRACESECCOMP
    | libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACEEXIT;

/// Clones the jail and attaches the monitor. Returns once init has built the root and
/// has been let go to start the program. Must be called from the thread that will run
/// the monitor: ptrace ties a tracee to the thread that attached it.
///
/// `wiring`: the program's descriptors. `before_start`: runs with init's pid once the
/// root is built and before the program's process exists, e.g. to put init into the
/// run's cgroup (every process it starts then starts there too; what init wrote while
/// building, the work dir's files above all, stays charged to moat). Without one, init
/// starts the program as soon as it has said it is ready, with no second go-ahead to
/// wait for: one hand-over fewer.
pub fn spawn(
    plan: &Plan,
    wiring: &Wiring,
    before_start: Option<&dyn Fn(libc::pid_t) -> io::Result<()>>,
) -> Result<Jail, JailError> {
    let fd_base = targets(wiring)? + 1;
    // Before anything of the jail exists: a writable bind that cannot be made writable
    // for it is refused here.
    let detached = idmap::detach(&plan.tree, &plan.ids, plan.setid_guard)?;
    let (err_r, err_w) = sys::pipe().map_err(sys_err("creating a pipe"))?;
    let (ctl, ctl_child) = sys::socketpair().map_err(sys_err("creating a socket pair"))?;
    // The child's own descriptors sit above every target, so placing the program's
    // descriptors never overwrites them.
    let above = |fd: OwnedFd| -> Result<OwnedFd, JailError> {
        if fd.as_raw_fd() >= fd_base {
            return Ok(fd);
        }
        let moved = sys::dup_above(fd.as_raw_fd(), fd_base)
            .map_err(|e| sys_err("moving a descriptor")(io::Error::from_raw_os_error(e)))?;
        // SAFETY: a fresh descriptor from fcntl, owned by no one else.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(moved) })
    };
    let err_w = above(err_w)?;
    let ctl_child = above(ctl_child)?;
    let mounts = detached
        .fds
        .into_iter()
        .map(above)
        .collect::<Result<Vec<_>, _>>()?;
    let mount_fds: Vec<RawFd> = mounts.iter().map(AsRawFd::as_raw_fd).collect();
    // The parent reads errors without blocking once the jail is gone.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(err_r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let pin = Pin::here();
    let order = Order::new(plan, wiring, before_start.is_some(), &detached.steps)?;
    let sources: Vec<RawFd> = wiring.fds.iter().map(|(_, s)| *s).collect();
    let prepared = order.prepared(
        err_w.as_raw_fd(),
        ctl_child.as_raw_fd(),
        &sources,
        fd_base,
        pin.saved,
        args_area(),
        &mount_fds,
    );

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
    drop(ctl_child);
    // init has its own copies: the parent's go, and a mount init never attaches
    // dissolves with the last of them.
    drop(mounts);

    let jail = Jail::started(pid, sys::pidfd_open(pid).ok(), err_r);
    if let Err(e) = plan.ids.write(pid) {
        jail.kill();
        reap(pid);
        return Err(sys_err("writing the id maps")(e));
    }
    // Attach before the child does anything: every process it starts is then traced
    // from birth, and EXITKILL kills the jail if moat itself dies.
    attach(&jail)?;
    send_go(&jail, &ctl)?;
    let jail = finish(jail, &ctl, plan, before_start)?;
    drop(prepared);
    drop(pin);
    Ok(jail)
}

/// Kills a jail whose start failed and reaps it, giving back why.
fn abort(jail: &Jail, e: JailError) -> JailError {
    jail.kill();
    reap(jail.init);
    e
}

/// `PTRACE_SEIZE` of init with the monitor's options.
fn attach(jail: &Jail) -> Result<(), JailError> {
    // SAFETY: PTRACE_SEIZE of a process of ours with an options word.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            jail.init,
            0,
            PTRACE_OPTIONS as libc::c_long,
        )
    };
    if r < 0 {
        return Err(abort(
            jail,
            sys_err("attaching the monitor (ptrace)")(io::Error::last_os_error()),
        ));
    }
    Ok(())
}

fn send_go(jail: &Jail, ctl: &OwnedFd) -> Result<(), JailError> {
    sys::send_byte_with_fd(ctl.as_raw_fd(), b'g', -1).map_err(|e| {
        abort(
            jail,
            sys_err("starting the jail")(io::Error::from_raw_os_error(e)),
        )
    })
}

/// The start from init's go on, the same for a jail cloned now and one made ahead:
/// wait until init has built the root, let the caller place it, let it go.
fn finish(
    mut jail: Jail,
    ctl: &OwnedFd,
    plan: &Plan,
    before_start: Option<&dyn Fn(libc::pid_t) -> io::Result<()>>,
) -> Result<Jail, JailError> {
    jail.marks.attached = Some(std::time::Instant::now());
    match await_ready(ctl, &jail.errors, jail.init, plan.policy.limits.wall_time) {
        Err(e) => return Err(abort(&jail, e)),
        Ok(Setup::Ended) => {}
        Ok(Setup::Ready(workdir, stop)) => {
            jail.marks.ready = Some(std::time::Instant::now());
            jail.workdir = workdir;
            jail.pending_stop = stop;
            if let Some(place) = before_start {
                if let Err(e) = place(jail.init) {
                    return Err(abort(&jail, sys_err("placing the jail in its cgroup")(e)));
                }
                send_go(&jail, ctl)?;
            }
            jail.marks.released = Some(std::time::Instant::now());
        }
    }
    Ok(jail)
}

/// Starts the run in a jail made ahead (see [`super::pool`]): attaches the monitor,
/// then sends init the run's order with the program's descriptors. From init's "ready"
/// on, the same as [`spawn`]. Must be called from the thread that will run the
/// monitor.
pub fn adopt(
    pre: PreJail,
    plan: &Plan,
    wiring: &Wiring,
    before_start: Option<&dyn Fn(libc::pid_t) -> io::Result<()>>,
) -> Result<Jail, JailError> {
    targets(wiring)?;
    // Refused before the jail is taken over: dropping `pre` kills it.
    let detached = idmap::detach(&plan.tree, &plan.ids, plan.setid_guard)?;
    let (pid, pidfd, ctl) = pre.take();
    let (err_r, err_w) = sys::pipe().map_err(sys_err("creating a pipe"))?;
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(err_r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let jail = Jail::started(pid, Some(pidfd), err_r);
    attach(&jail)?;
    let order = Order::new(plan, wiring, before_start.is_some(), &detached.steps)
        .map_err(|e| abort(&jail, e.into()))?;
    let bytes = order.encode();
    let sent = sys::memfd_with(&bytes).and_then(|memfd| {
        let mut head = [b'o', 0, 0, 0, 0, 0, 0, 0, 0];
        head[1..].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        let mut fds = vec![memfd.as_raw_fd(), err_w.as_raw_fd()];
        fds.extend(wiring.fds.iter().map(|(_, s)| *s));
        // The detached mounts last, in slot order (see `pool::await_order`).
        fds.extend(detached.fds.iter().map(AsRawFd::as_raw_fd));
        sys::send_with_fds(ctl.as_raw_fd(), &head, &fds)
    });
    drop(err_w);
    drop(detached);
    if let Err(e) = sent {
        return Err(abort(&jail, sys_err("sending the jail its order")(e)));
    }
    finish(jail, &ctl, plan, before_start)
}

/// Reaps init after a kill, so nothing is left behind: a traced child may first report
/// stops (its exit event), which are let go until it is gone.
fn reap(pid: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a stack status word.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r < 0 {
            if sys::errno() == libc::EINTR {
                continue;
            }
            return;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return;
        }
        // SAFETY: PTRACE_CONT of our stopped tracee, no signal.
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) };
    }
}

/// What init did while the parent waited for it to be ready.
enum Setup {
    /// Ready, with the work dir's descriptor if it has one, and a stop of init's after
    /// its ready that was already waited for, if there was one.
    Ready(Option<OwnedFd>, Option<i32>),
    /// It failed (its error pipe says why) or ended without a word; the monitor reaps
    /// it, and the report tells.
    Ended,
}

/// Waits for init's "ready" and the work dir that comes with it, up to `limit` (the
/// run's wall limit). init that fails writes to its error pipe and exits; as a tracee
/// it then stops at its exit event, still holding its end of the control socket, so the
/// error pipe is watched as well, and init's own state looked at between polls: a stop
/// for a signal is let go with the signal (as the monitor would), an exit stop or an
/// exit means it will never be ready.
fn await_ready(
    ctl: &OwnedFd,
    errors: &OwnedFd,
    pid: libc::pid_t,
    limit: Option<Duration>,
) -> Result<Setup, JailError> {
    const SLICE: Duration = Duration::from_millis(20);
    let deadline = limit.map(|l| std::time::Instant::now() + l);
    loop {
        let mut fds = [
            libc::pollfd {
                fd: ctl.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: errors.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on a live array of two pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, SLICE.as_millis() as i32) };
        if r < 0 && sys::errno() != libc::EINTR {
            return Err(sys_err("waiting for the jail")(io::Error::last_os_error()));
        }
        let ready = |stop: Option<i32>| match sys::recv_byte_with_fd(ctl.as_raw_fd()) {
            Ok(Some((b'r', fd))) => Ok(Setup::Ready(fd, stop)),
            Ok(_) => Ok(Setup::Ended),
            Err(e) => Err(sys_err("waiting for the jail")(e)),
        };
        if fds[0].revents != 0 {
            return ready(None);
        }
        if fds[1].revents != 0 {
            return Ok(Setup::Ended);
        }
        let mut status = 0;
        // SAFETY: a non-blocking waitpid on our own child with a stack status word.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if got == pid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Ok(Setup::Ended);
            }
            // A stop after init's "ready" (which it sends before anything else, so it
            // is waiting in the socket) is the monitor's to handle: init's fork of the
            // program, or its wall-time alarm, when init went on without a second
            // go-ahead.
            let mut ctl_now = [libc::pollfd {
                fd: ctl.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll on a live array of one pollfd, not waiting.
            if unsafe { libc::poll(ctl_now.as_mut_ptr(), 1, 0) } > 0 {
                return ready(Some(status));
            }
            let exiting = status >> 16 == libc::PTRACE_EVENT_EXIT;
            let sig = if status >> 16 == 0 {
                libc::WSTOPSIG(status)
            } else {
                0
            };
            // SAFETY: PTRACE_CONT of our stopped tracee, with the signal it stopped for.
            unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, sig as libc::c_long) };
            if exiting {
                return Ok(Setup::Ended);
            }
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(JailError::Stalled {
                limit: limit.unwrap_or_default(),
            });
        }
    }
}
