//! Leftovers of a moat that died without cleaning up (SIGKILL leaves no chance to):
//! empty run cgroups whose moat is gone.
//!
//! A run cgroup is named `moat-PID-OWNER-N`, OWNER being the pid namespace and start
//! time of the moat that made it. A moat in the same pid namespace can tell at once
//! whether that process still lives: the pid is gone, or belongs to a process started
//! at another time. A cgroup named from another pid namespace (the pid means nothing
//! here) or in the older `moat-PID-N` form is removed only once it is ten minutes old.

use super::layout::Layout;
use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// How old an orphan whose owner cannot be checked must be before it is removed: a
/// moat in another pid namespace may be alive, and its fresh cgroup must be left alone.
const STALE_AGE: Duration = Duration::from_secs(600);

/// Who made a run cgroup: the pid namespace (its inode) and the start time (clock ticks
/// after boot) of the moat process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pidns: u64,
    start: u64,
}

impl Owner {
    /// This process.
    pub(crate) fn me() -> Owner {
        static ME: OnceLock<Owner> = OnceLock::new();
        *ME.get_or_init(|| Owner {
            pidns: pidns_of("self").unwrap_or(0),
            start: start_of("self").unwrap_or(0),
        })
    }

    fn parse(text: &str) -> Option<Owner> {
        let (ns, start) = text.split_once('x')?;
        Some(Owner {
            pidns: ns.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.pidns, self.start)
    }
}

fn pidns_of(pid: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|m| m.ino())
}

/// Field 22 of /proc/PID/stat.
fn start_of(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Whether the moat that named a cgroup `moat-PID-REST` is gone, as far as can be
/// told from here: `Some(true)` gone, `Some(false)` alive, `None` unknown.
fn owner_gone(pid: i32, rest: &str) -> Option<bool> {
    let owner = rest.split('-').next().and_then(Owner::parse)?;
    if owner.pidns != Owner::me().pidns {
        return None;
    }
    Some(start_of(&pid.to_string()) != Some(owner.start))
}

/// Removes empty run cgroups whose moat process is gone: at once when this moat can
/// tell (same pid namespace), else once they are ten minutes old. Returns how many
/// were removed. A cgroup that still holds processes is left alone (rmdir refuses).
pub fn sweep_stale(layout: &Layout) -> usize {
    let mut bases: Vec<&Path> = Vec::new();
    if let Ok(b) = &layout.v2 {
        bases.push(&b.dir);
    }
    for b in [&layout.memory_v1, &layout.pids_v1, &layout.cpuacct_v1]
        .into_iter()
        .flatten()
    {
        bases.push(&b.dir);
    }
    bases.dedup();
    let me = std::process::id();
    let mut removed = 0;
    for base in bases {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((pid, rest)) = name
                .to_str()
                .and_then(|n| n.strip_prefix("moat-"))
                .and_then(|n| n.split_once('-'))
                .and_then(|(p, rest)| Some((p.parse::<i32>().ok()?, rest)))
            else {
                continue;
            };
            if pid <= 0 || u32::try_from(pid) == Ok(me) {
                continue;
            }
            let gone = owner_gone(pid, rest).unwrap_or_else(|| {
                let dead = matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                    Err(nix::errno::Errno::ESRCH)
                );
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age >= STALE_AGE);
                dead && old
            });
            if gone && layout.fs.rmdir(&entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_name_this_process_and_tell_the_dead() {
        let me = Owner::me();
        assert!(me.pidns > 0 && me.start > 0);
        assert_eq!(Owner::parse(&me.to_string()), Some(me));
        let pid = std::process::id() as i32;
        assert_eq!(owner_gone(pid, &format!("{me}-3")), Some(false));
        // The same pid started at another time is another process.
        let other = Owner {
            start: me.start + 1,
            ..me
        };
        assert_eq!(owner_gone(pid, &format!("{other}-3")), Some(true));
        // Another pid namespace, or the old name: cannot tell.
        let foreign = Owner {
            pidns: me.pidns + 1,
            ..me
        };
        assert_eq!(owner_gone(pid, &format!("{foreign}-3")), None);
        assert_eq!(owner_gone(pid, "3"), None);
    }
}
