//! Jails made ahead of demand: a fork server, as Sandbox2 has, and the pool it fills.
//!
//! The fork server is a small process forked from moat while moat is still
//! single-threaded (see [`ForkServer::start`]), so the jails it clones may allocate
//! while they wait: each is cloned with its namespaces, has its id maps written, and
//! blocks in init on its control socket. A run takes one, attaches the monitor with
//! `PTRACE_SEIZE` (before anything in it has run that the plan decided), and sends it
//! the run's order ([`super::order`]): from there on it runs the same setup a freshly
//! cloned jail runs. Every jail serves one run and is destroyed with it; nothing of
//! one run reaches the next.
//!
//! The network namespace is the dearest part of a clone (its teardown runs in a
//! kernel worker: on this 2-CPU host a clone with all seven namespaces makes about 720
//! jails a second, one without the network namespace about 1300). A jail whose
//! program may open no socket (the plan keeps loopback down) therefore shares the fork
//! server's own network namespace, which has no interface up and is owned by a user
//! namespace the jails have no capability in. `docs/warm-pool.md` gives the argument
//! why no two jails can reach each other through it. A jail whose program may open
//! sockets gets a network namespace of its own, as on the cold path.

use super::child::{close_fds_except, die_with_parent, init_go};
use super::order::Order;
use super::stage::{ChildFailure, Stage};
use super::sys;
use crate::plan::ids::IdMaps;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};

/// What kind of jail: sharing the fork server's network namespace (no socket can be
/// opened in it), or with one of its own (loopback up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Net {
    Shared,
    Own,
}

/// A jail made ahead: init waits for its order.
#[derive(Debug)]
pub struct PreJail {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
    /// The parent's end of init's control socket.
    pub ctl: OwnedFd,
}

impl PreJail {
    /// Hands the jail over to a run, which owns its descriptors from now on (and
    /// kills the jail itself).
    pub fn take(self) -> (libc::pid_t, OwnedFd, OwnedFd) {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped, so each descriptor read out of it has exactly
        // one owner.
        unsafe { (me.pid, std::ptr::read(&me.pidfd), std::ptr::read(&me.ctl)) }
    }
}

impl Drop for PreJail {
    fn drop(&mut self) {
        // Unused: killed; the fork server reaps it (it ignores SIGCHLD).
        let _ = sys::pidfd_kill(&self.pidfd);
    }
}

/// The fork server, as the rest of moat holds it.
#[derive(Debug)]
pub struct ForkServer {
    sock: Mutex<OwnedFd>,
    pid: libc::pid_t,
}

/// Whether this process has one thread (the fork server must be forked before there
/// are more: a lock another thread held at the fork would never be released in it).
fn single_threaded() -> bool {
    sys::read_proc("/proc/self/status").is_some_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

const REQUEST_LEN: usize = 9;

impl ForkServer {
    /// Forks the fork server. Call it before this process starts any thread: it
    /// refuses otherwise. `ids`: the id maps of the jails it makes.
    pub fn start() -> io::Result<ForkServer> {
        if !single_threaded() {
            return Err(io::Error::other(
                "the fork server must be started before moat starts any thread",
            ));
        }
        let (mine, theirs) = sys::socketpair()?;
        // The command line is read now, so each init can wipe the fork server's copy
        // (it may hold a token) as a cold init wipes moat's.
        let args_area = super::order::args_area();
        // SAFETY: getpid has no preconditions.
        let moat = unsafe { libc::getpid() };
        // Forked twice, so the fork server is no child of this process: a monitor's
        // wait for "any child or tracee" on this thread would otherwise wait for it
        // too, and never see the end of its run.
        let middle = sys::clone_fork(0);
        if middle < 0 {
            return Err(io::Error::last_os_error());
        }
        if middle == 0 {
            drop(mine);
            let pid = sys::clone_fork(0);
            if pid == 0 {
                serve(theirs, moat, args_area);
            }
            // The fork server's pid, for the pool to report.
            let _ = sys::send_with_fds(theirs.as_raw_fd(), &pid.to_le_bytes(), &[]);
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(if pid > 0 { 0 } else { 1 }) }
        }
        drop(theirs);
        let mut status = 0;
        // SAFETY: waitpid on the child just forked, with a stack status word.
        while unsafe { libc::waitpid(middle, &mut status, 0) } < 0 && sys::errno() == libc::EINTR {}
        let mut word = [0u8; 4];
        let pid = match sys::recv_with_fds(mine.as_raw_fd(), &mut word)? {
            Some((4, _)) => i32::from_le_bytes(word),
            _ => return Err(io::Error::other("the fork server did not start")),
        };
        if pid <= 0 {
            return Err(io::Error::other("the fork server could not be forked"));
        }
        Ok(ForkServer {
            sock: Mutex::new(mine),
            pid,
        })
    }

    /// Makes one jail: cloned, id maps written, init waiting for its order.
    pub fn make(&self, net: Net, ids: &IdMaps) -> io::Result<PreJail> {
        let mut req = [0u8; REQUEST_LEN];
        req[0] = match net {
            Net::Shared => b's',
            Net::Own => b'o',
        };
        req[1..5].copy_from_slice(&ids.inside_uid.to_le_bytes());
        req[5..9].copy_from_slice(&ids.inside_gid.to_le_bytes());
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        sys::send_with_fds(sock.as_raw_fd(), &req, &[])?;
        let mut reply = [0u8; 256];
        let Some((n, mut fds)) = sys::recv_with_fds(sock.as_raw_fd(), &mut reply)? else {
            return Err(io::Error::other("the fork server is gone"));
        };
        drop(sock);
        match (reply.first(), fds.len()) {
            (Some(b'k'), 2) if n == 5 => {
                let pid = i32::from_le_bytes([reply[1], reply[2], reply[3], reply[4]]);
                let ctl = fds.pop().expect("two descriptors");
                let pidfd = fds.pop().expect("two descriptors");
                Ok(PreJail { pid, pidfd, ctl })
            }
            (Some(b'e'), _) => Err(io::Error::other(
                String::from_utf8_lossy(&reply[1..n]).into_owned(),
            )),
            _ => Err(io::Error::other("the fork server sent a malformed reply")),
        }
    }

    /// The fork server's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }
}

