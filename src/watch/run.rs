//! One run, end to end, as one linear sequence: wire the program's stdio, put the
//! jail in a cgroup when a limit needs one, decide how each limit is enforced, spawn
//! the jail, monitor it, and collect what was seen. The steps are the functions below,
//! in that order; turning what was seen into a verdict is the report's job.

use super::accounting::Stored;
use super::cancel::Cancel;
use super::cgroup::{self, Mechanism, Mechanisms, RunCgroup};
use super::enforce::{self, Enforcement, Enforcer};
use super::files::{self, Copied, FileFault};
use super::hook::Hook;
use super::monitor::{self, Exceeded, Violation, Watch};
use super::stdio::{Input, Output, Stdio, StdioError};
use super::timings::Timings;
use crate::config::limits::Limit;
use crate::jail::pool::Pool;
use crate::jail::spawn::{self, Jail, JailError};
use crate::jail::stage::{ChildFailure, Stage};
use crate::plan::Plan;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How one run is wired to the world, beyond what the plan says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read the program's stdin from this file (default: moat's own stdin).
    pub stdin: Option<PathBuf>,
    /// Write the program's stdout to this file (default: moat's own).
    pub stdout: Option<PathBuf>,
    /// Write the program's stderr to this file (default: moat's own).
    pub stderr: Option<PathBuf>,
    /// A delegated cgroup v2 directory to create the run's cgroup in (default: found
    /// from the host's layout).
    pub cgroup: Option<PathBuf>,
    /// A token that ends the run from outside (the run then ends as `cancelled`).
    pub cancel: Option<Cancel>,
    /// Jails made ahead to start the run in (see [`Pool`]); without one the run clones
    /// its own.
    pub pool: Option<Arc<Pool>>,
}

/// The program's descriptors for one run: what [`RunOptions`] names, or, for a
/// request, memory, work-dir files and pipe ends.
#[derive(Debug, Default)]
pub struct Io {
    pub stdin: Input,
    pub stdout: Output,
    pub stderr: Output,
    /// Further descriptors: (the program's fd, what it is).
    pub fds: Vec<(RawFd, OwnedFd)>,
}

impl RunOptions {
    /// The descriptors these options name: files, or moat's own streams.
    pub fn io(&self) -> Io {
        let out = |p: &Option<PathBuf>| p.clone().map_or(Output::Inherit, Output::File);
        Io {
            stdin: self.stdin.clone().map_or(Input::Inherit, Input::File),
            stdout: out(&self.stdout),
            stderr: out(&self.stderr),
            fds: Vec::new(),
        }
    }
}

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A file of the run's stdio could not be opened.
    #[error(transparent)]
    Stdio(#[from] StdioError),
    /// The cgroup the caller named (`RunOptions::cgroup`) cannot be used.
    #[error("cannot use the cgroup given: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    /// The jail could not be started.
    #[error(transparent)]
    Jail(#[from] JailError),
}

/// How the program's setup failed inside the jail, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupFailure {
    pub stage: Option<Stage>,
    pub errno: i32,
    /// What failed, in words, with a hint where there is a usual cause.
    pub message: String,
}

/// What happened, as the verdict needs it: the monitor's findings plus what the
/// kernel's own limits left behind (an OOM kill, SIGXCPU, SIGXFSZ).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// The program's wait status (raw), if it ended on its own or by a signal.
    pub program_status: Option<i32>,
    pub violation: Option<Violation>,
    pub exceeded: Exceeded,
    pub setup_failure: Option<SetupFailure>,
    /// The run was cancelled from outside, with this signal (0: none named).
    pub cancelled: Option<i32>,
    /// The exit code with which the profile's runtime says it ran out of memory.
    pub out_of_memory_exit_code: Option<i32>,
}

/// CPU time and peak memory of the run, from the best source there is: the cgroup,
/// else for CPU the larger of the kernel's accounting of init and the monitor's samples
/// (processes killed with the jail never reach init's accounting), for memory the
/// larger of the peaks read as processes exited and the monitor's samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Kept as read (microseconds from a cgroup, from rusage): rounding user and system
    /// time apart would make their sum fall a millisecond short of the limit it reached.
    pub user: Duration,
    pub system: Duration,
    pub wall_ms: u64,
    pub peak_kib: u64,
    /// The largest peak resident set of any of the program's processes, read as each
    /// exited.
    pub exit_peak_kib: u64,
}

