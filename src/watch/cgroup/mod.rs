//! One cgroup per run, holding the jail's whole process tree: the memory limit, its peak
//! and OOM kills, the process/thread limit, CPU time (user + system) and a kill that
//! reaches every process, including ones that escaped the monitor's notice.
//!
//! Two layouts are supported:
//!
//! - **cgroup v2** (most hosts today): one directory `moat-<pid>-<n>` under a *base*.
//!   The base is the directory the user names (a delegated subtree), else moat's own
//!   cgroup, else the top of the hierarchy, whichever can give the run the most
//!   controllers. Controllers are enabled in the base's `cgroup.subtree_control`; the
//!   kernel refuses that (EBUSY) for a cgroup that holds processes ("no internal
//!   processes"), and moat's own cgroup always holds moat. moat does **not** move itself
//!   into a leaf to get round this, because that would change the caller's cgroup
//!   behind its back and leave a directory behind; such a base still gives CPU
//!   accounting and `cgroup.kill`, and the report says why memory/pids fell back.
//!   Root can use the top of the hierarchy instead (exempt from the rule); the run's
//!   cgroup then sits outside the cgroup moat was started in, which `describe` says.
//! - **cgroup v1** (older hosts, and this project's build machine): one directory per
//!   hierarchy used (memory, pids, cpuacct), under moat's own cgroup in that hierarchy
//!   when writable (so the caller's own limits still cover the jail), else under the
//!   hierarchy's top. A v2 hierarchy mounted beside them without controllers still
//!   gives `cpu.stat` and `cgroup.kill`, and is used for those.
//!
//! Everything created is removed when the [`RunCgroup`] is dropped.
//!
//! Files: `types` (what the rest share), `layout` (which bases a run can use, read from `mountinfo`), `group` (one
//! run's cgroups), `v2` and `v1` (each version's files), `kill` (ending the tree,
//! removing the directories), `sweep` (leftovers of a killed moat), `fs` (cgroupfs
//! behind a trait that tests replace).

#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod fs;
mod group;
mod kill;
mod layout;
pub(crate) mod mountinfo;
mod sweep;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

mod types;
pub use group::RunCgroup;
pub use layout::Layout;
pub use sweep::sweep_stale;
pub use types::{CgroupError, Mechanism, Mechanisms, Request};
