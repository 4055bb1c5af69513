//! The limits the monitor enforces by looking from outside: the wall-clock deadline,
//! CPU time (from a cgroup's counter or /proc) and, without a cgroup, memory. One
//! thread sleeps until the next look is due.
//!
//! Memory without a cgroup is the hard case: nothing stops an allocation before it
//! happens, so the bound on the overshoot is how soon the next look comes. The sampler
//! looks again after the time the program would need to fill what is left of its
//! limit at [`FILL_RATE`] (but at least every [`SAMPLE`], at most every
//! [`MIN_SAMPLE`]), so far from the limit it looks rarely and near it often; what the
//! program can add between two looks is then a small part of the limit.
//!
//! That bound holds only while this thread gets a CPU when its timer fires: nothing
//! unprivileged can make it preempt the program, and on a host whose CPUs are busy
//! the look comes late by the scheduler's delay. A hard bound needs a cgroup.

use super::accounting;
use crate::jail::sys;
use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

/// How often CPU time (and memory far from its limit) is looked at.
pub const SAMPLE: Duration = Duration::from_millis(10);
/// The closest two looks at memory come: each costs a read of /proc per process.
pub const MIN_SAMPLE: Duration = Duration::from_micros(200);
/// The fastest a program is taken to fill memory (bytes per second): this machine's
/// two cores touch fresh pages at about 1.3 GB/s each; the margin covers faster hosts
/// and huge pages.
pub const FILL_RATE: u64 = 4 << 30;

/// The jail's processes and threads as the monitor knows them.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every process and thread alive.
    pub live: Mutex<HashSet<libc::pid_t>>,
    /// The processes among them (thread-group leaders), which /proc counts by.
    pub procs: Mutex<HashSet<libc::pid_t>>,
    /// init's pid, the one process whose root cannot be looked through (it is not
    /// dumpable).
    pub init: libc::pid_t,
    /// A pidfd per process of the program (thread-group leaders), opened at its birth
    /// while it is a tracee not yet reaped, so it names that process and no other.
    killers: Mutex<HashMap<libc::pid_t, OwnedFd>>,
}

impl Tree {
    /// A tree of init alone.
    pub fn new(init: libc::pid_t) -> Tree {
        Tree {
            live: Mutex::new(HashSet::from([init])),
            procs: Mutex::new(HashSet::from([init])),
            init,
            killers: Mutex::new(HashMap::new()),
        }
    }

    fn set(m: &Mutex<HashSet<libc::pid_t>>) -> std::sync::MutexGuard<'_, HashSet<libc::pid_t>> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new process or thread; `process` when it has its own memory, `leader` when it
    /// leads a thread group (a vfork child does, borrowing its parent's memory).
    pub fn born(&self, pid: libc::pid_t, process: bool, leader: bool) {
        Self::set(&self.live).insert(pid);
        if process {
            Self::set(&self.procs).insert(pid);
        }
        if leader {
            if let Ok(fd) = sys::pidfd_open(pid) {
                self.lock_killers().insert(pid, fd);
            }
        }
    }

    fn lock_killers(&self) -> std::sync::MutexGuard<'_, HashMap<libc::pid_t, OwnedFd>> {
        self.killers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGKILLs every process of the program at once. Killing init alone ends them
    /// too, but only once init's own exit has released its copy of moat's memory,
    /// which takes long enough for the rest to go on allocating, writing or calling;
    /// this takes them out first.
    pub fn kill_all(&self) {
        for fd in self.lock_killers().values() {
            let _ = sys::pidfd_kill(fd);
        }
    }

    /// A process that replaced its image (a vfork child's exec, the program's first
    /// exec): its memory is its own from now on.
    pub fn execed(&self, pid: libc::pid_t) {
        Self::set(&self.procs).insert(pid);
    }

    pub fn died(&self, pid: libc::pid_t) {
        Self::set(&self.live).remove(&pid);
        Self::set(&self.procs).remove(&pid);
        self.lock_killers().remove(&pid);
    }

    /// Whether `pid` is one of the processes (not one more thread of one).
    pub fn is_process(&self, pid: libc::pid_t) -> bool {
        Self::set(&self.procs).contains(&pid)
    }

    pub fn processes(&self) -> HashSet<libc::pid_t> {
        Self::set(&self.procs).clone()
    }

    /// Resident memory of the program's processes (init's is moat's, see
    /// `accounting::sample`) plus what the writable tmpfs mounts hold.
    pub fn memory(&self, stored: &accounting::Stored) -> u64 {
        let mut procs = self.processes();
        procs.remove(&self.init);
        let files = match procs.iter().find(|p| **p != self.init) {
            Some(&pid) if !stored.is_empty() => stored.used(pid),
            _ => 0,
        };
        accounting::resident(&procs) + files
    }
}

