//! Accounting from /proc, for hosts where no cgroup can be had: the CPU time and
//! resident memory of the jail's processes, sampled by the monitor. A cgroup, where
//! there is one, is exact and preferred; this is the fallback the report names.

use std::collections::HashSet;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// User and system time of the live processes and of the children they reaped.
    pub user: Duration,
    pub system: Duration,
    /// Resident memory of the live processes, summed.
    pub rss: u64,
    /// The largest peak resident memory (VmHWM) of any one live process.
    pub hwm: u64,
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no side effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no side effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// User ticks (utime + cutime), system ticks (stime + cstime) and rss (pages) from
/// the text of /proc/PID/stat. The command name may hold spaces and parentheses:
/// fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((num(14)? + num(16)?, num(15)? + num(17)?, num(24)?))
}

impl Sample {
    pub fn cpu(&self) -> Duration {
        self.user + self.system
    }
}

/// The thread-group id from the text of /proc/PID/status.
pub fn parse_tgid(text: &str) -> Option<i32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// VmHWM in bytes from the text of /proc/PID/status.
pub fn parse_hwm(text: &str) -> Option<u64> {
    let kib = text.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    kib.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()
        .map(|k| k * 1024)
}

/// For each process in `procs` (thread-group leaders), its CPU time (its threads' and its
/// reaped children's) and resident memory, and the largest peak resident memory. The
/// memory of `init` is not counted: it is a copy of moat's own address space (a fork
/// shares every page moat has, so its resident set is moat's, whatever moat holds),
/// not the program's; its CPU time is, as it carries what its reaped children used.
pub fn sample(procs: &HashSet<i32>, init: i32) -> Sample {
    let (hz, page) = (clock_ticks(), page_size());
    let mut out = Sample::default();
    for &pid in procs {
        // /proc/TGID/stat covers every thread of the process.
        let Some((user, system, rss_pages)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|t| parse_stat(&t))
        else {
            continue;
        };
        out.user += Duration::from_micros(user * 1_000_000 / hz);
        out.system += Duration::from_micros(system * 1_000_000 / hz);
        if pid == init {
            continue;
        }
        out.rss += rss_pages * page;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        out.hwm = out.hwm.max(parse_hwm(&status).unwrap_or(0));
    }
    out
}

/// The peak resident memory (VmHWM) of process `pid`, 0 if it cannot be read.
pub fn peak_of(pid: i32) -> u64 {
    // Read while the program waits at its exit stop.
    crate::jail::sys::read_proc(&format!("/proc/{pid}/status"))
        .and_then(|t| parse_hwm(&t))
        .unwrap_or(0)
}

/// Resident memory of `procs` (thread-group leaders), from the short /proc/PID/statm:
/// the read the monitor repeats fastest as a memory limit nears.
pub fn resident(procs: &HashSet<i32>) -> u64 {
    let page = page_size();
    procs
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/statm")).ok())
        .filter_map(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page)
        .sum()
}

/// The jail's writable tmpfs mounts, whose files count as memory when the monitor
/// enforces it: a file kept in a tmpfs is memory as much as the heap is (a cgroup
/// charges it; without one, this is how it is counted).
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// The profile's tmpfs mounts (paths inside the jail).
    pub mounts: Vec<std::path::PathBuf>,
    /// The work dir, through the descriptor init handed over, and the bytes the files
    /// put in took there before the program started (moat's, not the program's).
    pub workdir: Option<(std::os::fd::RawFd, u64)>,
}

impl Stored {
    /// Bytes the program keeps in the jail's tmpfs mounts, seen through process `pid`'s
    /// root (the work dir through its descriptor, beyond what was put in).
    pub fn used(&self, pid: i32) -> u64 {
        let workdir = self.workdir.map_or(0, |(fd, base)| {
            nix::sys::statvfs::fstatvfs(
                // SAFETY: the run holds the work dir's descriptor until the jail is
                // gone, longer than any sample.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            )
            .map_or(0, |st| {
                let used = st.blocks().saturating_sub(st.blocks_free()) * st.fragment_size();
                used.saturating_sub(base)
            })
        });
        tmpfs_used(pid, &self.mounts) + workdir
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty() && self.workdir.is_none()
    }
}

/// Bytes stored in the tmpfs mounts `mounts` (paths inside the jail), seen through
/// process `pid`'s root.
pub fn tmpfs_used(pid: i32, mounts: &[std::path::PathBuf]) -> u64 {
    mounts
        .iter()
        .filter_map(|m| {
            let rel = m.strip_prefix("/").unwrap_or(m);
            let at = std::path::Path::new(&format!("/proc/{pid}/root")).join(rel);
            let st = nix::sys::statvfs::statvfs(&at).ok()?;
            let used = st.blocks().saturating_sub(st.blocks_free());
            Some(used * st.fragment_size())
        })
        .sum()
}

/// Whether `tid` is a thread-group leader (a process, not one more thread of one).
pub fn is_process(tid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|t| parse_tgid(&t))
        .is_none_or(|tgid| tgid == tid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_tricky_name() {
        // comm with a space and a parenthesis
        let mut fields = vec!["S".to_string()];
        for n in 4..=52 {
            fields.push(n.to_string());
        }
        let text = format!("42 (a b) c) {}\n", fields.join(" "));
        assert_eq!(parse_stat(&text), Some((14 + 16, 15 + 17, 24)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id() as i32;
        let s = sample(&HashSet::from([me]), 0);
        assert!(peak_of(me) >= s.rss / 2);
        // init's memory is moat's, never the program's; its CPU time counts.
        let without = sample(&HashSet::from([me]), me);
        assert_eq!((without.rss, without.hwm), (0, 0));
        assert!(without.cpu() >= s.cpu());
        assert!(s.rss > 0);
        assert!(s.hwm >= s.rss / 2);
        let r = resident(&HashSet::from([me]));
        assert!(r > s.rss / 2 && r < s.rss * 2, "{r} vs {}", s.rss);
        assert!(is_process(me));
        assert_eq!(parse_tgid("Name:\tx\nTgid:\t77\n"), Some(77));
        assert_eq!(
            parse_hwm("VmPeak:\t9 kB\nVmHWM:\t  1200 kB\n"),
            Some(1200 * 1024)
        );
    }
}
