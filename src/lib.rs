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
use std::time::Instant;

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

/// Runs a planned program in the jail and waits for its one verdict. Call it from the
/// thread that should monitor the run; any number of threads may run jails at once.
pub fn run(plan: &Plan) -> Result<Outcome, SpawnError> {
    let started = Instant::now();
    let jail = spawn::spawn(plan)?;
    let watch = monitor::watch(&jail, plan.policy.limits.wall_time, started);
    let setup_failure = jail.failures().first().map(|f| ErrorInfo {
        kind: match (f.stage, f.errno) {
            (spawn::STAGE_EXEC, libc::ENOENT) => ErrorKind::ProgramNotFound,
            (spawn::STAGE_EXEC, _) => ErrorKind::ProgramNotExecutable,
            _ => ErrorKind::Setup,
        },
        message: spawn::describe(plan, f),
    });
    let observed = Observed {
        program_status: watch.program_status,
        violation: watch.violation,
        wall_time_exceeded: watch.wall_time_exceeded,
        setup_failure,
    };
    let (status, exit_code, signal) = observed.verdict();
    let ms = |tv: libc::timeval| tv.tv_sec as u64 * 1000 + tv.tv_usec as u64 / 1000;
    let (user, system, peak) = watch.rusage.map_or((0, 0, 0), |ru| {
        (ms(ru.ru_utime), ms(ru.ru_stime), ru.ru_maxrss.max(0) as u64)
    });
    let mut limits = Vec::new();
    if let Some(w) = plan.policy.limits.wall_time {
        limits.push(outcome::LimitReport {
            name: "wall_time",
            value: units::Dur(w).to_string(),
            enforced_by: "monitor",
        });
    }
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
        peak_memory_kib: peak,
        violation: observed.violation,
        error: observed.setup_failure,
        limits,
    })
}
