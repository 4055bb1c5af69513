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
//! `seccomp`, `user`) is pure computation and changes nothing on the host. `run` drives
//! one run through the rest: it wires stdio (`relay`), takes a `cgroup` when a limit
//! needs one, then `spawn` (with the child-side `mnt`, `net`, `privs`, `init`) and
//! `monitor` (with `accounting`) make the system calls that change anything.
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
pub mod config;
pub mod jail;
pub mod learn;
pub mod plan;
pub mod report;
pub mod seccomp;
pub mod watch;

pub use config::limits::Limits;
pub use config::policy::{Overrides, Policy, PolicyError};
pub use jail::spawn::SpawnError;
pub use plan::{Plan, PlanError};
pub use report::outcome::{Outcome, Status};
pub use watch::run::{run, run_with, RunOptions};

use report::outcome::ErrorKind;

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
