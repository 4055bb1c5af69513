//! One run, end to end: wire the program's stdio (files, or the output relay), put the
//! jail in a cgroup when a limit needs one, spawn it, monitor it, and turn what was
//! seen into one Outcome. The steps are the functions below, in that order.

use crate::config::limits::Limits;
use crate::config::units;
use crate::jail::spawn::{self, Jail, SpawnError};
use crate::plan::Plan;
use crate::report::outcome::{self, ErrorInfo, ErrorKind, Exceeded, Observed, Outcome, Status};
use crate::watch::cgroup::{self, Mechanism, Mechanisms, RunCgroup};
use crate::watch::monitor::{self, Watch};
use crate::watch::relay;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How one run is wired to the world, beyond what the plan says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Read the program's stdin from this file (default: moat's own stdin).
    pub stdin: Option<PathBuf>,
    /// Write the program's stdout / stderr to these files (default: moat's own).
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    /// A delegated cgroup v2 directory to create the run's cgroup in (default: found
    /// from the host's layout).
    pub cgroup: Option<PathBuf>,
}

/// Runs a planned program in the jail and waits for its one verdict. Call it from the
/// thread that should monitor the run; any number of threads may run jails at once.
pub fn run(plan: &Plan) -> Result<Outcome, SpawnError> {
    run_with(plan, &RunOptions::default())
}

/// As `run`, with the run's stdio and cgroup chosen by `opts`.
pub fn run_with(plan: &Plan, opts: &RunOptions) -> Result<Outcome, SpawnError> {
    let limits = &plan.policy.limits;
    let stdio = Stdio::prepare(opts, limits.output.is_some())?;
    let (cg, fallback) = run_cgroup(limits, opts)?;
    let mechanisms = cg.as_ref().map_or(Mechanisms::NONE, RunCgroup::mechanisms);

    let started = Instant::now();
    let before_start = |pid: libc::pid_t| cg.as_ref().map_or(Ok(()), |c| c.add(pid));
    let jail = spawn::spawn(plan, stdio.child, &before_start)?;
    // Only the jail may hold the write ends: the relay ends when its last writer does.
    drop(stdio.child_ends);

    let cg_cpu = || {
        cg.as_ref()
            .and_then(RunCgroup::cpu_time)
            .map(|(u, s)| u + s)
    };
    let cpu_source: Option<&(dyn Fn() -> Option<Duration> + Sync)> =
        (mechanisms.cpu != Mechanism::None).then_some(&cg_cpu);
    let watch = monitor::watch(
        &jail,
        monitor::Supervision {
            started,
            wall: limits.wall_time,
            cpu: limits.cpu_time,
            cpu_source,
            // A cgroup's memory limit is the kernel's to enforce.
            memory: limits
                .memory
                .filter(|_| mechanisms.memory == Mechanism::None),
            relay: stdio.relay,
            output_cap: limits.output.unwrap_or(u64::MAX),
            learn: plan.policy.learn,
            cwd: plan.policy.cwd.clone(),
        },
    );
    let figures = Figures::collect(&watch, cg.as_ref(), mechanisms);
    let observed = observe(plan, &jail, &watch, &figures, cg.as_ref());
    drop(cg); // kills leftovers and removes the cgroup
    let (status, exit_code, signal) = observed.verdict();
    let ran = status != Status::SetupError;
    Ok(Outcome {
        status,
        exit_code: exit_code.filter(|_| ran),
        signal: signal.filter(|_| ran),
        cpu_time_ms: figures.user_ms + figures.system_ms,
        user_time_ms: figures.user_ms,
        system_time_ms: figures.system_ms,
        wall_time_ms: watch.wall_time.as_millis() as u64,
        peak_memory_kib: figures.peak_kib,
        violation: observed.violation,
        error: observed.setup_failure,
        limits: limit_reports(limits, mechanisms, fallback.as_deref()),
        output_bytes: watch.relayed.delivered,
        learned: watch.learned.clone(),
    })
}

/// The program's stdin, stdout and stderr as the child gets them.
struct Stdio {
    /// Descriptors for the child's 0, 1, 2 (-1: moat's own).
    child: [RawFd; 3],
    /// The pipes' write ends, which the parent must close once the child holds them.
    child_ends: Vec<OwnedFd>,
    relay: Vec<relay::Stream>,
    /// The files, kept open until the run ends.
    _files: Vec<File>,
}

