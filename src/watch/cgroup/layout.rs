//! The host's cgroup layout: which v2 directory runs go under (and why that one), which
//! v1 hierarchies can be used, and so which mechanism each resource of a run would
//! get. `moat run` creates run cgroups from it; `moat check` reports from the very same
//! value.

use super::fs::{errno_text, words_via, Fs, HostFs};
use super::mountinfo::{
    cgroup_dir, common_ancestor, parse_mountinfo, parse_self_cgroup, under, Mount,
};
use super::types::{Mechanism, Mechanisms, Request};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where runs get their cgroup (v2 directory)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Named,
    Current,
    Top,
}

/// A cgroup v2 directory under which run cgroups can be made.
#[derive(Debug, Clone)]
pub(crate) struct V2Base {
    pub(crate) dir: PathBuf,
    pub(crate) origin: Origin,
    /// `cgroup.controllers`: what the base may hand to its children.
    pub(crate) available: Vec<String>,
    /// `cgroup.subtree_control`: what its children get already.
    pub(crate) enabled: Vec<String>,
    /// Whether the kernel would let us enable more: not while the base holds processes,
    /// except in the real root cgroup, which is exempt.
    pub(crate) can_enable: bool,
}

impl V2Base {
    pub(crate) fn offers(&self, controller: &str) -> bool {
        let has = |list: &[String]| list.iter().any(|c| c == controller);
        has(&self.enabled) || (self.can_enable && has(&self.available))
    }