/// Everything one run left to report.
#[derive(Debug, Clone)]
pub struct Run {
    pub observed: Observed,
    pub figures: Figures,
    pub enforcement: Enforcement,
    /// Bytes of stdout and stderr delivered (counted only when output is relayed).
    pub output_bytes: [u64; 2],
    /// Why stdout's or stderr's destination stopped taking bytes, if it did.
    pub output_errors: [Option<String>; 2],
    /// stdout and stderr as collected in memory, where they were.
    pub collected: [Option<Vec<u8>>; 2],
    /// The work dir's files read back after the run, in the order the policy names
    /// them.
    pub files_out: Vec<(PathBuf, Result<Copied, FileFault>)>,
    /// Where the run's time went, phase by phase.
    pub timings: Timings,
}

/// Runs a planned program in the jail and waits until every process of it is gone.
/// Call it from the thread that should monitor the run; any number of threads may run
/// jails at once. `hook` is asked about every call the filter traces after the exec.
pub fn run(plan: &Plan, opts: &RunOptions, hook: Option<&mut dyn Hook>) -> Result<Run, RunError> {
    run_io(plan, opts.io(), opts, hook)
}

/// As [`run`], with the program's descriptors given by `io` (the run owns them, and
/// closes its copies as soon as the jail holds them: a pipe's reader sees its end
/// when the program's copy is gone). The cgroup and cancel token come from `opts`.
pub fn run_io(
    plan: &Plan,
    io: Io,
    opts: &RunOptions,
    hook: Option<&mut dyn Hook>,
) -> Result<Run, RunError> {
    let limits = &plan.policy.limits;
    if let Some(signal) = opts.cancel.as_ref().and_then(Cancel::cancelled) {
        // Cancelled before anything was built: nothing to start or to clean up.
        return Ok(Run {
            observed: Observed {
                cancelled: Some(signal),
                ..Observed::default()
            },
            figures: Figures::default(),
            enforcement: Enforcement::default(),
            output_bytes: [0, 0],
            output_errors: [None, None],
            collected: [None, None],
            files_out: Vec::new(),
            timings: Timings::default(),
        });
    }
    let begun = Instant::now();
    let stdio = Stdio::prepare(
        io.stdin,
        [io.stdout, io.stderr],
        io.fds,
        limits.output.is_some(),
    )?;
    let (cg, no_cgroup) = run_cgroup(plan, opts)?;
    let enforcement = Enforcement::decide(limits, cg.as_ref(), no_cgroup.as_deref());
    let mechanisms = cg.as_ref().map_or(Mechanisms::NONE, RunCgroup::mechanisms);

    let started = Instant::now();
    let go = |hook: Option<&mut dyn Hook>| {
        start_and_watch(plan, opts, stdio, cg.as_ref(), &enforcement, started, hook)
    };
    // The monitor waits for "any child or tracee of this thread" until there is none;
    // a child this thread started before (a library caller's own) would keep it
    // waiting, and its exit would be taken from its owner. Such a thread hands the run
    // to a fresh one, which has no child.
    let (mut jail, watch) = match hook {
        Some(h) => go(Some(h))?,
        None if has_children() => std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("moat-monitor".into())
                .spawn_scoped(s, || go(None))
                .map_err(|e| {
                    RunError::Jail(JailError::Sys {
                        what: "starting the monitor's thread",
                        source: e,
                    })
                })?
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?,
        None => go(None)?,
    };
    let figures = Figures::collect(&watch, cg.as_ref(), mechanisms);
    let mut observed = observe(plan, &jail, &watch, &figures, &enforcement, cg.as_ref());
    observed.cancelled = opts.cancel.as_ref().and_then(Cancel::cancelled);
    drop(cg); // kills leftovers and removes the cgroup
              // Every process of the jail is gone: the work dir is a tree nobody can change.
    let files_out = match (jail.workdir.take(), &plan.policy.workdir) {
        (Some(dir), Some(w)) => files::copy_out(&dir, &w.files_out, &w.files_in),
        _ => Vec::new(),
    };
    let m = jail.marks;
    let timings = Timings::between(
        begun,
        &[
            ("stdio, cgroup and limits decided", Some(started)),
            ("C strings prepared, clone with namespaces", Some(m.cloned)),
            ("id maps written, monitor attached", m.attached),
            (
                "init builds the root: mounts, pivot_root, hostname, lo",
                m.ready,
            ),
            ("init placed and let go", m.released),
            (
                "program's process: fork, privileges, seccomp, execve",
                watch.exec_at,
            ),
            ("the program runs", watch.program_exit_at),
            ("program and init exit, jail reaped", watch.reaped_at),
            (
                "accounting, cgroup removed, files read back",
                Some(Instant::now()),
            ),
        ],
    );
    Ok(Run {
        observed,
        figures,
        enforcement,
        output_bytes: watch.relayed.delivered,
        output_errors: watch.relayed.failed.clone(),
        collected: watch.relayed.collected,
        files_out,
        timings,
    })
}