/// The fork server's own network namespace: new and empty (no interface up), owned by
/// a user namespace of its own when it is not root, so that the jails, whose user
/// namespaces are children of that one, hold no capability over it.
fn own_network() -> io::Result<()> {
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let flags = if uid == 0 {
        libc::CLONE_NEWNET
    } else {
        libc::CLONE_NEWUSER | libc::CLONE_NEWNET
    };
    // SAFETY: unshare with namespace flags; this process is single-threaded.
    if unsafe { libc::unshare(flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if uid != 0 {
        // Ids map to themselves, so the jails' maps read the same from in here as from
        // outside (see `IdMaps::write`).
        std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
        std::fs::write("/proc/self/setgroups", "deny")?;
        std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    }
    Ok(())
}

/// The fork server's loop. Never returns: it exits when moat closes its end (moat
/// exits or drops the pool), and the jails it keeps ready die with it.
fn serve(sock: OwnedFd, moat: libc::pid_t, args_area: Option<(usize, usize)>) -> ! {
    close_fds_except(&[sock.as_raw_fd()]);
    // Jails it made end as zombies only for their tracer; with SIGCHLD ignored the
    // kernel reaps them once the tracer has seen their exit.
    // SAFETY: setting a signal's disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let network = own_network();
    loop {
        let mut req = [0u8; REQUEST_LEN];
        let got = match sys::recv_with_fds(sock.as_raw_fd(), &mut req) {
            Ok(Some((n, _))) => n,
            // moat closed its end (or the socket failed): nothing more to make.
            _ => break,
        };
        let reply = if got != REQUEST_LEN {
            Err("a malformed request".to_string())
        } else {
            let net = match req[0] {
                b'o' => Some(Net::Own),
                b's' => Some(Net::Shared),
                _ => None,
            };
            let uid = u32::from_le_bytes([req[1], req[2], req[3], req[4]]);
            let gid = u32::from_le_bytes([req[5], req[6], req[7], req[8]]);
            match (net, &network) {
                (None, _) => Err("a malformed request".to_string()),
                (Some(Net::Shared), Err(e)) => Err(format!(
                    "the pool's network namespace could not be made: {e}"
                )),
                (Some(net), _) => {
                    clone_jail(net, &IdMaps::for_current_caller(uid, gid), moat, args_area)
                        .map_err(|e| e.to_string())
                }
            }
        };
        let sent = match reply {
            Ok((pid, pidfd, ctl)) => {
                let mut msg = [b'k', 0, 0, 0, 0];
                msg[1..].copy_from_slice(&pid.to_le_bytes());
                sys::send_with_fds(
                    sock.as_raw_fd(),
                    &msg,
                    &[pidfd.as_raw_fd(), ctl.as_raw_fd()],
                )
            }
            Err(e) => {
                let mut msg = vec![b'e'];
                msg.extend_from_slice(e.as_bytes());
                msg.truncate(256);
                sys::send_with_fds(sock.as_raw_fd(), &msg, &[])
            }
        };
        if sent.is_err() {
            break;
        }
    }
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(0) }
}

/// Clones one jail and writes its id maps. Returns its pid, a pidfd for it and the
/// parent's end of its control socket.
fn clone_jail(
    net: Net,
    ids: &IdMaps,
    moat: libc::pid_t,
    args_area: Option<(usize, usize)>,
) -> io::Result<(libc::pid_t, OwnedFd, OwnedFd)> {
    let (ctl, ctl_child) = sys::socketpair()?;
    let mut flags = crate::plan::NAMESPACES
        .iter()
        .fold(0, |acc, (_, f)| acc | f);
    if net == Net::Shared {
        flags &= !libc::CLONE_NEWNET;
    }
    let pid = loop {
        let pid = sys::clone_fork(flags);
        if pid == 0 {
            drop(ctl);
            await_order(ctl_child.into_raw_fd(), moat, args_area);
        }
        if pid > 0 {
            break pid;
        }
        // Kernels without cgroup namespaces refuse the flag; the jail works without it.
        if sys::errno() == libc::EINVAL && flags & libc::CLONE_NEWCGROUP != 0 {
            flags &= !libc::CLONE_NEWCGROUP;
            continue;
        }
        return Err(io::Error::last_os_error());
    };
    drop(ctl_child);
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) => {
            // SAFETY: kill of our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(e);
        }
    };
    if let Err(e) = ids.write(pid) {
        let _ = sys::pidfd_kill(&pidfd);
        return Err(e);
    }
    Ok((pid, pidfd, ctl))
}