    pub(crate) fn why_not(&self, controller: &str) -> String {
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
pub(crate) struct V1Base {
    pub(crate) dir: PathBuf,
}

/// What detection saw of this process's place in the v2 hierarchy: what `moat check`
/// explains a missing controller from.
#[derive(Debug, Clone)]
pub(crate) struct V2Seen {
    /// Where the v2 hierarchy is mounted (under the layout's root).
    pub(crate) mount_point: PathBuf,
    /// `cgroup.controllers` of the mount's root: what the kernel has at all.
    pub(crate) root_controllers: Vec<String>,
    /// This process's cgroup path, as /proc/self/cgroup names it.
    pub(crate) own_path: String,
    /// This process's cgroup directory, when the mount shows it.
    pub(crate) here: Option<V2Here>,
}

#[derive(Debug, Clone)]
pub(crate) struct V2Here {
    pub(crate) dir: PathBuf,
    pub(crate) controllers: Vec<String>,
    pub(crate) subtree: Vec<String>,
    /// The caller may create child cgroups, move processes and enable controllers.
    pub(crate) delegated: bool,
    /// `cgroup.kill` is there (Linux 5.14).
    pub(crate) kill: bool,
}

/// What detection saw of one v1 controller's hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct V1Seen {
    pub(crate) controller: &'static str,
    /// This process's cgroup in that hierarchy.
    pub(crate) dir: PathBuf,
    pub(crate) writable: bool,
    /// `dir` is the hierarchy's root.
    pub(crate) at_top: bool,
}

/// Where the host's cgroup hierarchies are, and which of them this process can use.
#[derive(Debug, Clone)]
pub struct Layout {
    /// What was seen of the v2 hierarchy (None: no cgroup2 mount).
    pub(crate) v2_seen: Option<V2Seen>,
    /// What was seen of the v1 memory, pids and cpuacct hierarchies that are mounted.
    pub(crate) v1_seen: Vec<V1Seen>,
    pub(crate) fs: Arc<dyn Fs>,
    /// This process's own cgroup v2 directory, when the v2 mount shows it.
    pub(crate) v2_current: Option<PathBuf>,
    /// The v2 base chosen, or why there is none.
    pub(crate) v2: Result<V2Base, String>,
    /// Set when the user named the v2 base: its problems are then errors, not fallbacks.
    pub(crate) v2_named: Option<PathBuf>,
    pub(crate) memory_v1: Result<V1Base, String>,
    pub(crate) pids_v1: Result<V1Base, String>,
    pub(crate) cpuacct_v1: Result<V1Base, String>,
}

pub(crate) fn v2_candidate(
    fs: &dyn Fs,
    dir: &Path,
    origin: Origin,
    current: Option<&Path>,
) -> Result<V2Base, String> {
    if !fs.exists(&dir.join("cgroup.controllers")) {
        return Err(format!(
            "{} is not a cgroup v2 directory (no cgroup.controllers)",
            dir.display()
        ));
    }
    if let Err(e) = fs.check_writable(dir) {
        return Err(format!(
            "{} is not writable by uid {} ({})",
            dir.display(),
            fs.uid(),
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
                fs.uid()
            ));
        }
    }
    // Only the real root cgroup lacks cgroup.type, and only it is exempt from the
    // no-internal-process rule.
    let real_root = !fs.exists(&dir.join("cgroup.type"));
    let holds_processes = fs
        .read(&dir.join("cgroup.procs"))
        .is_some_and(|t| !t.trim().is_empty());
    Ok(V2Base {
        dir: dir.to_path_buf(),
        origin,
        available: words_via(fs, &dir.join("cgroup.controllers")),
        enabled: words_via(fs, &dir.join("cgroup.subtree_control")),
        can_enable: (real_root || !holds_processes)
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
        if !fs.exists(&dir) {
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
        fs.uid(),
        refusals.join(", ")
    ))
}

/// This process's cgroup in the v1 hierarchy of `controller`, if it is mounted and
/// the directory is there.
fn v1_seen(
    fs: &dyn Fs,
    fs_root: &Path,
    mounts: &[Mount],
    own: &[(Vec<String>, String)],
    controller: &'static str,
) -> Option<V1Seen> {
    let path = own
        .iter()
        .find(|(list, _)| list.iter().any(|c| c == controller))
        .map_or("/", |(_, p)| p.as_str());
    let (mount, dir) = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == controller))
        .find_map(|m| {
            cgroup_dir(fs_root, m, path)
                .filter(|d| fs.exists(d))
                .map(|d| (m, d))
        })?;
    let writable = fs.check_writable(&dir).is_ok()
        && (fs.check_writable(&dir.join("cgroup.procs")).is_ok()
            || fs.check_writable(&dir.join("tasks")).is_ok());
    Some(V1Seen {
        controller,
        at_top: dir == under(fs_root, &mount.point),
        dir,
        writable,
    })
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

    pub(crate) fn detect_with(
        fs: Arc<dyn Fs>,
        mountinfo: &str,
        self_cgroup: &str,
        fs_root: &Path,
    ) -> Layout {
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
        let v2_seen = v2_mounts.first().map(|first| {
            let mount_point = under(fs_root, &first.point);
            let here = v2_current
                .as_ref()
                .filter(|d| fs.exists(d))
                .map(|dir| V2Here {
                    controllers: words_via(&*fs, &dir.join("cgroup.controllers")),
                    subtree: words_via(&*fs, &dir.join("cgroup.subtree_control")),
                    delegated: fs.check_writable(dir).is_ok()
                        && fs.check_writable(&dir.join("cgroup.procs")).is_ok()
                        && fs
                            .check_writable(&dir.join("cgroup.subtree_control"))
                            .is_ok(),
                    kill: fs.exists(&dir.join("cgroup.kill")),
                    dir: dir.clone(),
                });
            V2Seen {
                root_controllers: words_via(&*fs, &mount_point.join("cgroup.controllers")),
                mount_point,
                own_path: v2_path.unwrap_or("/").to_string(),
                here,
            }
        });
        let v1_seen = ["memory", "pids", "cpuacct"]
            .into_iter()
            .filter_map(|c| v1_seen(&*fs, fs_root, &mounts, &own, c))
            .collect();
        Layout {
            v2_seen,
            v1_seen,
            memory_v1: v1_base(&*fs, fs_root, &mounts, &own, "memory"),
            pids_v1: v1_base(&*fs, fs_root, &mounts, &own, "pids"),
            cpuacct_v1: v1_base(&*fs, fs_root, &mounts, &own, "cpuacct"),
            fs,
            v2_current,
            v2,
            v2_named: None,
        }
    }

    /// The v2 directory runs' cgroups go under, if there is a usable one.
    pub(crate) fn v2_base(&self) -> Option<&Path> {
        self.v2.as_ref().ok().map(|b| b.dir.as_path())
    }

    /// The v1 directory runs' `controller` cgroups go under, if usable.
    pub(crate) fn v1_base(&self, controller: &str) -> Option<&Path> {
        let base = match controller {
            "memory" => &self.memory_v1,
            "pids" => &self.pids_v1,
            "cpuacct" => &self.cpuacct_v1,
            _ => return None,
        };
        base.as_ref().ok().map(|b| b.dir.as_path())
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
