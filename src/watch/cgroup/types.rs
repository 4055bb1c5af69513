//! What the cgroup files share: the mechanism a resource gets, what a run asks for,
//! and the errors with what to do about them.

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