/// Most bytes one order may take (the files put in travel in it).
const MAX_ORDER: u64 = 1 << 30;

/// init of a jail made ahead, until its order has come; then the common setup. The
/// fork server is single-threaded, so this may allocate. Never returns.
fn await_order(ctl: RawFd, moat: libc::pid_t, args_area: Option<(usize, usize)>) -> ! {
    die_with_parent();
    // Under Yama's ptrace_scope 1 only an ancestor may attach, and moat is none (the
    // fork server was forked twice): name it, and only it, as the one that may.
    // SAFETY: a prctl with integer arguments on ourselves.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, moat as libc::c_ulong, 0, 0, 0) };
    close_fds_except(&[ctl]);
    let quit = |code: i32| -> ! {
        // SAFETY: _exit has no preconditions.
        unsafe { libc::_exit(code) }
    };
    let mut head = [0u8; 9];
    let (n, fds) = match sys::recv_with_fds(ctl, &mut head) {
        Ok(Some(got)) => got,
        // The pool was dropped: nothing to do.
        _ => quit(0),
    };
    let mut fds = fds.into_iter();
    let (Some(order_fd), Some(err)) = (fds.next(), fds.next()) else {
        quit(125)
    };
    let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
    let bytes = (n == 9 && head[0] == b'o' && len <= MAX_ORDER)
        .then(|| read_order(&order_fd, len as usize))
        .flatten();
    drop(order_fd);
    let order = match bytes.as_deref().map(Order::decode) {
        Some(Ok(order)) => order,
        _ => {
            let rec = ChildFailure::new(Stage::Sync, 0, libc::EINVAL);
            let _ = sys::write_all(err.as_raw_fd(), &rec.to_bytes());
            quit(rec.exit_code())
        }
    };
    let sources: Vec<RawFd> = fds
        .by_ref()
        .take(order.sources())
        .map(IntoRawFd::into_raw_fd)
        .collect();
    // After the sources, the run's detached mounts (id-mapped writable binds), by slot.
    let detached: Vec<RawFd> = fds.map(IntoRawFd::into_raw_fd).collect();
    if sources.len() != order.sources() || detached.len() != order.detached() {
        let rec = ChildFailure::new(Stage::Stdio, 0, libc::EBADF);
        let _ = sys::write_all(err.as_raw_fd(), &rec.to_bytes());
        quit(rec.exit_code())
    }
    let fd_base = order.fd_base();
    // init's own descriptors sit above every target, as on the cold path.
    let above = |fd: RawFd| match sys::dup_above(fd, fd_base) {
        Ok(moved) => {
            sys::close(fd);
            moved
        }
        Err(_) => quit(125),
    };
    let err = above(err.into_raw_fd());
    let ctl = above(ctl);
    let detached: Vec<RawFd> = detached.into_iter().map(above).collect();
    let prepared = order.prepared(err, ctl, &sources, fd_base, None, args_area, &detached);
    init_go(&prepared)
}

