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

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
pub enum CgroupError {
    #[error("the cgroup {} cannot hold runs: {reason}", .path.display())]
    Base { path: PathBuf, reason: String },
    #[error("cannot create the cgroup {}: {source} ({hint})", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    #[error("cannot write {value:?} to {}: {source} ({hint})", .path.display())]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    #[error(
        "cannot remove the cgroup {}: {source} (a process may still be inside: kill it, then rmdir the directory)",
        .path.display()
    )]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What to do about an errno from cgroupfs; the kernel's own words rarely say.
fn hint(e: &io::Error) -> &'static str {
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

/// The operations where cgroupfs and an ordinary directory tree behave differently:
/// the kernel fills a new cgroup with control files and removes them with it. Tests
/// replace this to run the real logic on a fake tree; reads and writes of control
/// files go to the file system directly in both cases.
trait Fs: Send + Sync + fmt::Debug {
    fn mkdir(&self, dir: &Path) -> io::Result<()>;
    fn rmdir(&self, dir: &Path) -> io::Result<()>;
    fn check_writable(&self, path: &Path) -> io::Result<()>;
}

#[derive(Debug)]
struct HostFs;

impl Fs for HostFs {
    fn mkdir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir(dir)
    }
    fn rmdir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        use nix::unistd::{access, AccessFlags};
        access(path, AccessFlags::W_OK).map_err(io::Error::from)
    }
}

/// Where runs get their cgroup (v2 directory)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Named,
    Current,
    Top,
}

/// A cgroup v2 directory under which run cgroups can be made.
#[derive(Debug, Clone)]
struct V2Base {
    dir: PathBuf,
    origin: Origin,
    /// `cgroup.controllers`: what the base may hand to its children.
    available: Vec<String>,
    /// `cgroup.subtree_control`: what its children get already.
    enabled: Vec<String>,
    /// Whether the kernel would let us enable more: not while the base holds processes,
    /// except in the real root cgroup, which is exempt.
    can_enable: bool,
}

impl V2Base {
    fn offers(&self, controller: &str) -> bool {
        let has = |list: &[String]| list.iter().any(|c| c == controller);
        has(&self.enabled) || (self.can_enable && has(&self.available))
    }

    fn why_not(&self, controller: &str) -> String {
        if !self.available.iter().any(|c| c == controller) {
            format!(
                "{} does not offer the {controller} controller (not in its cgroup.controllers)",
                self.dir.display()
            )
        } else {
            format!(
                "{} holds processes, so the kernel will not enable {controller} for its children (name a delegated cgroup with no processes in it)",
                self.dir.display()
            )
        }
    }

    fn score(&self) -> u8 {
        2 * u8::from(self.offers("memory")) + u8::from(self.offers("pids"))
    }
}

/// A cgroup v1 hierarchy's directory under which run cgroups can be made.
#[derive(Debug, Clone)]
struct V1Base {
    dir: PathBuf,
}

/// Where the host's cgroup hierarchies are, and which of them this process can use.
#[derive(Debug, Clone)]
pub struct Layout {
    fs: Arc<dyn Fs>,
    /// This process's own cgroup v2 directory, when the v2 mount shows it.
    v2_current: Option<PathBuf>,
    /// The v2 base chosen, or why there is none.
    v2: Result<V2Base, String>,
    /// Set when the user named the v2 base: its problems are then errors, not fallbacks.
    v2_named: Option<PathBuf>,
    memory_v1: Result<V1Base, String>,
    pids_v1: Result<V1Base, String>,
    cpuacct_v1: Result<V1Base, String>,
}

/// One line of /proc/self/mountinfo that matters here.
pub(crate) struct Mount {
    /// The directory of the file system mounted (for cgroupfs: a cgroup path).
    pub(crate) root: String,
    pub(crate) point: PathBuf,
    pub(crate) fstype: String,
    pub(crate) super_options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut rest = after.split(' ');
            let fstype = rest.next()?.to_string();
            let _source = rest.next();
            Some(Mount {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype,
                super_options: rest
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// /proc/self/cgroup: (controllers, path) per hierarchy; v2 has no controllers listed.
pub(crate) fn parse_self_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            // The path may itself contain ':'.
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let list = if id == "0" && controllers.is_empty() {
                Vec::new()
            } else {
                controllers.split(',').map(str::to_string).collect()
            };
            Some((list, path.to_string()))
        })
        .collect()
}

/// A path as seen under `fs_root`.
fn under(fs_root: &Path, abs: &Path) -> PathBuf {
    fs_root.join(abs.strip_prefix("/").unwrap_or(abs))
}

/// The directory of cgroup `cg_path` through `mount`, if that mount shows it. Paths
/// with `..` belong to cgroups outside our cgroup namespace: not reachable.
pub(crate) fn cgroup_dir(fs_root: &Path, mount: &Mount, cg_path: &str) -> Option<PathBuf> {
    if cg_path.split('/').any(|c| c == "..") {
        return None;
    }
    let rest = if mount.root == "/" {
        cg_path
    } else {
        let rest = cg_path.strip_prefix(mount.root.trim_end_matches('/'))?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let mount_dir = under(fs_root, &mount.point);
    let rest = rest.trim_matches('/');
    Some(if rest.is_empty() {
        mount_dir
    } else {
        mount_dir.join(rest)
    })
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.trim_start_matches('+').to_string())
        .collect()
}

fn has_processes(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
}

/// "Permission denied" rather than "Permission denied (os error 13)", for one-line reports.
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

fn v2_candidate(
    fs: &dyn Fs,
    dir: &Path,
    origin: Origin,
    current: Option<&Path>,
) -> Result<V2Base, String> {
    if !dir.join("cgroup.controllers").is_file() {
        return Err(format!(
            "{} is not a cgroup v2 directory (no cgroup.controllers)",
            dir.display()
        ));
    }
    if let Err(e) = fs.check_writable(dir) {
        return Err(format!(
            "{} is not writable by uid {} ({})",
            dir.display(),
            uid(),
            errno_text(&e)
        ));
    }
    // The kernel lets a process move another between cgroups only with write access to
    // cgroup.procs of their common ancestor (the delegation containment rule).
    if let Some(current) = current {
        let ancestor = common_ancestor(current, dir);
        let procs = ancestor.join("cgroup.procs");
        if !ancestor.as_os_str().is_empty() && fs.check_writable(&procs).is_err() {
            return Err(format!(
                "moving processes from {} into {} needs write access to {}, which uid {} lacks",
                current.display(),
                dir.display(),
                procs.display(),
                uid()
            ));
        }
    }
    // Only the real root cgroup lacks cgroup.type, and only it is exempt from the
    // no-internal-process rule.
    let real_root = !dir.join("cgroup.type").exists();
    Ok(V2Base {
        dir: dir.to_path_buf(),
        origin,
        available: read_words(&dir.join("cgroup.controllers")),
        enabled: read_words(&dir.join("cgroup.subtree_control")),
        can_enable: (real_root || !has_processes(dir))
            && fs
                .check_writable(&dir.join("cgroup.subtree_control"))
                .is_ok(),
    })
}

