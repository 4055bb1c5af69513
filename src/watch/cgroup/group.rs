//! One run's cgroups: made under the layout's bases, limits applied, the tree's figures
//! read, everything killed and removed when it is dropped.

use super::fs::{key_value, read_pids, set, write_file, Fs};
use super::layout::{Layout, V1Base};
use super::types::{hint, CgroupError, Mechanism, Mechanisms, Request};
use super::{kill, v1, v2};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Unique among all runs of this process: `moat-PID-OWNER-N`, where the pid keeps
/// concurrent moat processes apart and OWNER ([`super::sweep::Owner`]) lets a later
/// moat tell at once whether this one is gone.
fn next_name() -> String {
    format!(
        "moat-{}-{}-{}",
        std::process::id(),
        super::sweep::Owner::me(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A run's cgroups: created by [`RunCgroup::create`], removed on drop.
#[derive(Debug)]
pub struct RunCgroup {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) name: String,
    /// (base, created directory), in creation order.
    pub(crate) created: Vec<(PathBuf, PathBuf)>,
    pub(crate) v2: Option<PathBuf>,
    pub(crate) memory_v1: Option<PathBuf>,
    pub(crate) pids_v1: Option<PathBuf>,
    pub(crate) cpuacct_v1: Option<PathBuf>,
    pub(crate) mechanisms: Mechanisms,
    pub(crate) notes: Vec<String>,
    /// Highest memory.current seen, for v2 kernels before 5.19 (no memory.peak).
    pub(crate) peak_seen: AtomicU64,
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
            let enabled = v2::enable_controllers(&base.dir, &want, &mut cg.notes);
            let dir = cg.make_dir(&base.dir)?;
            let memory = plan.memory == Mechanism::CgroupV2 && enabled.contains(&"memory");
            let pids = plan.pids == Mechanism::CgroupV2 && enabled.contains(&"pids");
            // A controller the kernel would not enable falls back to v1, where there is one.
            if plan.memory == Mechanism::CgroupV2 && !memory {
                plan.memory = v1_or_none(&layout.memory_v1);
            }
            if plan.pids == Mechanism::CgroupV2 && !pids {
                plan.pids = v1_or_none(&layout.pids_v1);
            }
            v2::apply_limits(&dir, req, memory, pids)?;
            cg.v2 = Some(dir);
        }

        if plan.memory == Mechanism::CgroupV1 {
            if let Ok(base) = &layout.memory_v1 {
                let dir = cg.v1_dir(&base.dir)?;
                if let Some(max) = req.memory_max {
                    v1::apply_memory(&dir, max)?;
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
            Mechanism::CgroupV2 => v2::cpu_time(self.v2.as_ref()?),
            Mechanism::CgroupV1 => v1::cpu_time(self.cpuacct_v1.as_ref()?),
            Mechanism::None => None,
        }
    }

    /// The highest memory use of the tree, in bytes. On v2 kernels before 5.19 (no
    /// memory.peak) this is the highest memory.current seen by calls to this method,
    /// so the caller should call it while the run goes on.
    pub fn memory_peak(&self) -> Option<u64> {
        match self.mechanisms.memory {
            Mechanism::CgroupV2 => v2::memory_peak(self.v2.as_ref()?, &self.peak_seen),
            Mechanism::CgroupV1 => v1::memory_peak(self.memory_v1.as_ref()?),
            Mechanism::None => None,
        }
    }

    /// Whether the run ran out of memory (see [`v2::oom_killed`], [`v1::oom_killed`]
    /// for what counts and what does not).
    pub fn oom_killed(&self) -> bool {
        match self.mechanisms.memory {
            Mechanism::CgroupV2 => self.v2.as_deref().is_some_and(v2::oom_killed),
            Mechanism::CgroupV1 => self.memory_v1.as_deref().is_some_and(v1::oom_killed),
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
    /// be gone.
    pub fn kill_all(&self) {
        kill::kill_tree(self.v2.as_deref(), &self.dirs());
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
            if let Err(source) = kill::remove_dir_retrying(&*self.fs, &dir) {
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