/// The order's bytes from the memfd they came in.
fn read_order(fd: &OwnedFd, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut at = 0;
    while at < len {
        // SAFETY: pread into the unfilled tail of a buffer we own.
        let n = unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf[at..].as_mut_ptr().cast(),
                len - at,
                at as libc::off_t,
            )
        };
        if n < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return None;
        }
        at += n as usize;
    }
    Some(buf)
}

/// Jails made ahead of demand, kept at a target count by a thread of their own, for
/// [`RunOptions::pool`](crate::RunOptions::pool). Each jail serves one run and is then
/// destroyed. A run whose program may open sockets (it gets a network namespace of
/// its own) or runs with ids other than the default 1000 gets a jail made for it on
/// demand, still by the fork server.
///
/// [`Pool::start`] forks the fork server, so it must be called while the process has
/// one thread: first thing in `main`, before any runtime or server starts threads.
#[derive(Debug)]
pub struct Pool {
    server: ForkServer,
    /// The ids of the jails kept ready.
    ids: IdMaps,
    ready: Mutex<Ready>,
    wake: Condvar,
    target: usize,
}

#[derive(Debug, Default)]
struct Ready {
    jails: VecDeque<PreJail>,
    closed: bool,
    /// Jails handed out, made ahead or on demand.
    taken: u64,
    /// Of those, the ones that had to be made on demand.
    made_on_demand: u64,
}

/// How full the pool is and how it has served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Jails ready now.
    pub ready: usize,
    /// Jails it keeps ready.
    pub target: usize,
    /// Jails handed to runs so far.
    pub taken: u64,
    /// Of those, the ones made on demand (none was ready, or the run needed another
    /// kind).
    pub made_on_demand: u64,
}

impl Pool {
    /// Starts the fork server and a thread that keeps `target` jails ready. Fails
    /// when this process already has more than one thread.
    pub fn start(target: usize) -> io::Result<Arc<Pool>> {
        let ids = IdMaps::for_current_caller(
            crate::config::policy::DEFAULT_ID,
            crate::config::policy::DEFAULT_ID,
        );
        let server = ForkServer::start()?;
        let pool = Arc::new(Pool {
            server,
            ids,
            ready: Mutex::new(Ready::default()),
            wake: Condvar::new(),
            target,
        });
        if target > 0 {
            let filler = Arc::downgrade(&pool);
            std::thread::Builder::new()
                .name("moat-pool".into())
                .spawn(move || fill(filler))?;
        }
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A jail for `plan`: one made ahead when one is ready and fits, else one made
    /// now.
    pub(crate) fn take(&self, plan: &crate::plan::Plan) -> io::Result<PreJail> {
        let net = if plan.loopback { Net::Own } else { Net::Shared };
        let fits = net == Net::Shared && plan.ids == self.ids;
        {
            let mut ready = self.lock();
            ready.taken += 1;
            if fits {
                if let Some(jail) = ready.jails.pop_front() {
                    drop(ready);
                    self.wake.notify_all();
                    return Ok(jail);
                }
            }
            ready.made_on_demand += 1;
        }
        self.wake.notify_all();
        self.server.make(net, &plan.ids)
    }

    /// How full the pool is.
    pub fn stats(&self) -> PoolStats {
        let ready = self.lock();
        PoolStats {
            ready: ready.jails.len(),
            target: self.target,
            taken: ready.taken,
            made_on_demand: ready.made_on_demand,
        }
    }

    /// Stops refilling and kills the jails kept ready. Runs that took one go on.
    pub fn close(&self) {
        let drained: Vec<PreJail> = {
            let mut ready = self.lock();
            ready.closed = true;
            ready.jails.drain(..).collect()
        };
        self.wake.notify_all();
        drop(drained);
    }

    /// The fork server's pid.
    pub fn server_pid(&self) -> libc::pid_t {
        self.server.pid()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close();
    }
}

/// The filling thread: makes jails while fewer than the target are ready. It holds
/// the pool only while it makes one, so dropping the last handle ends it.
fn fill(pool: std::sync::Weak<Pool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        {
            let mut ready = p.lock();
            while !ready.closed && ready.jails.len() >= p.target {
                // Woken by a take, by close, or now and then to see the pool is alive.
                let (r, _) = p
                    .wake
                    .wait_timeout(ready, std::time::Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner());
                ready = r;
                if Arc::strong_count(&p) == 1 {
                    return;
                }
            }
            if ready.closed {
                return;
            }
        }
        match p.server.make(Net::Shared, &p.ids) {
            Ok(jail) => {
                let mut ready = p.lock();
                if ready.closed {
                    drop(ready);
                    drop(jail);
                    return;
                }
                ready.jails.push_back(jail);
            }
            // The fork server is gone or the host refuses more namespaces: runs make
            // their own (and report why); try again a little later.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}
