//! Watching one run: wire its stdio, give it a cgroup when a limit needs one, decide
//! how each limit is enforced, spawn the jail, monitor it (ptrace events, limits,
//! output) until every process is gone, and collect what was seen.
//!
//! Owns: the run's sequence, the enforcement decision, the monitor and its hooks, the
//! output relay, accounting and cgroups. May use: `jail`, `plan`, `config`, `seccomp`.
//! Decides no verdict: that is the report's.

pub mod accounting;
pub mod cancel;
pub mod cgroup;
pub mod enforce;
pub mod files;
pub mod hook;
pub mod monitor;
pub mod relay;
pub mod run;
pub mod sampler;
pub mod stdio;
pub mod timings;
