//! moat: a process jail for one untrusted program.
//!
//! The pipeline reads in one direction, one module per step:
//!
//! ```text
//! profile (TOML) + overrides -> Policy -> Plan -> spawn -> monitor -> Outcome
//!   profile.rs                 policy.rs  plan.rs  spawn.rs  monitor.rs  outcome.rs
//! ```
//!
//! Planning (`plan`, and the mechanisms it draws on: `elf`, `ldcache`, `rootfs`,
//! `seccomp`, `user`) is pure computation and changes nothing on the host. Only `spawn`
//! (with the child-side `mnt`, `net`, `privs`, `init`) and `monitor` make system calls
//! that change anything.
//!
//! ```no_run
//! use moat::{Overrides, Plan, Policy};
//! let policy = Policy::load("default", &Overrides::default())?;
//! let plan = Plan::build(policy, &["/bin/echo".into(), "hello".into()])?;
//! let outcome = moat::run(&plan)?;
//! println!("{}", outcome.to_json());
//! # Ok::<(), moat::Error>(())
//! ```

pub mod accounting;
pub mod cgroup;
pub mod check;
pub mod elf;
pub mod init;
pub mod ldcache;
pub mod mnt;
pub mod monitor;
pub mod net;
pub mod outcome;
pub mod plan;
pub mod policy;
pub mod privs;
pub mod profile;
pub mod relay;
pub mod rootfs;
pub mod seccomp;
pub mod spawn;
pub mod units;
pub mod user;

pub use outcome::{Outcome, Status};
pub use plan::{Plan, PlanError};
pub use policy::{Overrides, Policy, PolicyError};
pub use spawn::SpawnError;

use outcome::{ErrorInfo, ErrorKind, Observed};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Any reason moat could not run the program.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Spawn(#[from] SpawnError),
}

