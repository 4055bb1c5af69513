//! cgroup v2: controllers enabled in the base, limits written in the run's directory,
//! and what the kernel counts there (cpu.stat, memory.peak, memory.events).

use super::fs::{key_value, read_u64, read_words, set, write_file};
use super::types::{hint, CgroupError, Request};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Enables what it can of `want` for the children of `base`; returns what is enabled.
/// Asked for together first (one write is the common case); when the kernel refuses,
/// one at a time, so that one refused controller costs only itself.
pub(crate) fn enable_controllers(
    base: &Path,
    want: &[&'static str],
    notes: &mut Vec<String>,
) -> Vec<&'static str> {
    let file = base.join("cgroup.subtree_control");
    let on = read_words(&file);
    let missing: Vec<&'static str> = want
        .iter()
        .copied()
        .filter(|c| !on.iter().any(|o| o == c))
        .collect();
    if missing.is_empty() {
        return want.to_vec();
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if write_file(&file, &all.join(" ")).is_ok() {
        return want.to_vec();
    }
    let mut enabled: Vec<&'static str> = want
        .iter()
        .copied()
        .filter(|c| !missing.contains(c))
        .collect();
    for c in missing {
        match write_file(&file, &format!("+{c}")) {
            Ok(()) => enabled.push(c),
            Err(e) => notes.push(format!(
                "cannot enable the {c} controller in {}: {e} ({})",
                file.display(),
                hint(&e)
            )),
        }
    }
    enabled
}

/// Writes the limits of `req` whose controllers are `enabled` into the run's `dir`.
pub(crate) fn apply_limits(
    dir: &Path,
    req: &Request,
    memory: bool,
    pids: bool,
) -> Result<(), CgroupError> {
    if memory {
        if let Some(max) = req.memory_max {
            set(dir, "memory.max", max)?;
        }
        // Swapped-out pages are outside memory.max: with swap allowed a program could
        // keep more than its limit and run slower instead of failing.
        if dir.join("memory.swap.max").exists() {
            set(dir, "memory.swap.max", 0)?;
        }
    }
    if pids {
        if let Some(max) = req.pids_max {
            set(dir, "pids.max", max)?;
        }
    }
    Ok(())
}

/// User and system CPU time of everything that has been in `dir` (cpu.stat is kept
/// for every v2 cgroup, with or without the cpu controller).
pub(crate) fn cpu_time(dir: &Path) -> Option<(Duration, Duration)> {
    let stat = fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let user = key_value(&stat, "user_usec")?;
    let system = key_value(&stat, "system_usec")?;
    Some((Duration::from_micros(user), Duration::from_micros(system)))
}

/// memory.peak, or on kernels before 5.19 the highest memory.current seen so far
/// (kept in `seen`), so the caller should ask while the run goes on.
pub(crate) fn memory_peak(dir: &Path, seen: &AtomicU64) -> Option<u64> {
    if let Some(peak) = read_u64(&dir.join("memory.peak")) {
        return Some(peak);
    }
    let now = read_u64(&dir.join("memory.current"))?;
    Some(seen.fetch_max(now, Ordering::Relaxed).max(now))
}

/// The kernel invoked the OOM killer for this cgroup's limit (`oom`) or killed one of
/// its processes for lack of memory (`oom_kill`, which also counts kills by an
/// enclosing cgroup's limit or the global OOM killer). Not `max`, which rises each
/// time usage touches the limit, including when reclaiming page cache makes room.
pub(crate) fn oom_killed(dir: &Path) -> bool {
    fs::read_to_string(dir.join("memory.events")).is_ok_and(|t| {
        key_value(&t, "oom").unwrap_or(0) > 0 || key_value(&t, "oom_kill").unwrap_or(0) > 0
    })
}

/// cgroup.kill (Linux 5.14): the kernel kills every process in one step, and one
/// forking at that moment cannot escape. False where the file is missing.
pub(crate) fn kill(dir: &Path) -> bool {
    write_file(&dir.join("cgroup.kill"), "1").is_ok()
}
