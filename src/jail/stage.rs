//! Where the child's setup failed: one numbering shared by the child, which writes a
//! [`ChildFailure`] to the error pipe and leaves, and the parent, which reads it and
//! says in words what failed and what to do.

use crate::plan::Plan;

/// A step of the child's setup, in the order it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// init waits for the parent's go.
    Sync = 1,
    /// init puts the run's descriptors on 0, 1 and 2 (`index`: the fd).
    Stdio,
    /// init drops a root caller's supplementary groups.
    Groups,
    /// init becomes the inside uid/gid.
    Ids,
    /// The scratch root the new root is built in.
    MountScratch,
    /// One step of the planned tree (`index`: the step).
    Mount,
    /// Detaching the host and pivoting into the new root.
    Pivot,
    /// Remounting the root read-only.
    SealRoot,
    Hostname,
    Loopback,
    /// init hands the parent the work dir and waits for its go-ahead.
    Ready,
    /// init arms its timer for the wall-time limit.
    WallTimer,
    /// init forks the program's process.
    Fork,
    Setsid,
    Signals,
    Chdir,
    /// The program's process opens a work-dir file for a descriptor (`index`: the fd).
    Open,
    /// One resource limit (`index`: its position in the plan's list).
    Rlimit,
    Securebits,
    Bounding,
    Ambient,
    DropGroups,
    SetIds,
    Capset,
    NoNewPrivs,
    /// The program's process takes back the caller's CPU mask.
    Cpus,
    Seccomp,
    Exec,
}

const ALL: [Stage; 28] = [
    Stage::Sync,
    Stage::Stdio,
    Stage::Groups,
    Stage::Ids,
    Stage::MountScratch,
    Stage::Mount,
    Stage::Pivot,
    Stage::SealRoot,
    Stage::Hostname,
    Stage::Loopback,
    Stage::Ready,
    Stage::WallTimer,
    Stage::Fork,
    Stage::Setsid,
    Stage::Signals,
    Stage::Chdir,
    Stage::Open,
    Stage::Rlimit,
    Stage::Securebits,
    Stage::Bounding,
    Stage::Ambient,
    Stage::DropGroups,
    Stage::SetIds,
    Stage::Capset,
    Stage::NoNewPrivs,
    Stage::Cpus,
    Stage::Seccomp,
    Stage::Exec,
];

impl Stage {
    pub fn from_u32(v: u32) -> Option<Stage> {
        ALL.into_iter().find(|s| *s as u32 == v)
    }
}

/// A failure in the child, as written to the error pipe: which stage, which item of
/// it (a mount step, an rlimit, an fd), and the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ChildFailure {
    pub stage: u32,
    pub index: u32,
    pub errno: i32,
}

impl ChildFailure {
    pub const SIZE: usize = std::mem::size_of::<ChildFailure>();

    pub fn new(stage: Stage, index: u32, errno: i32) -> ChildFailure {
        ChildFailure {
            stage: stage as u32,
            index,
            errno,
        }
    }

    pub fn stage(&self) -> Option<Stage> {
        Stage::from_u32(self.stage)
    }