impl Error {
    /// The report for a run that never started: `setup_error`, with exit status 127 for
    /// a missing program and 126 for one that cannot be executed.
    pub fn to_outcome(&self) -> Outcome {
        let kind = match self {
            Error::Plan(e) => e.kind(),
            _ => ErrorKind::Setup,
        };
        Outcome::setup_error(kind, self.to_string())
    }
}

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

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> SpawnError {
    move |source| SpawnError::Sys { what, source }
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

/// As `run`, with the run's stdio and cgroup chosen by `opts`.
pub fn run_with(plan: &Plan, opts: &RunOptions) -> Result<Outcome, SpawnError> {
    let limits = &plan.policy.limits;

    // The program's stdio: files if asked for; with an output cap, pipes that the
    // monitor relays to the real destination, counting.
    let stdin = opts
        .stdin
        .as_ref()
        .map(|p| File::open(p).map_err(io_err("opening the --stdin file")))
        .transpose()?;
    let create = |p: &PathBuf| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(p)
    };
    let outputs = [
        opts.stdout
            .as_ref()
            .map(create)
            .transpose()
            .map_err(io_err("creating the --stdout file"))?,
        opts.stderr
            .as_ref()
            .map(create)
            .transpose()
            .map_err(io_err("creating the --stderr file"))?,
    ];
    let mut child_stdio: [RawFd; 3] = [stdin.as_ref().map_or(-1, |f| f.as_raw_fd()), -1, -1];
    let mut relay_streams = Vec::new();
    let mut child_ends: Vec<OwnedFd> = Vec::new();
    for (i, file) in outputs.iter().enumerate() {
        let dest = file.as_ref().map_or(i as RawFd + 1, |f| f.as_raw_fd());
        if limits.output.is_some() {
            let (from, to) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| io_err("creating the output relay")(e.into()))?;
            child_stdio[i + 1] = to.as_raw_fd();
            child_ends.push(to);
            relay_streams.push(relay::Stream { from, to: dest });
        } else if file.is_some() {
            child_stdio[i + 1] = dest;
        }
    }

    // A cgroup for the whole tree when a limit needs one; without a usable one the
    // limits fall back to rlimits and the monitor's own accounting, and the report
    // says so.
    let wants_cgroup =
        limits.memory.is_some() || limits.processes.is_some() || limits.cpu_time.is_some();
    let mut cgroup_note = None;
    let cg = if wants_cgroup || opts.cgroup.is_some() {
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
        match cgroup::RunCgroup::create(&layout, &request) {
            Ok(cg) => Some(cg),
            Err(e) if opts.cgroup.is_some() => return Err(SpawnError::Cgroup(e.to_string())),
            Err(e) => {
                cgroup_note = Some(e.to_string());
                None
            }
        }
    } else {
        None
    };
    let mechanisms = cg.as_ref().map_or(
        (
            cgroup::Mechanism::None,
            cgroup::Mechanism::None,
            cgroup::Mechanism::None,
        ),
        |c| (c.memory_mechanism(), c.pids_mechanism(), c.cpu_mechanism()),
    );
    // Whatever a limit falls back for, the report says why.
    if cgroup_note.is_none() && wants_cgroup {
        let missing = [
            (limits.memory.is_some(), mechanisms.0),
            (limits.processes.is_some(), mechanisms.1),
            (limits.cpu_time.is_some(), mechanisms.2),
        ]
        .iter()
        .any(|(wanted, m)| *wanted && *m == cgroup::Mechanism::None);
        if missing {
            let mut why = host_layout().describe();
            if let Some(c) = &cg {
                for n in c.notes() {
                    why += &format!("; {n}");
                }
            }
            cgroup_note = Some(why);
        }
    }

    let started = Instant::now();
    let before_start = |pid: libc::pid_t| cg.as_ref().map_or(Ok(()), |c| c.add(pid));
    let jail = spawn::spawn(plan, child_stdio, &before_start)?;
    // Only the jail may hold the write ends: the relay ends when its last writer does.
    drop(child_ends);

    let cg_cpu = || cg.as_ref().and_then(|c| c.cpu_time()).map(|(u, s)| u + s);
    let cpu_source: Option<&(dyn Fn() -> Option<Duration> + Sync)> =
        (mechanisms.2 != cgroup::Mechanism::None).then_some(&cg_cpu);
    let watch = monitor::watch(
        &jail,
        monitor::Supervision {
            started,
            wall: limits.wall_time,
            cpu: limits.cpu_time,
            cpu_source,
            memory: if mechanisms.0 == cgroup::Mechanism::None {
                limits.memory
            } else {
                None
            },
            relay: relay_streams,
            output_cap: limits.output.unwrap_or(u64::MAX),
        },
    );
    let setup_failure = jail.failures().first().map(|f| ErrorInfo {
        kind: match (f.stage, f.errno) {
            (spawn::STAGE_EXEC, libc::ENOENT) => ErrorKind::ProgramNotFound,
            (spawn::STAGE_EXEC, _) => ErrorKind::ProgramNotExecutable,
            _ => ErrorKind::Setup,
        },
        message: spawn::describe(plan, f),
    });

    let ms = |tv: libc::timeval| tv.tv_sec as u64 * 1000 + tv.tv_usec as u64 / 1000;
    let (mut user, mut system, maxrss_kib) = watch.rusage.map_or((0, 0, 0), |ru| {
        (ms(ru.ru_utime), ms(ru.ru_stime), ru.ru_maxrss.max(0) as u64)
    });
    let cg_cpu_final = cg
        .as_ref()
        .filter(|_| mechanisms.2 != cgroup::Mechanism::None)
        .and_then(|c| c.cpu_time());
    if let Some((u, s)) = cg_cpu_final {
        (user, system) = (u.as_millis() as u64, s.as_millis() as u64);
    } else if let Some((u, s)) = watch.sampled_cpu {
        // Processes killed with the jail may never reach init's accounting.
        if u + s > Duration::from_millis(user + system) {
            (user, system) = (u.as_millis() as u64, s.as_millis() as u64);
        }
    }
    let peak_kib = match cg
        .as_ref()
        .filter(|_| mechanisms.0 != cgroup::Mechanism::None)
        .and_then(|c| c.memory_peak())
    {
        Some(bytes) => bytes / 1024,
        None => maxrss_kib.max(watch.sampled_peak / 1024),
    };
    let oom = cg.as_ref().is_some_and(|c| c.oom_killed());
    let died_of = |sig: i32| {
        watch
            .program_status
            .is_some_and(|s| libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == sig)
    };
    let memory_exceeded = watch.memory_exceeded
        || oom
        || (mechanisms.0 == cgroup::Mechanism::None
            && limits.memory.is_some_and(|m| maxrss_kib * 1024 > m));
    // The RLIMIT_CPU backstop ends a process with SIGXCPU (soft) or SIGKILL (hard).
    let cpu_used = Duration::from_millis(user + system);
    let cpu_time_exceeded = watch.cpu_time_exceeded
        || limits
            .cpu_time
            .is_some_and(|c| died_of(libc::SIGXCPU) || (died_of(libc::SIGKILL) && cpu_used >= c));
    let output_exceeded =
        watch.output_exceeded || (limits.file_size.is_some() && died_of(libc::SIGXFSZ));
    drop(cg); // kills leftovers and removes the cgroup

    let observed = Observed {
        program_status: watch.program_status,
        violation: watch.violation,
        wall_time_exceeded: watch.wall_time_exceeded,
        cpu_time_exceeded,
        memory_exceeded,
        output_exceeded,
        setup_failure,
    };
    let (status, exit_code, signal) = observed.verdict();
    Ok(Outcome {
        status,
        exit_code: if status == Status::SetupError {
            None
        } else {
            exit_code
        },
        signal: if status == Status::SetupError {
            None
        } else {
            signal
        },
        cpu_time_ms: user + system,
        user_time_ms: user,
        system_time_ms: system,
        wall_time_ms: watch.wall_time.as_millis() as u64,
        peak_memory_kib: peak_kib,
        violation: observed.violation,
        error: observed.setup_failure,
        limits: limit_reports(limits, mechanisms, cgroup_note.as_deref()),
        output_bytes: watch.relayed.delivered,
    })
}

/// Which mechanism enforced each limit that was set.
fn limit_reports(
    l: &policy::Limits,
    (memory, pids, cpu): (cgroup::Mechanism, cgroup::Mechanism, cgroup::Mechanism),
    fallback: Option<&str>,
) -> Vec<outcome::LimitReport> {
    use cgroup::Mechanism::*;
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