impl Stdio {
    /// Files where asked for; with an output cap, pipes the monitor relays to the real
    /// destination (the file, or moat's own stream), counting.
    fn prepare(opts: &RunOptions, relayed: bool) -> Result<Stdio, SpawnError> {
        let err = |what: &'static str| move |source| SpawnError::Sys { what, source };
        let create = |p: &PathBuf| {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(p)
        };
        let stdin = opts
            .stdin
            .as_ref()
            .map(File::open)
            .transpose()
            .map_err(err("opening the --stdin file"))?;
        let outputs = [
            opts.stdout
                .as_ref()
                .map(create)
                .transpose()
                .map_err(err("creating the --stdout file"))?,
            opts.stderr
                .as_ref()
                .map(create)
                .transpose()
                .map_err(err("creating the --stderr file"))?,
        ];
        let mut out = Stdio {
            child: [stdin.as_ref().map_or(-1, |f| f.as_raw_fd()), -1, -1],
            child_ends: Vec::new(),
            relay: Vec::new(),
            _files: Vec::new(),
        };
        for (i, file) in outputs.iter().enumerate() {
            let dest = file.as_ref().map_or(i as RawFd + 1, |f| f.as_raw_fd());
            if relayed {
                let (from, to) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                    .map_err(|e| err("creating the output relay")(e.into()))?;
                out.child[i + 1] = to.as_raw_fd();
                out.child_ends.push(to);
                out.relay.push(relay::Stream { from, to: dest });
            } else if file.is_some() {
                out.child[i + 1] = dest;
            }
        }
        out._files = stdin
            .into_iter()
            .chain(outputs.into_iter().flatten())
            .collect();
        Ok(out)
    }
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
    limits: &Limits,
    opts: &RunOptions,
) -> Result<(Option<RunCgroup>, Option<String>), SpawnError> {
    let wanted = Mechanisms {
        memory: if limits.memory.is_some() {
            Mechanism::CgroupV2
        } else {
            Mechanism::None
        },
        pids: if limits.processes.is_some() {
            Mechanism::CgroupV2
        } else {
            Mechanism::None
        },
        cpu: if limits.cpu_time.is_some() {
            Mechanism::CgroupV2
        } else {
            Mechanism::None
        },
    };
    if wanted == Mechanisms::NONE && opts.cgroup.is_none() {
        return Ok((None, None));
    }
    let layout = match &opts.cgroup {
        Some(dir) => host_layout().clone().with_v2_base(dir.clone()),
        None => host_layout().clone(),
    };
    let request = cgroup::Request {
        memory_max: limits.memory,
        // moat's init lives in the cgroup too.
        pids_max: limits.processes.map(|p| p + 1),
        want_cpu: limits.cpu_time.is_some(),
    };
    let cg = match RunCgroup::create(&layout, &request) {
        Ok(cg) => cg,
        Err(e) if opts.cgroup.is_some() => return Err(SpawnError::Cgroup(e.to_string())),
        Err(e) => return Ok((None, Some(e.to_string()))),
    };
    let got = cg.mechanisms();
    let missing = [
        (wanted.memory, got.memory),
        (wanted.pids, got.pids),
        (wanted.cpu, got.cpu),
    ]
    .iter()
    .any(|(w, g)| *w != Mechanism::None && *g == Mechanism::None);
    let why = missing.then(|| {
        let mut why = layout.describe();
        for n in cg.notes() {
            why += &format!("; {n}");
        }
        why
    });
    Ok((Some(cg), why))
}

/// CPU time and peak memory of the run, from the best source there is: the cgroup,
/// else the larger of the kernel's accounting of init and the monitor's samples
/// (processes killed with the jail never reach init's accounting).
struct Figures {
    user_ms: u64,
    system_ms: u64,
    peak_kib: u64,
    /// init's maxrss: the largest resident set of any process it reaped.
    maxrss_kib: u64,
}

impl Figures {
    fn collect(watch: &Watch, cg: Option<&RunCgroup>, m: Mechanisms) -> Figures {
        let ms = |tv: libc::timeval| tv.tv_sec as u64 * 1000 + tv.tv_usec as u64 / 1000;
        let (mut user, mut system, maxrss_kib) = watch.rusage.map_or((0, 0, 0), |ru| {
            (ms(ru.ru_utime), ms(ru.ru_stime), ru.ru_maxrss.max(0) as u64)
        });
        let cg_cpu = cg
            .filter(|_| m.cpu != Mechanism::None)
            .and_then(RunCgroup::cpu_time);
        let better = match (cg_cpu, watch.sampled_cpu) {
            (Some(c), _) => Some(c),
            (None, Some((u, s))) if u + s > Duration::from_millis(user + system) => Some((u, s)),
            _ => None,
        };
        if let Some((u, s)) = better {
            (user, system) = (u.as_millis() as u64, s.as_millis() as u64);
        }
        let peak_kib = match cg
            .filter(|_| m.memory != Mechanism::None)
            .and_then(RunCgroup::memory_peak)
        {
            Some(bytes) => bytes / 1024,
            None => maxrss_kib.max(watch.sampled_peak / 1024),
        };
        Figures {
            user_ms: user,
            system_ms: system,
            peak_kib,
            maxrss_kib,
        }
    }
}

