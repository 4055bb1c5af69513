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
//! Files: `layout` (which bases a run can use, read from `mountinfo`), `group` (one
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

pub use group::RunCgroup;
pub use layout::Layout;
pub use sweep::sweep_stale;

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What limits or measures one resource of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    CgroupV2,
    CgroupV1,
    None,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::CgroupV2 => "cgroup_v2",
            Mechanism::CgroupV1 => "cgroup_v1",
            Mechanism::None => "none",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mechanism for each resource, as a layout would give them to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mechanisms {
    pub memory: Mechanism,
    pub pids: Mechanism,
    pub cpu: Mechanism,
}

impl Mechanisms {
    pub const NONE: Mechanisms = Mechanisms {
        memory: Mechanism::None,
        pids: Mechanism::None,
        cpu: Mechanism::None,
    };
}

/// What a run asks of its cgroup.
///
/// Memory is always accounted (the report wants the tree's peak) when a cgroup can do
/// it, with or without `memory_max`. A pids cgroup is made only for `pids_max`. CPU time
/// comes free with a v2 cgroup; `want_cpu` asks for a v1 cpuacct cgroup where that is
/// the only way to get it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub memory_max: Option<u64>,
    pub pids_max: Option<u64>,
    pub want_cpu: bool,
}

/// Why a cgroup operation failed, where, and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CgroupError {
    /// The cgroup the caller named cannot be a base for runs.
    #[error("the cgroup {} cannot hold runs: {reason}", .path.display())]
    Base {
        /// The directory named.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A run's cgroup directory could not be made.
    #[error("cannot create the cgroup {}: {source} ({hint})", .path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    /// A limit could not be written.
    #[error("cannot write {value:?} to {}: {source} ({hint})", .path.display())]
    Write {
        /// The control file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
        /// What to do about it.
        hint: &'static str,
    },
    #[error(
        "cannot remove the cgroup {}: {source} (a process may still be inside: kill it, then rmdir the directory)",
        .path.display()
    )]
    /// A run's cgroup directory could not be removed.
    Remove {
        /// The directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

/// What to do about an errno from cgroupfs; the kernel's own words rarely say.
pub(crate) fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "this user may not write there: run as root, or name a cgroup v2 directory delegated to this user"
        }
        Some(libc::EBUSY) => {
            "the cgroup holds processes, and the kernel enables controllers only below cgroups that hold none: name a delegated cgroup with no processes in it"
        }
        Some(libc::ENOSPC) | Some(libc::EAGAIN) => {
            "the hierarchy's limit on cgroups is reached: see cgroup.max.descendants and cgroup.max.depth"
        }
        Some(libc::EROFS) => {
            "cgroupfs is mounted read-only here (a container?): mount it read-write or run without cgroup limits"
        }
        Some(libc::ENOENT) => "the file is missing: the controller is not enabled for this cgroup",
        Some(libc::EINVAL) => "the kernel rejected the value",
        Some(libc::ESRCH) => "the process no longer exists",
        Some(libc::EOPNOTSUPP) => "the controller cannot be used in this cgroup (threaded?)",
        _ => "see `moat check` for the host's cgroup layout",
    }
}
