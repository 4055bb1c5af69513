//! Watching one run: wire its stdio, give it a cgroup when a limit needs one, spawn
//! the jail, monitor it (ptrace events, limits, output) until every process is gone.
//!
//! Owns: the run's sequence, the monitor, the output relay, accounting and cgroups.
//! May use: `jail`, `plan`, `config`, `seccomp`.

pub mod accounting;
pub mod cgroup;
pub mod monitor;
pub mod relay;
pub mod run;