/// What happened, as the verdict needs it: the monitor's findings plus what the
/// kernel's own limits left behind (an OOM kill, SIGXCPU, SIGXFSZ).
fn observe(
    plan: &Plan,
    jail: &Jail,
    watch: &Watch,
    f: &Figures,
    cg: Option<&RunCgroup>,
) -> Observed {
    let limits = &plan.policy.limits;
    let setup_failure = jail.failures().first().map(|fail| ErrorInfo {
        kind: match (fail.stage, fail.errno) {
            (spawn::STAGE_EXEC, libc::ENOENT) => ErrorKind::ProgramNotFound,
            (spawn::STAGE_EXEC, _) => ErrorKind::ProgramNotExecutable,
            _ => ErrorKind::Setup,
        },
        message: spawn::describe(plan, fail),
    });
    let died_of = |sig: i32| {
        watch
            .program_status
            .is_some_and(|s| libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == sig)
    };
    let cgroup_memory = cg.is_some_and(|c| c.memory_mechanism() != Mechanism::None);
    let exceeded = Exceeded {
        wall_time: watch.exceeded.wall_time,
        memory: watch.exceeded.memory
            || cg.is_some_and(RunCgroup::oom_killed)
            || (!cgroup_memory && limits.memory.is_some_and(|m| f.maxrss_kib * 1024 > m)),
        // The RLIMIT_CPU backstop ends a process with SIGXCPU (soft) or SIGKILL (hard).
        cpu_time: watch.exceeded.cpu_time
            || limits.cpu_time.is_some_and(|c| {
                died_of(libc::SIGXCPU)
                    || (died_of(libc::SIGKILL)
                        && Duration::from_millis(f.user_ms + f.system_ms) >= c)
            }),
        output: watch.exceeded.output || (limits.file_size.is_some() && died_of(libc::SIGXFSZ)),
    };
    Observed {
        program_status: watch.program_status,
        violation: watch.violation.clone(),
        exceeded,
        setup_failure,
    }
}

/// Which mechanism enforced each limit that was set.
fn limit_reports(l: &Limits, m: Mechanisms, fallback: Option<&str>) -> Vec<outcome::LimitReport> {
    use cgroup::Mechanism::*;
    let Mechanisms { memory, pids, cpu } = m;
    let why = fallback
        .map(|f| format!(" (no cgroup: {f})"))
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut add = |name: &'static str, value: Option<String>, by: String| {
        if let Some(value) = value {
            out.push(outcome::LimitReport {
                name,
                value,
                enforced_by: by,
            });
        }
    };
    let dur = |d: Option<Duration>| d.map(|d| units::Dur(d).to_string());
    let size = |s: Option<u64>| s.map(|s| units::Size(s).to_string());
    add(
        "cpu_time",
        dur(l.cpu_time),
        match cpu {
            CgroupV2 => "cgroup v2 cpu.stat, sampled by the monitor; RLIMIT_CPU backstop".into(),
            CgroupV1 => "cgroup v1 cpuacct, sampled by the monitor; RLIMIT_CPU backstop".into(),
            None => format!("monitor sampling /proc; RLIMIT_CPU backstop{why}"),
        },
    );
    add("wall_time", dur(l.wall_time), "monitor".into());
    add(
        "memory",
        size(l.memory),
        match memory {
            CgroupV2 => "cgroup v2 memory.max".into(),
            CgroupV1 => "cgroup v1 memory.limit_in_bytes".into(),
            None => format!("monitor sampling /proc (resident memory of the tree){why}"),
        },
    );
    add(
        "processes",
        l.processes.map(|p| p.to_string()),
        match pids {
            CgroupV2 => "cgroup v2 pids.max; RLIMIT_NPROC".into(),
            CgroupV1 => "cgroup v1 pids.max; RLIMIT_NPROC".into(),
            None => format!("RLIMIT_NPROC (counted per user namespace){why}"),
        },
    );
    add(
        "output",
        size(l.output),
        "monitor (relayed and cut at the cap)".into(),
    );
    add("file_size", size(l.file_size), "RLIMIT_FSIZE".into());
    add("stack", size(l.stack), "RLIMIT_STACK".into());
    add(
        "open_files",
        l.open_files.map(|n| n.to_string()),
        "RLIMIT_NOFILE".into(),
    );
    add("address_space", size(l.address_space), "RLIMIT_AS".into());
    out
}
