//! Ending what is in a run's cgroup and removing its directories, which the kernel
//! allows only once the last process has gone.

use super::fs::{read_pids, Fs};
use super::v2;
use crate::jail::sys;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `kill_tree` waits for the tree to be gone, and teardown for rmdir to
/// succeed.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(1);
pub(crate) const RMDIR_WAIT: Duration = Duration::from_secs(1);

/// Calls `done` until it says so or `wait` has passed, sleeping in between: 0.5 ms
/// first, doubling up to 20 ms, since the kernel's part (exits, an rmdir refused while
/// they finish) is usually over within a few milliseconds.
pub(crate) fn backoff(wait: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_micros(500);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Kills every process in the cgroups `dirs` and waits (up to a second) for them to
/// be gone. With v2's cgroup.kill the kernel does it in one step; otherwise every pid
/// listed in the first directory gets SIGKILL, again until none is left.
pub(crate) fn kill_tree(v2_dir: Option<&Path>, dirs: &[&Path]) {
    let populated = || {
        dirs.iter()
            .any(|d| !read_pids(&d.join("cgroup.procs")).is_empty())
    };
    if v2_dir.is_some_and(v2::kill) {
        backoff(KILL_WAIT, || !populated());
        return;
    }
    let Some(first) = dirs.first() else {
        return;
    };
    let procs = first.join("cgroup.procs");
    backoff(KILL_WAIT, || {
        let pids = read_pids(&procs);
        if pids.is_empty() {
            return true;
        }
        kill_listed(&procs, &pids);
        false
    });
}

/// An exited process's pid can be reused between reading cgroup.procs and signalling
/// it. A pidfd pins the process itself: open one for each listed pid, read the list
/// again, and signal only processes still listed. Before Linux 5.3 (no pidfd_open)
/// plain kill() is all there is, still only for pids listed twice.
pub(crate) fn kill_listed(procs: &Path, pids: &[i32]) {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    // 0 stands for a process outside our pid namespace and 1 for an init: signalling
    // either by number would hit the wrong processes (kill(0) is our own group).
    let targets = pids.iter().copied().filter(|&p| p > 1 && p != me);
    let mut opened = Vec::new();
    let mut plain = Vec::new();
    for pid in targets {
        match sys::pidfd_open(pid) {
            Ok(fd) => opened.push((pid, fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => plain.push(pid),
            Err(_) => {}
        }
    }
    let still = read_pids(procs);
    for (pid, fd) in opened {
        if still.contains(&pid) {
            let _ = sys::pidfd_kill(&fd);
        }
    }
    for pid in plain {
        if still.contains(&pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// rmdir fails with EBUSY while the last killed processes are still exiting.
pub(crate) fn remove_dir_retrying(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let mut last = Ok(());
    backoff(RMDIR_WAIT, || {
        last = match fs.rmdir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        };
        !matches!(&last, Err(e) if e.raw_os_error() == Some(libc::EBUSY))
    });
    last
}