/// Whether the calling thread has a child process (a run's own are gone by now).
fn has_children() -> bool {
    std::fs::read("/proc/thread-self/children")
        .map_or(true, |c| c.iter().any(|b| !b.is_ascii_whitespace()))
}

/// Starts the jail (cloned now, or taken from the pool) and watches it to its end, on
/// the calling thread: ptrace ties the jail to the thread that attached it.
#[allow(clippy::too_many_arguments)]
fn start_and_watch(
    plan: &Plan,
    opts: &RunOptions,
    stdio: Stdio,
    cg: Option<&RunCgroup>,
    enforcement: &Enforcement,
    started: Instant,
    hook: Option<&mut dyn Hook>,
) -> Result<(Jail, Watch), RunError> {
    let limits = &plan.policy.limits;
    let place = |pid: libc::pid_t| cg.map_or(Ok(()), |c| c.add(pid));
    let before_start: Option<&dyn Fn(libc::pid_t) -> std::io::Result<()>> =
        cg.is_some().then_some(&place);
    let jail = match &opts.pool {
        Some(pool) => {
            let pre = pool.take(plan).map_err(|source| JailError::Sys {
                what: "making a jail in the fork server",
                source,
            })?;
            spawn::adopt(pre, plan, &stdio.wiring, before_start)?
        }
        None => spawn::spawn(plan, &stdio.wiring, before_start)?,
    };
    let registered = opts.cancel.as_ref().map(|c| c.register(&jail));
    // Only the jail may hold the write ends: the relay ends when its last writer does.
    drop(stdio.child_ends);

    let cg_cpu = || cg.and_then(RunCgroup::cpu_time).map(|(u, s)| u + s);
    let cpu_source: Option<&(dyn Fn() -> Option<Duration> + Sync)> =
        enforcement.by_cgroup(Limit::CpuTime).then_some(&cg_cpu);
    let supervision = monitor::Supervision {
        filter: &plan.filter,
        started,
        wall: limits.wall_time,
        cpu: limits.cpu_time,
        cpu_source,
        // A cgroup's memory limit is the kernel's to enforce.
        memory: enforcement.value_if(Limit::Memory, Enforcer::Monitor),
        tmpfs: Stored {
            mounts: plan.policy.tmpfs.iter().map(|t| t.path.clone()).collect(),
            workdir: jail
                .workdir
                .as_ref()
                .map(|fd| (std::os::fd::AsRawFd::as_raw_fd(fd), put_in_bytes(plan))),
        },
        relay: stdio.relay,
        output_cap: limits.output.unwrap_or(u64::MAX),
    };
    let watch = monitor::watch(&jail, supervision, hook);
    drop(registered);
    Ok((jail, watch))
}

/// The bytes the files put in take in the work dir (tmpfs counts whole pages), which
/// are moat's and not counted against the program.
fn put_in_bytes(plan: &Plan) -> u64 {
    plan.policy.workdir.as_ref().map_or(0, |w| {
        w.files_in
            .iter()
            .filter(|f| f.mode & 0o111 == 0)
            .map(|f| (f.contents.len() as u64).div_ceil(4096) * 4096)
            .sum()
    })
}

fn host_layout() -> &'static cgroup::Layout {
    static LAYOUT: OnceLock<cgroup::Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let layout = cgroup::Layout::detect();
        // A moat killed with SIGKILL cannot remove its cgroup; the next one does.
        cgroup::sweep_stale(&layout);
        layout
    })
}

/// A cgroup for the whole tree when a limit needs one. Without a usable one the limits
/// fall back to rlimits and the monitor's own accounting, and the second value says
/// why, for the report. A cgroup directory the caller named must work.
fn run_cgroup(
    plan: &Plan,
    opts: &RunOptions,
) -> Result<(Option<RunCgroup>, Option<String>), RunError> {
    let request = enforce::cgroup_request(&plan.policy.limits);
    let wanted = request.memory_max.is_some() || request.pids_max.is_some() || request.want_cpu;
    if !wanted && opts.cgroup.is_none() {
        return Ok((None, None));
    }
    let layout = match &opts.cgroup {
        Some(dir) => host_layout().clone().with_v2_base(dir.clone()),
        None => host_layout().clone(),
    };
    let cg = match RunCgroup::create(&layout, &request) {
        Ok(cg) => cg,
        Err(e) if opts.cgroup.is_some() => return Err(RunError::Cgroup(e)),
        Err(e) => return Ok((None, Some(e.to_string()))),
    };
    let got = cg.mechanisms();
    let missing = (request.memory_max.is_some() && got.memory == Mechanism::None)
        || (request.pids_max.is_some() && got.pids == Mechanism::None)
        || (request.want_cpu && got.cpu == Mechanism::None);
    let why = missing.then(|| {
        let mut why = layout.describe();
        for n in cg.notes() {
            why += &format!("; {n}");
        }
        why
    });
    Ok((Some(cg), why))
}

