//! cgroup v1: one directory per hierarchy used (memory, pids, cpuacct), and what each
//! counts.

use super::fs::{key_value, read_u64, set};
use super::types::CgroupError;
use std::fs;
use std::path::Path;
use std::time::Duration;

/// memory.limit_in_bytes, with memsw equal to it where the kernel accounts swap.
pub(crate) fn apply_memory(dir: &Path, max: u64) -> Result<(), CgroupError> {
    set(dir, "memory.limit_in_bytes", max)?;
    // memsw is memory + swap; equal to the limit, no swap is left to use. It must not
    // be below limit_in_bytes, hence the order.
    if dir.join("memory.memsw.limit_in_bytes").exists() {
        set(dir, "memory.memsw.limit_in_bytes", max)?;
    }
    Ok(())
}

/// User and system CPU time from cpuacct. cpuacct.usage is exact; the user/system
/// split is sampled at each tick, so short runs show 0/0: the split is scaled to the
/// exact total, as v2's cpu.stat does.
pub(crate) fn cpu_time(dir: &Path) -> Option<(Duration, Duration)> {
    let total = read_u64(&dir.join("cpuacct.usage"))?;
    let split = match (
        read_u64(&dir.join("cpuacct.usage_user")),
        read_u64(&dir.join("cpuacct.usage_sys")),
    ) {
        (Some(u), Some(s)) => (u, s),
        _ => {
            let stat = fs::read_to_string(dir.join("cpuacct.stat")).ok()?;
            (key_value(&stat, "user")?, key_value(&stat, "system")?)
        }
    };
    let (user, system) = split_total(total, split);
    Some((Duration::from_nanos(user), Duration::from_nanos(system)))
}

/// memory.max_usage_in_bytes.
pub(crate) fn memory_peak(dir: &Path) -> Option<u64> {
    read_u64(&dir.join("memory.max_usage_in_bytes"))
}

/// `memory.oom_control`'s `oom_kill` or `under_oom`. Not `failcnt`, which rises each
/// time usage touches the limit, except before Linux 4.13, which has no `oom_kill`
/// line: there `failcnt > 0` is the only sign there is.
pub(crate) fn oom_killed(dir: &Path) -> bool {
    let control = fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
    if key_value(&control, "under_oom").unwrap_or(0) > 0 {
        return true;
    }
    match key_value(&control, "oom_kill") {
        Some(kills) => kills > 0,
        None => read_u64(&dir.join("memory.failcnt")).unwrap_or(0) > 0,
    }
}

/// Splits an exact total in the proportion of a sampled user/system pair. A run too
/// short to be sampled at all counts as user time, as v2 does.
pub(crate) fn split_total(total: u64, (user, system): (u64, u64)) -> (u64, u64) {
    let sum = u128::from(user) + u128::from(system);
    if sum == 0 {
        return (total, 0);
    }
    let user = u64::try_from(u128::from(total) * u128::from(user) / sum).unwrap_or(total);
    (user, total.saturating_sub(user))
}