    /// The record as it travels through the pipe.
    pub fn to_bytes(self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        out[0..4].copy_from_slice(&self.stage.to_ne_bytes());
        out[4..8].copy_from_slice(&self.index.to_ne_bytes());
        out[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    pub fn from_bytes(b: &[u8; Self::SIZE]) -> ChildFailure {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        ChildFailure {
            stage: u32::from_ne_bytes(word(0)),
            index: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        }
    }

    /// The exit status the child leaves with: 127 and 126 as a shell gives for a
    /// program that is not there or cannot be run, 125 for anything else.
    pub fn exit_code(&self) -> i32 {
        match (self.stage(), self.errno) {
            (Some(Stage::Exec), libc::ENOENT) => 127,
            (Some(Stage::Exec), _) => 126,
            _ => 125,
        }
    }

    /// What failed, in words, with a hint where there is a usual cause.
    pub fn describe(&self, plan: &Plan) -> String {
        let err = std::io::Error::from_raw_os_error(self.errno);
        let Some(stage) = self.stage() else {
            return format!("setup stage {} failed: {err}", self.stage);
        };
        let what = match stage {
            Stage::Sync => "waiting for the monitor".to_string(),
            Stage::Stdio => format!("connecting the program's fd {}", self.index),
            Stage::Groups | Stage::Ids => "switching to the inside ids".to_string(),
            Stage::MountScratch => "preparing the scratch root".to_string(),
            Stage::Mount => plan.tree.steps.get(self.index as usize).map_or_else(
                || format!("mount step {}", self.index),
                |s| {
                    s.to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            ),
            Stage::Pivot => "pivoting into the new root".to_string(),
            Stage::SealRoot => "making the root read-only".to_string(),
            Stage::Hostname => "setting the hostname".to_string(),
            Stage::Loopback => "bringing up the loopback interface".to_string(),
            Stage::Ready => "handing the work dir to moat".to_string(),
            Stage::WallTimer => "arming the wall-time limit's timer".to_string(),
            Stage::Fork => "starting the program's process".to_string(),
            Stage::Setsid => "starting a new session".to_string(),
            Stage::Signals => "resetting the signal mask".to_string(),
            Stage::Chdir => format!(
                "changing to the working directory {}",
                plan.policy.cwd.display()
            ),
            Stage::Open => format!("opening the work-dir file for fd {}", self.index),
            Stage::Rlimit => match plan.rlimits.get(self.index as usize) {
                Some((resource, soft, hard)) => {
                    format!("setting {} to {soft} (hard {hard})", rlimit_name(*resource))
                }
                None => "setting resource limits".to_string(),
            },
            Stage::Securebits => "locking securebits".to_string(),
            Stage::Bounding => "dropping the capability bounding set".to_string(),
            Stage::Ambient => "clearing ambient capabilities".to_string(),
            Stage::DropGroups => "dropping supplementary groups".to_string(),
            Stage::SetIds => "switching to the inside uid/gid".to_string(),
            Stage::Capset => "clearing capabilities".to_string(),
            Stage::NoNewPrivs => "setting no_new_privs".to_string(),
            Stage::Cpus => "taking back the caller's CPU mask".to_string(),
            Stage::Seccomp => "loading the seccomp filter".to_string(),
            Stage::Exec => format!("executing {}", plan.program.display()),
        };
        let hint = match (stage, self.errno) {
            (Stage::Mount, libc::EACCES) if plan.ids.privileged => {
                " (as root, the jail runs as uid 65534 outside: every bound path must be readable by it)"
            }
            (Stage::Chdir, libc::ENOENT) => {
                " (bind the directory, e.g. --bind DIR, or pick another --cwd)"
            }
            (Stage::Exec, libc::ENOENT) => {
                " (the program or its interpreter is missing inside the jail)"
            }
            (Stage::Exec, libc::EACCES) => {
                " (the program is not executable by the jail's user, or sits on a writable (noexec) mount)"
            }
            _ => "",
        };
        format!("{what} failed: {err}{hint}")
    }
}

/// `RLIMIT_NOFILE` for its number, and the limit that asked for it.
fn rlimit_name(resource: crate::config::limits::Resource) -> String {
    if resource == libc::RLIMIT_CORE {
        return "RLIMIT_CORE".into();
    }
    crate::config::limits::TABLE
        .iter()
        .find_map(|s| {
            s.rlimit
                .filter(|r| r.resource == resource)
                .map(|r| format!("{} (limit {})", r.name, s.key))
        })
        .unwrap_or_else(|| format!("rlimit {resource}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_through_the_pipe_format() {
        for (i, stage) in ALL.iter().enumerate() {
            assert_eq!(*stage as u32, i as u32 + 1, "{stage:?}: numbers are dense");
            let f = ChildFailure::new(*stage, 7, libc::EACCES);
            let back = ChildFailure::from_bytes(&f.to_bytes());
            assert_eq!(back, f);
            assert_eq!(back.stage(), Some(*stage));
        }
        assert_eq!(Stage::from_u32(0), None);
        assert_eq!(Stage::from_u32(ALL.len() as u32 + 1), None);
        let exec = |errno| ChildFailure::new(Stage::Exec, 0, errno).exit_code();
        assert_eq!((exec(libc::ENOENT), exec(libc::EACCES)), (127, 126));
        assert_eq!(
            ChildFailure::new(Stage::Mount, 3, libc::EPERM).exit_code(),
            125
        );
    }

    #[test]
    fn a_failed_rlimit_is_named() {
        use crate::config::policy::{Overrides, Policy};
        let mut o = Overrides::default();
        o.limits.open_files = Some(64);
        let plan =
            Plan::build(Policy::load("default", &o).unwrap(), &["/bin/true".into()]).unwrap();
        let at = plan
            .rlimits
            .iter()
            .position(|(r, _, _)| *r == libc::RLIMIT_NOFILE)
            .unwrap();
        let text = ChildFailure::new(Stage::Rlimit, at as u32, libc::EPERM).describe(&plan);
        assert!(
            text.starts_with("setting RLIMIT_NOFILE (limit open_files) to 64 (hard 64) failed:"),
            "{text}"
        );
    }
}
