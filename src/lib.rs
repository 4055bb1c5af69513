//! moat: a process jail for one untrusted program.
//!
//! The pipeline reads in one direction, one folder per stage:
//!
//! ```text
//! profile (TOML) + overrides -> Policy -> Plan -> jail -> watch -> Outcome
//!        config/                config/   plan/   jail/   watch/   report/
//! ```
//!
//! `config` validates a profile and the caller's overrides into a [`Policy`]; `plan`
//! computes everything the child needs (libraries from the ELF, the file tree, id maps,
//! the compiled filter from `seccomp`, which carries moat's always-denied core);
//! `jail` clones the namespaces and carries the plan out; `watch` monitors the run and
//! enforces its limits; `report` turns what was seen into one verdict. `learn` hooks
//! the monitor, `check` reads the same models a run uses to tell what the host offers.
//! Planning changes nothing on the host, so a [`Plan`] can be printed and tested
//! without privileges.
//!
//! ```no_run
//! use moat::{Overrides, Plan, Policy};
//! let policy = Policy::load("default", &Overrides::default())?;
//! let plan = Plan::build(policy, &["/bin/echo".into(), "hello".into()])?;
//! let outcome = moat::run(&plan)?;
//! println!("{}", outcome.to_json());
//! # Ok::<(), moat::Error>(())
//! ```
//!
//! A [`Policy`] is made only by validating a profile, and a [`Plan`] only from a
//! Policy: neither has a public field, so no caller can add a rule a profile could not
//! hold. The filter itself carries moat's always-denied core in front of whatever rules
//! it is given, so even a rule built inside the crate cannot lift it.
//!
//! ```compile_fail
//! fn widen(policy: &mut moat::Policy) {
//!     policy.rules.clear(); // the rules are not public
//! }
//! ```
//!
//! ```compile_fail
//! fn swap(plan: &mut moat::Plan, other: &moat::Plan) {
//!     plan.filter = other.filter.clone(); // nor is the compiled filter
//! }
//! ```
#![warn(missing_docs)]

pub mod check;
pub(crate) mod config;
pub(crate) mod jail;
pub mod learn;
pub(crate) mod plan;
pub(crate) mod report;
pub mod request;
pub(crate) mod seccomp;
pub mod serve;
pub(crate) mod watch;

pub use config::layers::listing as profile_listing;
pub use config::limits::{Limit, Limits};
pub use config::policy::{Bind, FileIn, FileOut, Overrides, Policy, PolicyError, Workdir};
pub use config::{limits, units};
pub use jail::pool::{Pool, PoolStats};
pub use jail::spawn::JailError;
pub use plan::cache::PlanCache;
pub use plan::{Plan, PlanError};
pub use report::advice::violation_advice;
pub use report::outcome::{
    ErrorInfo, ErrorKind, LimitReport, Outcome, Status, Violation, REPORT_SCHEMA,
    VERDICT_EXIT_CODES,
};
pub use request::{exec, Request, Response};
pub use watch::cancel::Cancel;
pub use watch::cgroup::CgroupError;
pub use watch::run::{RunError, RunOptions};
pub use watch::stdio::StdioError;
pub use watch::timings::{Phase, Timings};

use std::fmt;

/// Any reason moat could not run the program.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The profile or the overrides are wrong (the message locates the mistake).
    Policy(PolicyError),
    /// The plan could not be built (a missing program or library, a bad ELF…).
    Plan(PlanError),
    /// The jail could not be started (stdio files, the named cgroup, namespaces…).
    Run(RunError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Policy(e) => e.fmt(f),
            Error::Plan(e) => e.fmt(f),
            // The cause of blocked user namespaces is the host's: say which and how
            // to fix it, as `moat check` would.
            Error::Run(RunError::Jail(JailError::Namespaces { errno })) => write!(
                f,
                "cannot create the jail's namespaces: {}",
                check::explain_userns_failure(*errno)
            ),
            Error::Run(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Policy(e) => Some(e),
            Error::Plan(e) => Some(e),
            Error::Run(e) => Some(e),
        }
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Error {
        Error::Policy(e)
    }
}

impl From<PlanError> for Error {
    fn from(e: PlanError) -> Error {
        Error::Plan(e)
    }
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Error {
        Error::Run(e)
    }
}

impl Error {
    /// The report for a run that never started: `setup_error`, with exit status 127 for
    /// a missing program and 126 for one that cannot be executed.
    pub fn to_outcome(&self) -> Outcome {
        let kind = match self {
            Error::Plan(e) => ErrorKind::of_plan(e),
            _ => ErrorKind::Setup,
        };
        Outcome::setup_error(kind, self.to_string())
    }
}

/// Loads `profile`, applies `overrides` and plans `command`, as
/// `Plan::build(Policy::load(profile, overrides)?, command)` does, through `cache`
/// when one is given: a plan kept there for the same command, profile and overrides
/// is used when every file it was built from is as it was (see [`PlanCache`] for the
/// key), and a plan built afresh is kept there for the next run.
/// [`Plan::from_cache`] tells which it was.
pub fn prepare(
    profile: &str,
    overrides: &Overrides,
    command: &[std::ffi::OsString],
    cache: Option<&PlanCache>,
) -> Result<Plan, Error> {
    let key = cache.and_then(|_| plan::cache::Key::new(profile, overrides, command));
    if let (Some(cache), Some(key)) = (cache, &key) {
        if let Some(plan) = cache.get(key) {
            return Ok(plan);
        }
    }
    let plan = Plan::build(Policy::load(profile, overrides)?, command)?;
    if let (Some(cache), Some(key)) = (cache, &key) {
        cache.put(key, &plan);
    }
    Ok(plan)
}

/// Runs a planned program in the jail and waits for its one verdict. Call it from the
/// thread that should monitor the run; any number of threads may run jails at once.
/// It returns once the whole jail is gone.
pub fn run(plan: &Plan) -> Result<Outcome, Error> {
    run_with(plan, &RunOptions::default())
}

/// As [`run`], with the run's stdio and cgroup chosen by `opts`. A plan built with
/// [`Overrides::learn`] runs as a learning run: its outcome carries what was learned.
pub fn run_with(plan: &Plan, opts: &RunOptions) -> Result<Outcome, Error> {
    plan.log();
    let outcome = if plan.policy.learn {
        let mut learner = learn::Learner::new(plan);
        let ran = watch::run::run(plan, opts, Some(&mut learner))?;
        let mut outcome = Outcome::from_run(&ran);
        outcome.learned = Some(learner.learned);
        outcome
    } else {
        Outcome::from_run(&watch::run::run(plan, opts, None)?)
    };
    outcome.log();
    Ok(outcome)
}