fn v1_base(
    fs: &dyn Fs,
    fs_root: &Path,
    mounts: &[Mount],
    own: &[(Vec<String>, String)],
    controller: &str,
) -> Result<V1Base, String> {
    let hierarchy: Vec<&Mount> = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
        .collect();
    if hierarchy.is_empty() {
        return Err(format!("v1 {controller}: no hierarchy is mounted"));
    }
    let own_path = own
        .iter()
        .find(|(list, _)| list.iter().any(|c| c == controller))
        .map(|(_, p)| p.as_str());
    let current = own_path.and_then(|p| hierarchy.iter().find_map(|m| cgroup_dir(fs_root, m, p)));
    let top = under(fs_root, &hierarchy[0].point);
    let mut refusals = Vec::new();
    let mut candidates: Vec<PathBuf> = current.into_iter().collect();
    if !candidates.contains(&top) {
        candidates.push(top);
    }
    for dir in candidates {
        if !dir.is_dir() {
            continue;
        }
        match fs.check_writable(&dir) {
            Ok(()) => return Ok(V1Base { dir }),
            Err(e) => refusals.push(format!("{} ({})", dir.display(), errno_text(&e))),
        }
    }
    if refusals.is_empty() {
        return Err(format!(
            "v1 {controller}: the hierarchy's directory is missing"
        ));
    }
    Err(format!(
        "v1 {controller}: not writable by uid {}: {}",
        uid(),
        refusals.join(", ")
    ))
}

impl Layout {
    /// The host's layout, from this process's /proc/self/mountinfo and /proc/self/cgroup.
    pub fn detect() -> Layout {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Layout::detect_in(&mountinfo, &own, Path::new("/"))
    }

    /// The layout described by the given mountinfo and /proc/self/cgroup texts, with
    /// every path looked up under `fs_root`.
    pub fn detect_in(mountinfo: &str, self_cgroup: &str, fs_root: &Path) -> Layout {
        Layout::detect_with(Arc::new(HostFs), mountinfo, self_cgroup, fs_root)
    }

    fn detect_with(fs: Arc<dyn Fs>, mountinfo: &str, self_cgroup: &str, fs_root: &Path) -> Layout {
        let mounts = parse_mountinfo(mountinfo);
        let own = parse_self_cgroup(self_cgroup);
        let v2_path = own
            .iter()
            .find(|(list, _)| list.is_empty())
            .map(|(_, p)| p.as_str());
        let v2_mounts: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
        let v2_current =
            v2_path.and_then(|p| v2_mounts.iter().find_map(|m| cgroup_dir(fs_root, m, p)));

        let v2 = match v2_mounts.first() {
            None => Err("no cgroup2 file system is mounted".to_string()),
            Some(first) => {
                let top = under(fs_root, &first.point);
                let mut candidates = Vec::new();
                if let Some(cur) = v2_current.as_ref().filter(|c| **c != top) {
                    candidates.push((cur.clone(), Origin::Current));
                }
                candidates.push((top, Origin::Top));
                let mut best: Option<V2Base> = None;
                let mut refusals = Vec::new();
                for (dir, origin) in candidates {
                    match v2_candidate(&*fs, &dir, origin, v2_current.as_deref()) {
                        Ok(b) => {
                            // Ties go to the earlier candidate, moat's own cgroup, under
                            // which the caller's own limits still cover the jail.
                            let better = match &best {
                                None => true,
                                Some(x) => b.score() > x.score(),
                            };
                            if better {
                                best = Some(b);
                            }
                        }
                        Err(e) => refusals.push(e),
                    }
                }
                best.ok_or_else(|| refusals.join("; "))
            }
        };
        Layout {
            memory_v1: v1_base(&*fs, fs_root, &mounts, &own, "memory"),
            pids_v1: v1_base(&*fs, fs_root, &mounts, &own, "pids"),
            cpuacct_v1: v1_base(&*fs, fs_root, &mounts, &own, "cpuacct"),
            fs,
            v2_current,
            v2,
            v2_named: None,
        }
    }

    /// Makes runs' v2 cgroups under `dir`, a cgroup the user names (typically one
    /// delegated to them). Its problems then make [`RunCgroup::create`] fail rather
    /// than fall back.
    pub fn with_v2_base(mut self, dir: PathBuf) -> Layout {
        self.v2 = v2_candidate(&*self.fs, &dir, Origin::Named, self.v2_current.as_deref());
        self.v2_named = Some(dir);
        self
    }

    /// Which mechanism a run with this request would get for each resource (before
    /// anything is created; `create` may still fall back if the kernel refuses).
    pub fn mechanisms(&self, req: &Request) -> Mechanisms {
        let v2_offers = |c: &str| self.v2.as_ref().is_ok_and(|b| b.offers(c));
        let pick = |v2: bool, v1: bool| {
            if v2 {
                Mechanism::CgroupV2
            } else if v1 {
                Mechanism::CgroupV1
            } else {
                Mechanism::None
            }
        };
        Mechanisms {
            memory: pick(v2_offers("memory"), self.memory_v1.is_ok()),
            pids: if req.pids_max.is_some() {
                pick(v2_offers("pids"), self.pids_v1.is_ok())
            } else {
                Mechanism::None
            },
            // cpu.stat's usage is kept for every v2 cgroup, controller or not.
            cpu: pick(self.v2.is_ok(), req.want_cpu && self.cpuacct_v1.is_ok()),
        }
    }

    /// One line: what each resource would use, where, and for those with nothing, why.
    pub fn describe(&self) -> String {
        let all = Request {
            memory_max: Some(0),
            pids_max: Some(0),
            want_cpu: true,
        };
        let m = self.mechanisms(&all);
        let mut reasons: Vec<String> = Vec::new();
        let mut because = |r: String| {
            if !r.is_empty() && !reasons.contains(&r) {
                reasons.push(r);
            }
        };
        let mut parts = Vec::new();
        if let (Some(dir), Err(e)) = (&self.v2_named, &self.v2) {
            parts.push(format!(
                "the named cgroup {} is unusable: {e}",
                dir.display()
            ));
        }
        let resources = [
            ("memory", m.memory, &self.memory_v1, ""),
            ("pids", m.pids, &self.pids_v1, ""),
            ("cpu", m.cpu, &self.cpuacct_v1, " cpu.stat"),
        ];
        for (name, mech, v1, v2_what) in resources {
            parts.push(match (mech, &self.v2, v1) {
                (Mechanism::CgroupV2, Ok(b), _) => {
                    format!("{name}: cgroup v2{v2_what} in {}", b.dir.display())
                }
                (Mechanism::CgroupV1, _, Ok(b)) => {
                    format!("{name}: cgroup v1 in {}", b.dir.display())
                }
                _ => {
                    because(match &self.v2 {
                        Ok(b) => b.why_not(name),
                        Err(e) => format!("v2: {e}"),
                    });
                    because(v1.as_ref().err().cloned().unwrap_or_default());
                    format!("{name}: none")
                }
            });
        }
        if let Ok(b) = &self.v2 {
            let place = match b.origin {
                Origin::Named => "the named cgroup",
                Origin::Current => "moat's own cgroup",
                Origin::Top => "the top of the hierarchy",
            };
            parts.push(format!("v2 runs go under {place}"));
        }
        let prefix = if m == Mechanisms::NONE {
            "no usable cgroup: "
        } else {
            ""
        };
        let why = if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join("; "))
        };
        format!("{prefix}{}{why}", parts.join("; "))
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Unique among all runs of this process; the pid keeps concurrent moat processes apart.
fn next_name() -> String {
    format!(
        "moat-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// One write per call: each write to a control file is one command to the kernel.
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?
        .write_all(value.as_bytes())
}

fn set(dir: &Path, file: &str, value: impl fmt::Display) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let value = value.to_string();
    write_file(&path, &value).map_err(|source| CgroupError::Write {
        hint: hint(&source),
        path,
        value,
        source,
    })
}

fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        if it.next()? != key {
            return None;
        }
        it.next()?.parse().ok()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every entry of a cgroup.procs, including the 0s the kernel shows for processes
/// outside our pid namespace (they still populate the cgroup).
fn read_pids(procs: &Path) -> Vec<i32> {
    fs::read_to_string(procs)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// How long `kill_all` waits for the tree to be gone, and `Drop` for rmdir to succeed.
const KILL_WAIT: Duration = Duration::from_secs(1);
const RMDIR_WAIT: Duration = Duration::from_secs(1);

/// A run's cgroups: created by [`RunCgroup::create`], removed on drop.
#[derive(Debug)]
pub struct RunCgroup {
    fs: Arc<dyn Fs>,
    name: String,
    /// (base, created directory), in creation order.
    created: Vec<(PathBuf, PathBuf)>,
    v2: Option<PathBuf>,
    memory_v1: Option<PathBuf>,
    pids_v1: Option<PathBuf>,
    cpuacct_v1: Option<PathBuf>,
    mechanisms: Mechanisms,
    notes: Vec<String>,
    /// Highest memory.current seen, for v2 kernels before 5.19 (no memory.peak).
    peak_seen: AtomicU64,
}

/// Enables what it can of `want` for the children of `base`; returns what is enabled.
/// Asked for together first (one write is the common case); when the kernel refuses,
/// one at a time, so that one refused controller costs only itself.
fn enable_controllers(
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

impl RunCgroup {
    /// Creates one cgroup (per hierarchy used) for a run and applies the limits. Each of
    /// the mechanisms may come back `None` when the host has nothing for it: the caller
    /// then falls back to rlimits and its own accounting. A v2 base the user named that
    /// cannot be used is an error; so is any failure to create a directory or write a
    /// limit where the layout said it could.
    pub fn create(layout: &Layout, req: &Request) -> Result<RunCgroup, CgroupError> {
        if let (Some(path), Err(reason)) = (&layout.v2_named, &layout.v2) {
            return Err(CgroupError::Base {
                path: path.clone(),
                reason: reason.clone(),
            });
        }
        let mut plan = layout.mechanisms(req);
        let mut cg = RunCgroup {
            fs: layout.fs.clone(),
            name: next_name(),
            created: Vec::new(),
            v2: None,
            memory_v1: None,
            pids_v1: None,
            cpuacct_v1: None,
            mechanisms: Mechanisms::NONE,
            notes: Vec::new(),
            peak_seen: AtomicU64::new(0),
        };
        let v1_or_none = |b: &Result<V1Base, String>| {
            if b.is_ok() {
                Mechanism::CgroupV1
            } else {
                Mechanism::None
            }
        };

        if let Ok(base) = &layout.v2 {
            let mut want = Vec::new();
            if plan.memory == Mechanism::CgroupV2 {
                want.push("memory");
            }
            if plan.pids == Mechanism::CgroupV2 {
                want.push("pids");
            }
            if req.want_cpu && base.offers("cpu") {
                want.push("cpu");
            }
            let enabled = enable_controllers(&base.dir, &want, &mut cg.notes);
            let dir = cg.make_dir(&base.dir)?;
            if plan.memory == Mechanism::CgroupV2 {
                if enabled.contains(&"memory") {
                    if let Some(max) = req.memory_max {
                        set(&dir, "memory.max", max)?;
                    }
                    // Swapped-out pages are outside memory.max: with swap allowed a
                    // program could keep more than its limit and run slower instead
                    // of failing.
                    if dir.join("memory.swap.max").exists() {
                        set(&dir, "memory.swap.max", 0)?;
                    }
                } else {
                    plan.memory = v1_or_none(&layout.memory_v1);
                }
            }
            if plan.pids == Mechanism::CgroupV2 {
                if enabled.contains(&"pids") {
                    if let Some(max) = req.pids_max {
                        set(&dir, "pids.max", max)?;
                    }
                } else {
                    plan.pids = v1_or_none(&layout.pids_v1);
                }
            }
            cg.v2 = Some(dir);
        }

        if plan.memory == Mechanism::CgroupV1 {
            if let Ok(base) = &layout.memory_v1 {
                let dir = cg.v1_dir(&base.dir)?;
                if let Some(max) = req.memory_max {
                    set(&dir, "memory.limit_in_bytes", max)?;
                    // memsw is memory + swap; equal to the limit, no swap is left to use.
                    // It must not be below limit_in_bytes, hence the order.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        set(&dir, "memory.memsw.limit_in_bytes", max)?;
                    }
                }
                cg.memory_v1 = Some(dir);
            }
        }
        if plan.pids == Mechanism::CgroupV1 {
            if let Ok(base) = &layout.pids_v1 {
                let dir = cg.v1_dir(&base.dir)?;
                if let Some(max) = req.pids_max {
                    set(&dir, "pids.max", max)?;
                }
                cg.pids_v1 = Some(dir);
            }
        }
        if plan.cpu == Mechanism::CgroupV1 {
            if let Ok(base) = &layout.cpuacct_v1 {
                cg.cpuacct_v1 = Some(cg.v1_dir(&base.dir)?);
            }
        }
        cg.mechanisms = plan;
        Ok(cg)
    }

    fn make_dir(&mut self, base: &Path) -> Result<PathBuf, CgroupError> {
        let mut name = self.name.clone();
        let mut last = None;
        // A directory of this name can exist only if a moat that had our pid before us
        // died without cleaning up; it is not ours to remove here, so pick another name.
        for _ in 0..8 {
            let dir = base.join(&name);
            match self.fs.mkdir(&dir) {
                Ok(()) => {
                    self.created.push((base.to_path_buf(), dir.clone()));
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    last = Some((dir, e));
                    name = next_name();
                }
                Err(source) => {
                    return Err(CgroupError::Create {
                        path: dir,
                        hint: hint(&source),
                        source,
                    })
                }
            }
        }
        let (path, source) =
            last.unwrap_or_else(|| (base.join(&name), io::ErrorKind::AlreadyExists.into()));
        Err(CgroupError::Create {
            path,
            source,
            hint: "stale moat cgroups fill the names: remove them, see `sweep_stale`",
        })
    }

    /// Co-mounted v1 controllers (memory and pids in one hierarchy, say) share a base,
    /// and so share one directory.
    fn v1_dir(&mut self, base: &Path) -> Result<PathBuf, CgroupError> {
        match self.created.iter().find(|(b, _)| b == base) {
            Some((_, dir)) => Ok(dir.clone()),
            None => self.make_dir(base),
        }
    }

    pub fn mechanisms(&self) -> Mechanisms {
        self.mechanisms
    }

    pub fn memory_mechanism(&self) -> Mechanism {
        self.mechanisms.memory
    }

    pub fn pids_mechanism(&self) -> Mechanism {
        self.mechanisms.pids
    }

    pub fn cpu_mechanism(&self) -> Mechanism {
        self.mechanisms.cpu
    }

    /// Every directory this run created, in creation order.
    pub fn dirs(&self) -> Vec<&Path> {
        self.created.iter().map(|(_, d)| d.as_path()).collect()
    }

    /// The v2 directory, if any (for `clone3(CLONE_INTO_CGROUP)`).
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// What fell back while creating, and why (for the report).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Moves process `pid` into the run's cgroups, in every hierarchy. Its children
    /// inherit them, so call it before the process starts any.
    pub fn add(&self, pid: i32) -> io::Result<()> {
        if pid <= 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot move pid {pid} into a cgroup: not a process id"),
            ));
        }
        for (_, dir) in &self.created {
            let procs = dir.join("cgroup.procs");
            write_file(&procs, &pid.to_string()).map_err(|e| {
                let why = match e.raw_os_error() {
                    Some(libc::EACCES) | Some(libc::EPERM) if Some(dir) == self.v2.as_ref() => {
                        "moving a process needs write access to cgroup.procs of the common ancestor of its cgroup and this one: run moat inside the delegated subtree"
                    }
                    _ => hint(&e),
                };
                io::Error::new(
                    e.kind(),
                    format!("cannot move pid {pid} into {}: {e} ({why})", procs.display()),
                )
            })?;
        }
        Ok(())
    }

    /// User and system CPU time of every process that has been in the cgroup.
    pub fn cpu_time(&self) -> Option<(Duration, Duration)> {
        match self.mechanisms.cpu {
            Mechanism::CgroupV2 => {
                let stat = fs::read_to_string(self.v2.as_ref()?.join("cpu.stat")).ok()?;
                let user = key_value(&stat, "user_usec")?;
                let system = key_value(&stat, "system_usec")?;
                Some((Duration::from_micros(user), Duration::from_micros(system)))
            }
            Mechanism::CgroupV1 => {
                let dir = self.cpuacct_v1.as_ref()?;
                // cpuacct.usage is exact; the user/system split is sampled at each
                // tick, so short runs show 0/0. Scale the split to the exact total, as
                // v2's cpu.stat does.
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
            Mechanism::None => None,
        }
    }

    /// The highest memory use of the tree, in bytes. On v2 kernels before 5.19 (no
    /// memory.peak) this is the highest memory.current seen by calls to this method,
    /// so the caller should call it while the run goes on.
    pub fn memory_peak(&self) -> Option<u64> {
        match self.mechanisms.memory {
            Mechanism::CgroupV2 => {
                let dir = self.v2.as_ref()?;
                if let Some(peak) = read_u64(&dir.join("memory.peak")) {
                    return Some(peak);
                }
                let now = read_u64(&dir.join("memory.current"))?;
                Some(self.peak_seen.fetch_max(now, Ordering::Relaxed).max(now))
            }
            Mechanism::CgroupV1 => {
                read_u64(&self.memory_v1.as_ref()?.join("memory.max_usage_in_bytes"))
            }
            Mechanism::None => None,
        }
    }

    /// Whether the run ran out of memory: the kernel invoked the OOM killer for this
    /// cgroup's limit (v2 `memory.events` `oom`) or killed one of its processes for lack
    /// of memory (`oom_kill`, which also counts kills by an enclosing cgroup's limit or
    /// the global OOM killer). On v1: `memory.oom_control` `oom_kill` or `under_oom`.
    ///
    /// Not counted: v2 `max` and v1 `failcnt`, which rise each time usage touches the
    /// limit, including when reclaiming page cache makes room and nothing fails (a
    /// program writing a large file hits them without any harm). The one exception is
    /// v1 before Linux 4.13, which has no `oom_kill` line: there `failcnt > 0` is the
    /// only sign there is, so it is used.
    pub fn oom_killed(&self) -> bool {
        match self.mechanisms.memory {
            Mechanism::CgroupV2 => self
                .v2
                .as_ref()
                .and_then(|d| fs::read_to_string(d.join("memory.events")).ok())
                .is_some_and(|t| {
                    key_value(&t, "oom").unwrap_or(0) > 0
                        || key_value(&t, "oom_kill").unwrap_or(0) > 0
                }),
            Mechanism::CgroupV1 => {
                let Some(dir) = self.memory_v1.as_ref() else {
                    return false;
                };
                let control =
                    fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
                if key_value(&control, "under_oom").unwrap_or(0) > 0 {
                    return true;
                }
                match key_value(&control, "oom_kill") {
                    Some(kills) => kills > 0,
                    None => read_u64(&dir.join("memory.failcnt")).unwrap_or(0) > 0,
                }
            }
            Mechanism::None => false,
        }
    }

    /// Whether a fork or clone in the tree failed because of `pids_max`.
    pub fn pids_limit_hit(&self) -> bool {
        let dir = match self.mechanisms.pids {
            Mechanism::CgroupV2 => self.v2.as_ref(),
            Mechanism::CgroupV1 => self.pids_v1.as_ref(),
            Mechanism::None => None,
        };
        dir.and_then(|d| fs::read_to_string(d.join("pids.events")).ok())
            .and_then(|t| key_value(&t, "max"))
            .is_some_and(|n| n > 0)
    }

    fn populated(&self) -> bool {
        self.created
            .iter()
            .any(|(_, d)| !read_pids(&d.join("cgroup.procs")).is_empty())
    }

    /// Kills every process in the run's cgroups and waits (up to a second) for them to
    /// be gone. With v2's cgroup.kill (Linux 5.14) the kernel does it in one step, and
    /// a process forking at that moment cannot escape; otherwise moat sends SIGKILL to
    /// each pid listed, again until none is left.
    pub fn kill_all(&self) {
        let deadline = Instant::now() + KILL_WAIT;
        if let Some(v2) = &self.v2 {
            if write_file(&v2.join("cgroup.kill"), "1").is_ok() {
                let mut pause = Duration::from_micros(500);
                while self.populated() && Instant::now() < deadline {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                return;
            }
        }
        let Some((_, dir)) = self.created.first() else {
            return;
        };
        let procs = dir.join("cgroup.procs");
        let mut pause = Duration::from_micros(500);
        loop {
            let pids = read_pids(&procs);
            if pids.is_empty() || Instant::now() >= deadline {
                return;
            }
            kill_listed(&procs, &pids);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Kills what is left and removes every directory created, reporting the first
    /// failure. Dropping does the same, silently.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        if self.populated() {
            self.kill_all();
        }
        let mut first = None;
        while let Some((_, dir)) = self.created.pop() {
            if let Err(source) = remove_dir_retrying(&*self.fs, &dir) {
                first.get_or_insert(CgroupError::Remove { path: dir, source });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Splits an exact total in the proportion of a sampled user/system pair. A run too
/// short to be sampled at all counts as user time, as v2 does.
fn split_total(total: u64, (user, system): (u64, u64)) -> (u64, u64) {
    let sum = u128::from(user) + u128::from(system);
    if sum == 0 {
        return (total, 0);
    }
    let user = u64::try_from(u128::from(total) * u128::from(user) / sum).unwrap_or(total);
    (user, total.saturating_sub(user))
}

/// An exited process's pid can be reused between reading cgroup.procs and signalling
/// it. A pidfd pins the process itself: open one for each listed pid, read the list
/// again, and signal only processes still listed. Before Linux 5.3 (no pidfd_open)
/// plain kill() is all there is, still only for pids listed twice.
fn kill_listed(procs: &Path, pids: &[i32]) {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    // 0 stands for a process outside our pid namespace and 1 for an init: signalling
    // either by number would hit the wrong processes (kill(0) is our own group).
    let targets = pids.iter().copied().filter(|&p| p > 1 && p != me);
    let mut opened = Vec::new();
    let mut plain = Vec::new();
    for pid in targets {
        match pidfd_open(pid) {
            Ok(fd) => opened.push((pid, fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => plain.push(pid),
            Err(_) => {}
        }
    }
    let still = read_pids(procs);
    for (pid, fd) in opened {
        if still.contains(&pid) {
            pidfd_kill(&fd);
        }
    }
    for pid in plain {
        if still.contains(&pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new descriptor or
    // -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_kill(fd: &OwnedFd) {
    // SAFETY: a valid pidfd, SIGKILL, a null siginfo (allowed: the kernel fills it in
    // as kill() would) and no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// rmdir fails with EBUSY while the last killed processes are still exiting.
fn remove_dir_retrying(fs: &dyn Fs, dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + RMDIR_WAIT;
    let mut pause = Duration::from_micros(500);
    loop {
        match fs.rmdir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, Stdio};

    /// A fake file system root, removed at the end of the test.
    struct Tree {
        root: PathBuf,
    }

    impl Tree {
        fn new() -> Tree {
            static N: AtomicU64 = AtomicU64::new(0);
            let root = std::env::temp_dir().join(format!(
                "moat-cg-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            Tree { root }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.root.join(rel)
        }

        fn file(&self, rel: &str, content: &str) {
            let p = self.path(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    type Files = Vec<(&'static str, &'static str)>;

    /// Plays the kernel: mkdir fills a new cgroup with the control files of its
    /// hierarchy (the first fragment of its path that matches), rmdir refuses a
    /// populated cgroup and otherwise takes the files with it.
    #[derive(Debug, Default)]
    struct FakeFs {
        files: Vec<(&'static str, Files)>,
        readonly: Vec<PathBuf>,
    }

    impl Fs for FakeFs {
        fn mkdir(&self, dir: &Path) -> io::Result<()> {
            fs::create_dir(dir)?;
            let s = dir.to_string_lossy().into_owned();
            if let Some((_, files)) = self.files.iter().find(|(frag, _)| s.contains(frag)) {
                for (name, content) in files {
                    fs::write(dir.join(name), content)?;
                }
            }
            Ok(())
        }
        fn rmdir(&self, dir: &Path) -> io::Result<()> {
            if has_processes(dir) {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            fs::remove_dir_all(dir)
        }
        fn check_writable(&self, path: &Path) -> io::Result<()> {
            if self.readonly.iter().any(|r| path.starts_with(r)) {
                Err(io::Error::from_raw_os_error(libc::EACCES))
            } else if path.exists() {
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(libc::ENOENT))
            }
        }
    }

    fn v2_files() -> Files {
        vec![
            ("cgroup.procs", ""),
            ("cgroup.type", "domain\n"),
            ("cgroup.controllers", ""),
            ("cgroup.subtree_control", ""),
            ("cgroup.kill", ""),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.peak", "0\n"),
            ("memory.current", "0\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
            ("pids.max", "max\n"),
            ("pids.events", "max 0\n"),
        ]
    }

    const SCOPE: &str = "sys/fs/cgroup/user.slice/user-1000.slice/session-1.scope";
    const V2_MOUNTINFO: &str = "25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n\
        30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
    const V2_SELF: &str = "0::/user.slice/user-1000.slice/session-1.scope\n";

    /// A pure v2 host: the session scope is delegated and empty, the top has everything.
    fn v2_tree(scope_procs: &str) -> (Tree, FakeFs) {
        let t = Tree::new();
        t.file(
            "sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory pids\n",
        );
        t.file("sys/fs/cgroup/cgroup.subtree_control", "cpu memory pids\n");
        t.file("sys/fs/cgroup/cgroup.procs", "1\n");
        t.file(&format!("{SCOPE}/cgroup.controllers"), "cpu memory pids\n");
        t.file(&format!("{SCOPE}/cgroup.subtree_control"), "");
        t.file(&format!("{SCOPE}/cgroup.procs"), scope_procs);
        t.file(&format!("{SCOPE}/cgroup.type"), "domain\n");
        let fake = FakeFs {
            files: vec![("/sys/fs/cgroup/", v2_files())],
            readonly: Vec::new(),
        };
        (t, fake)
    }

    fn full_request() -> Request {
        Request {
            memory_max: Some(64 << 20),
            pids_max: Some(8),
            want_cpu: true,
        }
    }

    #[test]
    fn parses_mountinfo_escapes_and_options() {
        let m = parse_mountinfo(
            "41 31 0:38 / /sys/fs/cgroup/with\\040space rw,relatime shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct\n\
             garbage line\n\
             12 1 0:1 /sub /mnt - cgroup2 none rw\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].point, PathBuf::from("/sys/fs/cgroup/with space"));
        assert_eq!(m[0].fstype, "cgroup");
        assert!(m[0].super_options.iter().any(|o| o == "cpuacct"));
        assert_eq!(m[1].root, "/sub");
        assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
    }

    #[test]
    fn maps_cgroup_paths_through_mount_roots() {
        let m = |root: &str| Mount {
            root: root.into(),
            point: "/cg".into(),
            fstype: "cgroup2".into(),
            super_options: vec![],
        };
        let r = Path::new("/fake");
        assert_eq!(cgroup_dir(r, &m("/"), "/a/b"), Some("/fake/cg/a/b".into()));
        assert_eq!(cgroup_dir(r, &m("/"), "/"), Some("/fake/cg".into()));
        assert_eq!(cgroup_dir(r, &m("/a"), "/a/b"), Some("/fake/cg/b".into()));
        assert_eq!(cgroup_dir(r, &m("/a"), "/ab"), None);
        assert_eq!(cgroup_dir(r, &m("/"), "/../x"), None);
        let own = parse_self_cgroup("4:memory:/a:b\n2:cpu,cpuacct:/\n0::/x\nnonsense\n");
        assert_eq!(own.len(), 3);
        assert_eq!(own[0], (vec!["memory".to_string()], "/a:b".to_string()));
        assert_eq!(own[2], (vec![], "/x".to_string()));
    }

    #[test]
    fn v2_delegated_scope_gets_everything() {
        let (t, fake) = v2_tree("");
        let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
        let scope = t.path(SCOPE);
        assert_eq!(layout.v2.as_ref().unwrap().dir, scope);
        assert!(
            layout.describe().contains("memory: cgroup v2"),
            "{}",
            layout.describe()
        );

        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.pids_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
        let dir = cg.v2_dir().unwrap().to_path_buf();
        assert_eq!(dir.parent(), Some(scope.as_path()));
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("moat-{}-", std::process::id())),
            "{name}"
        );
        assert_eq!(
            read(&scope.join("cgroup.subtree_control")),
            "+memory +pids +cpu"
        );
        assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("pids.max")), "8");

        cg.add(4242).unwrap();
        assert_eq!(read(&dir.join("cgroup.procs")), "4242");
        assert!(cg.add(0).is_err());
        assert!(cg.add(-1).is_err());

        assert!(!cg.oom_killed());
        fs::write(dir.join("memory.peak"), "5000000\n").unwrap();
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 0\n",
        )
        .unwrap();
        fs::write(dir.join("pids.events"), "max 3\n").unwrap();
        assert_eq!(cg.memory_peak(), Some(5_000_000));
        assert!(cg.oom_killed());
        assert!(cg.pids_limit_hit());
        assert_eq!(
            cg.cpu_time(),
            Some((Duration::from_millis(2), Duration::from_millis(1)))
        );

        // A limit merely touched (reclaim made room) is not an OOM.
        fs::write(dir.join("memory.events"), "max 7\noom 0\noom_kill 0\n").unwrap();
        assert!(!cg.oom_killed());

        // The processes exit; drop removes the directory.
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        drop(cg);
        assert!(!dir.exists());
        assert!(scope.exists());
    }

    #[test]
    fn v2_busy_scope_falls_back_to_the_top_or_reports_why() {
        // The scope holds moat itself: no controllers can be enabled below it.
        let (t, fake) = v2_tree("777\n");
        let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
        let top = t.path("sys/fs/cgroup");
        assert_eq!(layout.v2.as_ref().unwrap().dir, top);
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.v2_dir().unwrap().parent(), Some(top.as_path()));
        // Already enabled at the top: nothing written there.
        assert_eq!(
            read(&top.join("cgroup.subtree_control")),
            "cpu memory pids\n"
        );
        drop(cg);

        // Unprivileged: only the delegated scope is writable; it still gives cpu and kill.
        let (t, fake) = v2_tree("777\n");
        let layout = Layout::detect_with(
            Arc::new(ReadonlyExcept {
                inner: fake,
                writable_under: t.path(SCOPE),
            }),
            V2_MOUNTINFO,
            V2_SELF,
            &t.root,
        );
        let b = layout.v2.as_ref().unwrap();
        assert_eq!(b.dir, t.path(SCOPE));
        let text = layout.describe();
        assert!(text.contains("memory: none"), "{text}");
        assert!(text.contains("holds processes"), "{text}");
        assert!(text.contains("cpu: cgroup v2 cpu.stat"), "{text}");
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::None);
        assert_eq!(cg.pids_mechanism(), Mechanism::None);
        assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.dirs().len(), 1);
        let dir = cg.v2_dir().unwrap().to_path_buf();
        assert_eq!(read(&dir.join("memory.max")), "max\n");
        drop(cg);
        assert!(!dir.exists());
    }

    /// Only paths under one directory are writable (a delegated subtree).
    #[derive(Debug)]
    struct ReadonlyExcept {
        inner: FakeFs,
        writable_under: PathBuf,
    }

    impl Fs for ReadonlyExcept {
        fn mkdir(&self, dir: &Path) -> io::Result<()> {
            self.inner.mkdir(dir)
        }
        fn rmdir(&self, dir: &Path) -> io::Result<()> {
            self.inner.rmdir(dir)
        }
        fn check_writable(&self, path: &Path) -> io::Result<()> {
            if path.starts_with(&self.writable_under) {
                self.inner.check_writable(path)
            } else {
                Err(io::Error::from_raw_os_error(libc::EACCES))
            }
        }
    }

    #[test]
    fn refused_controllers_fall_back_with_a_note() {
        let (t, fake) = v2_tree("");
        // Any write to it fails, as when the kernel answers EBUSY.
        let control = t.path(SCOPE).join("cgroup.subtree_control");
        fs::remove_file(&control).unwrap();
        fs::create_dir(&control).unwrap();
        let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
        assert_eq!(
            layout.mechanisms(&full_request()).memory,
            Mechanism::CgroupV2
        );
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::None);
        assert_eq!(cg.pids_mechanism(), Mechanism::None);
        assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.notes().len(), 3, "{:?}", cg.notes());
        assert!(cg.notes()[0].contains("cannot enable the memory controller"));
        let dir = cg.v2_dir().unwrap().to_path_buf();
        assert_eq!(read(&dir.join("memory.max")), "max\n");
    }

    #[test]
    fn v2_without_memory_peak_tracks_memory_current() {
        let (t, fake) = v2_tree("");
        let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
        let cg = RunCgroup::create(&layout, &Request::default()).unwrap();
        // Memory is accounted without a limit; no pids cgroup was asked for.
        assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.pids_mechanism(), Mechanism::None);
        assert_eq!(
            read(&t.path(SCOPE).join("cgroup.subtree_control")),
            "+memory"
        );
        let dir = cg.v2_dir().unwrap().to_path_buf();
        assert_eq!(read(&dir.join("memory.max")), "max\n");
        fs::remove_file(dir.join("memory.peak")).unwrap();
        fs::write(dir.join("memory.current"), "100\n").unwrap();
        assert_eq!(cg.memory_peak(), Some(100));
        fs::write(dir.join("memory.current"), "50\n").unwrap();
        assert_eq!(cg.memory_peak(), Some(100));
        fs::write(dir.join("memory.current"), "garbage\n").unwrap();
        assert_eq!(cg.memory_peak(), None);
        fs::write(dir.join("cpu.stat"), "nonsense\n\n").unwrap();
        assert_eq!(cg.cpu_time(), None);
        fs::write(dir.join("memory.events"), "oom x\n").unwrap();
        assert!(!cg.oom_killed());
    }

    #[test]
    fn named_base_is_used_or_refused() {
        let (t, fake) = v2_tree("777\n");
        let fake = Arc::new(fake);
        let layout = Layout::detect_with(fake.clone(), V2_MOUNTINFO, V2_SELF, &t.root);
        let bad = t.path("not-a-cgroup");
        fs::create_dir_all(&bad).unwrap();
        let named = layout.clone().with_v2_base(bad.clone());
        let err = RunCgroup::create(&named, &full_request()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&bad.display().to_string()) && msg.contains("cgroup.controllers"),
            "{msg}"
        );
        assert!(
            named.describe().contains("unusable"),
            "{}",
            named.describe()
        );

        // A delegated, empty cgroup named by the user.
        let pool = "sys/fs/cgroup/user.slice/user-1000.slice/pool";
        t.file(&format!("{pool}/cgroup.controllers"), "memory pids\n");
        t.file(&format!("{pool}/cgroup.subtree_control"), "");
        t.file(&format!("{pool}/cgroup.procs"), "");
        t.file(&format!("{pool}/cgroup.type"), "domain\n");
        // Moving the jail from moat's scope into the pool needs their common ancestor.
        t.file("sys/fs/cgroup/user.slice/user-1000.slice/cgroup.procs", "");
        let named = layout.with_v2_base(t.path(pool));
        let cg = RunCgroup::create(&named, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
        assert_eq!(cg.v2_dir().unwrap().parent(), Some(t.path(pool).as_path()));
        // cpu is not offered there: only memory and pids are enabled.
        assert_eq!(
            read(&t.path(pool).join("cgroup.subtree_control")),
            "+memory +pids"
        );
    }

    const HYBRID_MOUNTINFO: &str =
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n\
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
    const HYBRID_SELF: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    /// This build machine: v1 memory, pids, cpuacct; v2 without controllers.
    fn hybrid_tree(with_v2: bool) -> (Tree, FakeFs, String) {
        let t = Tree::new();
        t.file("sys/fs/cgroup/unified/cgroup.controllers", "");
        t.file("sys/fs/cgroup/unified/cgroup.subtree_control", "");
        t.file("sys/fs/cgroup/unified/cgroup.procs", "1\n");
        for h in ["memory", "pids", "cpuacct", "cpu", "cpuset"] {
            t.file(&format!("sys/fs/cgroup/{h}/cgroup.procs"), "1\n");
        }
        t.file("sys/fs/cgroup/memory/process_api/abc/cgroup.procs", "777\n");
        let v1_memory: Files = vec![
            ("cgroup.procs", ""),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.max_usage_in_bytes", "0\n"),
            ("memory.failcnt", "0\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
        ];
        let v1_pids: Files = vec![
            ("cgroup.procs", ""),
            ("pids.max", "max\n"),
            ("pids.events", "max 0\n"),
        ];
        let v1_cpuacct: Files = vec![
            ("cgroup.procs", ""),
            ("cpuacct.usage", "0\n"),
            ("cpuacct.usage_user", "0\n"),
            ("cpuacct.usage_sys", "0\n"),
            ("cpuacct.stat", "user 0\nsystem 0\n"),
        ];
        let fake = FakeFs {
            files: vec![
                ("/cgroup/memory/", v1_memory),
                ("/cgroup/pids/", v1_pids),
                ("/cgroup/cpuacct/", v1_cpuacct),
                ("/cgroup/unified/", v2_files()),
            ],
            readonly: Vec::new(),
        };
        let mountinfo = if with_v2 {
            HYBRID_MOUNTINFO.to_string()
        } else {
            HYBRID_MOUNTINFO
                .lines()
                .filter(|l| !l.contains("cgroup2"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        (t, fake, mountinfo)
    }

    #[test]
    fn hybrid_uses_v1_limits_and_v2_cpu_and_kill() {
        let (t, fake, mountinfo) = hybrid_tree(true);
        let layout = Layout::detect_with(Arc::new(fake), &mountinfo, HYBRID_SELF, &t.root);
        let text = layout.describe();
        assert!(
            text.contains("memory: cgroup v1 in") && text.contains("process_api/abc"),
            "{text}"
        );
        assert!(text.contains("cpu: cgroup v2 cpu.stat"), "{text}");

        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV1);
        assert_eq!(cg.pids_mechanism(), Mechanism::CgroupV1);
        assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
        let dirs: Vec<PathBuf> = cg.dirs().iter().map(|d| d.to_path_buf()).collect();
        // unified, memory (under moat's own memory cgroup), pids; no cpuacct needed.
        assert_eq!(dirs.len(), 3, "{dirs:?}");
        assert_eq!(
            dirs[0].parent(),
            Some(t.path("sys/fs/cgroup/unified").as_path())
        );
        assert_eq!(
            dirs[1].parent(),
            Some(t.path("sys/fs/cgroup/memory/process_api/abc").as_path())
        );
        assert_eq!(
            dirs[2].parent(),
            Some(t.path("sys/fs/cgroup/pids").as_path())
        );
        // Nothing enabled in the v2 root: it has no controllers.
        assert_eq!(
            read(&t.path("sys/fs/cgroup/unified/cgroup.subtree_control")),
            ""
        );
        assert_eq!(read(&dirs[1].join("memory.limit_in_bytes")), "67108864");
        assert_eq!(
            read(&dirs[1].join("memory.memsw.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(&dirs[2].join("pids.max")), "8");

        cg.add(4242).unwrap();
        for d in &dirs {
            assert_eq!(read(&d.join("cgroup.procs")), "4242");
        }

        fs::write(dirs[1].join("memory.max_usage_in_bytes"), "33554432\n").unwrap();
        assert_eq!(cg.memory_peak(), Some(32 << 20));
        fs::write(dirs[1].join("memory.failcnt"), "5\n").unwrap();
        assert!(!cg.oom_killed(), "failcnt alone is reclaim, not OOM");
        fs::write(
            dirs[1].join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        // Kernels before 4.13: no oom_kill line, failcnt is all there is.
        fs::write(
            dirs[1].join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        )
        .unwrap();
        assert!(cg.oom_killed());
        fs::write(
            dirs[0].join("cpu.stat"),
            "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
        )
        .unwrap();
        assert_eq!(
            cg.cpu_time(),
            Some((Duration::from_micros(3), Duration::from_micros(2)))
        );

        for d in &dirs {
            fs::write(d.join("cgroup.procs"), "").unwrap();
        }
        cg.kill_all();
        assert_eq!(read(&dirs[0].join("cgroup.kill")), "1");
        cg.remove().unwrap();
        for d in &dirs {
            assert!(!d.exists(), "{}", d.display());
        }
    }

    #[test]
    fn v1_only_uses_cpuacct_and_scales_its_split() {
        let (t, fake, mountinfo) = hybrid_tree(false);
        let layout = Layout::detect_with(Arc::new(fake), &mountinfo, HYBRID_SELF, &t.root);
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV1);
        let acct = cg.cpuacct_v1.clone().unwrap();
        assert_eq!(
            acct.parent(),
            Some(t.path("sys/fs/cgroup/cpuacct").as_path())
        );
        fs::write(acct.join("cpuacct.usage"), "3000000000\n").unwrap();
        fs::write(acct.join("cpuacct.usage_user"), "1\n").unwrap();
        fs::write(acct.join("cpuacct.usage_sys"), "2\n").unwrap();
        assert_eq!(
            cg.cpu_time(),
            Some((Duration::from_secs(1), Duration::from_secs(2)))
        );
        // Older kernels: only cpuacct.stat, in ticks; too short to sample counts as user.
        fs::remove_file(acct.join("cpuacct.usage_user")).unwrap();
        fs::write(acct.join("cpuacct.stat"), "user 0\nsystem 0\n").unwrap();
        assert_eq!(
            cg.cpu_time(),
            Some((Duration::from_secs(3), Duration::ZERO))
        );
        fs::write(acct.join("cpuacct.stat"), "user 3\nsystem 1\n").unwrap();
        assert_eq!(
            cg.cpu_time(),
            Some((Duration::from_millis(2250), Duration::from_millis(750)))
        );
        // Without a cgroup2 mount and without want_cpu, no cpuacct cgroup is made.
        let cg2 = RunCgroup::create(
            &layout,
            &Request {
                memory_max: Some(1 << 20),
                ..Request::default()
            },
        )
        .unwrap();
        assert_eq!(cg2.cpu_mechanism(), Mechanism::None);
        assert_eq!(cg2.dirs().len(), 1);
    }

    #[test]
    fn hybrid_as_an_unprivileged_user_has_nothing() {
        let (t, mut fake, mountinfo) = hybrid_tree(true);
        fake.readonly = vec![t.path("sys/fs/cgroup")];
        let layout = Layout::detect_with(Arc::new(fake), &mountinfo, HYBRID_SELF, &t.root);
        assert_eq!(layout.mechanisms(&full_request()), Mechanisms::NONE);
        let text = layout.describe();
        assert!(text.starts_with("no usable cgroup: "), "{text}");
        assert!(text.contains("not writable by uid"), "{text}");
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert!(cg.dirs().is_empty());
    }

    #[test]
    fn nothing_mounted_means_nothing_enforced() {
        let t = Tree::new();
        let layout = Layout::detect_in("", "", &t.root);
        assert_eq!(layout.mechanisms(&full_request()), Mechanisms::NONE);
        let text = layout.describe();
        assert!(text.starts_with("no usable cgroup: "), "{text}");
        assert!(text.contains("no cgroup2 file system is mounted"), "{text}");
        assert!(
            text.contains("v1 memory: no hierarchy is mounted"),
            "{text}"
        );
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        assert_eq!(cg.memory_mechanism(), Mechanism::None);
        assert_eq!(cg.pids_mechanism(), Mechanism::None);
        assert_eq!(cg.cpu_mechanism(), Mechanism::None);
        assert!(cg.dirs().is_empty());
        cg.add(std::process::id() as i32).unwrap();
        assert_eq!(cg.cpu_time(), None);
        assert_eq!(cg.memory_peak(), None);
        assert!(!cg.oom_killed());
        assert!(!cg.pids_limit_hit());
        cg.kill_all();
        cg.remove().unwrap();
        // Garbage in, nothing out, no panic.
        let layout = Layout::detect_in("\u{0}\n - \n1 2 3\n", ":::\n0\n", &t.root);
        assert_eq!(layout.mechanisms(&full_request()), Mechanisms::NONE);
    }

    #[test]
    fn sweeps_only_old_orphans() {
        let (t, fake) = v2_tree("");
        let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
        let scope = t.path(SCOPE);
        // pid_max is at most 2^22: this pid cannot be alive.
        let orphan = scope.join("moat-2000000000-3");
        let fresh = scope.join("moat-2000000000-4");
        let mine = scope.join(format!("moat-{}-99999", std::process::id()));
        let other = scope.join("something-else");
        for d in [&orphan, &fresh, &mine, &other] {
            fs::create_dir(d).unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(3600);
        for d in [&orphan, &mine, &other] {
            fs::File::open(d).unwrap().set_modified(old).unwrap();
        }
        assert_eq!(sweep_stale(&layout), 1);
        assert!(!orphan.exists());
        assert!(fresh.exists() && mine.exists() && other.exists());
    }

    #[test]
    fn host_layout_is_described() {
        let text = Layout::detect().describe();
        eprintln!("uid {}: {text}", uid());
        assert!(
            text.contains("memory: ") && text.contains("cpu: "),
            "{text}"
        );
    }

    // ---- Real cgroups: only as root on a host with a writable memory cgroup. ----

    fn real_layout(test: &str) -> Option<Layout> {
        if !nix::unistd::getuid().is_root() {
            eprintln!("skipped: {test} needs root");
            return None;
        }
        let layout = Layout::detect();
        if layout.mechanisms(&full_request()).memory == Mechanism::None {
            eprintln!(
                "skipped: {test}: no writable memory cgroup ({})",
                layout.describe()
            );
            return None;
        }
        Some(layout)
    }

    /// A shell that waits for a line on stdin before doing anything, so that it can be
    /// moved into the cgroup before it starts any child.
    fn gated(script: &str) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn release(child: &mut Child) {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }

    fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn real_tree_is_killed(layout: &Layout) {
        let cg = RunCgroup::create(layout, &full_request()).unwrap();
        let dirs: Vec<PathBuf> = cg.dirs().iter().map(|d| d.to_path_buf()).collect();
        assert!(!dirs.is_empty());
        let mut child = gated("sleep 5 & sleep 5; wait");
        let pid = child.id() as i32;
        cg.add(pid).unwrap();
        release(&mut child);
        for d in &dirs {
            let procs = d.join("cgroup.procs");
            assert!(read_pids(&procs).contains(&pid), "{}", procs.display());
            // sh and its two sleeps
            assert!(
                wait_for(|| read_pids(&procs).len() >= 3),
                "{}",
                procs.display()
            );
        }
        assert!(cg.cpu_time().is_some());
        assert!(cg.memory_peak().is_some_and(|p| p > 0));
        assert!(!cg.oom_killed());
        cg.kill_all();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        for d in &dirs {
            assert!(read_pids(&d.join("cgroup.procs")).is_empty());
        }
        drop(cg);
        for d in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }

    #[test]
    fn real_cgroup_holds_and_kills_a_tree() {
        let Some(layout) = real_layout("real_cgroup_holds_and_kills_a_tree") else {
            return;
        };
        eprintln!("layout: {}", layout.describe());
        real_tree_is_killed(&layout);
    }

    #[test]
    fn real_cgroup_kills_by_signals_without_cgroup_kill() {
        let Some(mut layout) = real_layout("real_cgroup_kills_by_signals_without_cgroup_kill")
        else {
            return;
        };
        // As on a v1-only host: no v2 directory, hence no cgroup.kill.
        layout.v2 = Err("disabled by the test".into());
        if layout.mechanisms(&full_request()).cpu != Mechanism::CgroupV1 {
            eprintln!("skipped: no cgroup v1 cpuacct here");
            return;
        }
        real_tree_is_killed(&layout);
    }

    #[test]
    fn real_cgroup_pids_limit_holds() {
        let Some(layout) = real_layout("real_cgroup_pids_limit_holds") else {
            return;
        };
        let req = Request {
            pids_max: Some(4),
            ..Request::default()
        };
        let cg = RunCgroup::create(&layout, &req).unwrap();
        if cg.pids_mechanism() == Mechanism::None {
            eprintln!("skipped: no pids cgroup here");
            return;
        }
        let mut child = gated("for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait");
        cg.add(child.id() as i32).unwrap();
        release(&mut child);
        assert!(wait_for(|| cg.pids_limit_hit()));
        let procs = cg.dirs()[0].join("cgroup.procs");
        assert!(read_pids(&procs).len() <= 4);
        cg.kill_all();
        child.wait().unwrap();
    }

    #[test]
    fn real_oom_is_detected() {
        let Some(layout) = real_layout("real_oom_is_detected") else {
            return;
        };
        let req = Request {
            memory_max: Some(32 << 20),
            pids_max: Some(8),
            want_cpu: true,
        };
        let cg = RunCgroup::create(&layout, &req).unwrap();
        // dd's 200 MiB buffer is filled by read(), so every page of it is touched.
        let mut child = gated("exec dd if=/dev/zero of=/dev/null bs=200M count=1");
        cg.add(child.id() as i32).unwrap();
        release(&mut child);
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(cg.oom_killed());
        let peak = cg.memory_peak().unwrap();
        assert!(peak >= 30 << 20, "peak {peak}");
        eprintln!("oom: peak {peak} bytes, cpu {:?}", cg.cpu_time());
        let dirs: Vec<PathBuf> = cg.dirs().iter().map(|d| d.to_path_buf()).collect();
        cg.remove().unwrap();
        for d in &dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