impl Figures {
    /// CPU, user and system time in whole milliseconds: the sum rounded once, and system
    /// time what is left of it after user time, so the three add up and a run that
    /// reached a limit of whole milliseconds reports at least that limit.
    pub fn cpu_ms(&self) -> (u64, u64, u64) {
        let cpu = (self.user + self.system).as_millis() as u64;
        let user = self.user.as_millis() as u64;
        (cpu, user, cpu - user)
    }

    fn collect(watch: &Watch, cg: Option<&RunCgroup>, m: Mechanisms) -> Figures {
        let dur = |tv: libc::timeval| {
            Duration::new(tv.tv_sec as u64, 0) + Duration::from_micros(tv.tv_usec as u64)
        };
        let (mut user, mut system) = watch.rusage.map_or((Duration::ZERO, Duration::ZERO), |ru| {
            (dur(ru.ru_utime), dur(ru.ru_stime))
        });
        let exit_peak_kib = watch.exit_peak / 1024;
        let cg_cpu = cg
            .filter(|_| m.cpu != Mechanism::None)
            .and_then(RunCgroup::cpu_time);
        let better = match (cg_cpu, watch.sampled_cpu) {
            (Some(c), _) => Some(c),
            (None, Some((u, s))) if u + s > user + system => Some((u, s)),
            _ => None,
        };
        if let Some(times) = better {
            (user, system) = times;
        }
        let peak_kib = match cg
            .filter(|_| m.memory != Mechanism::None)
            .and_then(RunCgroup::memory_peak)
        {
            Some(bytes) => bytes / 1024,
            None => exit_peak_kib.max(watch.sampled_peak / 1024),
        };
        Figures {
            user,
            system,
            wall_ms: watch.wall_time.as_millis() as u64,
            peak_kib,
            exit_peak_kib,
        }
    }
}

/// The monitor's findings, the child's own report of a failed setup, and the signs the
/// kernel's limits leave, read against how each limit was enforced.
fn observe(
    plan: &Plan,
    jail: &Jail,
    watch: &Watch,
    f: &Figures,
    enforcement: &Enforcement,
    cg: Option<&RunCgroup>,
) -> Observed {
    let limits = &plan.policy.limits;
    let setup_failure = jail
        .failures()
        .first()
        .map(|fail: &ChildFailure| SetupFailure {
            stage: fail.stage(),
            errno: fail.errno,
            message: fail.describe(plan),
        });
    let died_of = |sig: i32| {
        watch
            .program_status
            .is_some_and(|s| libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == sig)
    };
    let memory_by_monitor = enforcement.value_if(Limit::Memory, Enforcer::Monitor);
    let exceeded = Exceeded {
        wall_time: watch.exceeded.wall_time,
        memory: watch.exceeded.memory
            || cg.is_some_and(RunCgroup::oom_killed)
            || memory_by_monitor.is_some_and(|m| f.exit_peak_kib * 1024 > m),
        // The RLIMIT_CPU backstop ends a process with SIGXCPU (soft) or SIGKILL (hard).
        cpu_time: watch.exceeded.cpu_time
            || limits.cpu_time.is_some_and(|c| {
                died_of(libc::SIGXCPU) || (died_of(libc::SIGKILL) && f.user + f.system >= c)
            }),
        output: watch.exceeded.output || (limits.file_size.is_some() && died_of(libc::SIGXFSZ)),
    };
    Observed {
        program_status: watch.program_status,
        violation: watch.violation.clone(),
        exceeded,
        setup_failure,
        cancelled: None,
        out_of_memory_exit_code: plan.policy.out_of_memory_exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_rounded_once_and_adds_up() {
        // From a cgroup's cpu.stat of a run ended at its 2 s limit: rounding user and
        // system apart gave 1996 + 3 = 1999 ms, under the limit it reached.
        let f = Figures {
            user: Duration::from_micros(1_996_900),
            system: Duration::from_micros(3_200),
            ..Figures::default()
        };
        assert_eq!(f.cpu_ms(), (2000, 1996, 4));
        let f = Figures {
            user: Duration::from_micros(999),
            system: Duration::from_micros(999),
            ..Figures::default()
        };
        assert_eq!(f.cpu_ms(), (1, 0, 1));
    }
}