/// What the sampler watches.
pub struct Limits<'a> {
    pub started: Instant,
    pub wall: Option<Duration>,
    pub cpu: Option<Duration>,
    /// The CPU time of the tree from a cgroup, when there is one.
    pub cpu_source: Option<&'a (dyn Fn() -> Option<Duration> + Sync)>,
    /// A memory limit the monitor enforces itself, and the tmpfs mounts it counts.
    pub memory: Option<u64>,
    pub tmpfs: &'a accounting::Stored,
}

impl Limits<'_> {
    /// Whether a thread must sample the tree: for CPU time and memory. The wall-time
    /// limit alone needs none: init's own timer wakes the monitor at the deadline (see
    /// `jail::child::arm_wall_alarm`); when the sampler runs anyway, it watches the wall
    /// clock too.
    pub fn needed(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some()
    }
}

/// What the sampler found, read once the run is over.
#[derive(Debug, Default)]
pub struct Findings {
    pub wall: AtomicBool,
    pub cpu: AtomicBool,
    pub memory: AtomicBool,
    /// The most memory seen (resident plus tmpfs), bytes.
    pub peak: AtomicU64,
    /// The last CPU time read from /proc, (user, system).
    pub last_cpu: Mutex<Option<(Duration, Duration)>>,
}

impl Findings {
    /// Keeps the larger CPU time and memory of what was seen.
    pub fn record(&self, s: &accounting::Sample, memory: u64) {
        self.peak
            .fetch_max(memory.max(s.rss).max(s.hwm), Ordering::SeqCst);
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        if !last.is_some_and(|(u, sy)| u + sy > s.cpu()) {
            *last = Some((s.user, s.system));
        }
    }
}

/// Looks until the run is over (`done` disconnects) or a limit is reached, when it
/// calls `end_run`. Runs on its own thread.
pub fn run(
    tree: &Tree,
    limits: &Limits,
    found: &Findings,
    done: mpsc::Receiver<()>,
    end_run: &(dyn Fn() + Sync),
) {
    let now = Instant::now();
    let mut next_cpu = now + SAMPLE;
    let mut next_memory = now;
    loop {
        let now = Instant::now();
        let mut due = Vec::with_capacity(3);
        if let Some(w) = limits.wall {
            due.push(limits.started + w);
        }
        if limits.cpu.is_some() {
            due.push(next_cpu);
        }
        if limits.memory.is_some() {
            due.push(next_memory);
        }
        let Some(&when) = due.iter().min() else {
            return;
        };
        match done.recv_timeout(when.saturating_duration_since(now)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return, // the run is over
        }
        let now = Instant::now();
        if limits.wall.is_some_and(|w| now >= limits.started + w) {
            found.wall.store(true, Ordering::SeqCst);
            end_run();
            return;
        }
        if let Some(limit) = limits.memory.filter(|_| now >= next_memory) {
            let used = tree.memory(limits.tmpfs);
            found.peak.fetch_max(used, Ordering::SeqCst);
            if used > limit {
                found.memory.store(true, Ordering::SeqCst);
                end_run();
                return;
            }
            let headroom = limit - used;
            let fill = Duration::from_secs_f64(headroom as f64 / FILL_RATE as f64);
            next_memory = Instant::now() + fill.clamp(MIN_SAMPLE, SAMPLE);
        }
        if let Some(limit) = limits.cpu.filter(|_| now >= next_cpu) {
            let used = match limits.cpu_source {
                Some(source) => source(),
                None => {
                    let s = accounting::sample(&tree.processes(), tree.init);
                    found.record(&s, 0);
                    Some(s.cpu())
                }
            };
            if used.is_some_and(|u| u >= limit) {
                found.cpu.store(true, Ordering::SeqCst);
                end_run();
                return;
            }
            next_cpu = Instant::now() + SAMPLE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_borrows_memory_counts_from_its_exec() {
        let tree = Tree::new(1);
        // The program's first process: a fork of init, moat's memory until it execs.
        tree.born(2, false, true);
        assert!(!tree.is_process(2));
        assert_eq!(tree.processes(), HashSet::from([1]));
        assert!(Tree::set(&tree.live).contains(&2));
        tree.execed(2);
        assert_eq!(tree.processes(), HashSet::from([1, 2]));
        // A fork of the program has its own memory at once.
        tree.born(3, true, true);
        assert!(tree.is_process(3));
        tree.died(2);
        assert_eq!(tree.processes(), HashSet::from([1, 3]));
    }
}
