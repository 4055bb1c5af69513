//! Leftovers of a moat that died without cleaning up: empty run cgroups whose moat is
//! gone.

use super::layout::Layout;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How old an orphaned run cgroup must be before `sweep_stale` removes it: a moat in
/// another pid namespace can have a pid that looks dead from here, and its fresh
/// cgroup must be left alone.
const STALE_AGE: Duration = Duration::from_secs(600);

/// Removes empty run cgroups (`moat-<pid>-<n>`) whose moat process is gone and which
/// are older than ten minutes: what a moat killed by SIGKILL leaves behind. Returns how
/// many were removed. A cgroup that still holds processes is left alone (rmdir refuses).
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
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("moat-"))
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            if pid <= 0 || u32::try_from(pid) == Ok(me) {
                continue;
            }
            let alive = !matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            );
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age >= STALE_AGE);
            if !alive && old && layout.fs.rmdir(&entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}
