//! The run's order: every value the child's setup uses, owned, computed from the plan
//! and the wiring in the parent. A freshly cloned jail takes it through its copy of
//! the parent's memory; a jail made ahead (see [`super::pool`]) takes it as bytes
//! ([`Order::encode`]), since it was cloned before the run was planned. Either way the
//! child runs from the same [`Prepared`], so both carry out one setup.

use super::child::{Open, Prepared};
use super::mnt::MountOps;
use super::mnt::NulInPath;
use super::wire::{Malformed, Reader, Writer};
use crate::plan::Plan;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// How the program's descriptors are wired.
#[derive(Debug, Default)]
pub struct Wiring {
    /// (target in the program, source in this process). Only what is listed reaches
    /// the program: moat's own stdin stays its stdin only as (0, 0).
    pub fds: Vec<(RawFd, RawFd)>,
    /// Work-dir files the program's process opens for a target, in order.
    pub opens: Vec<(RawFd, WorkdirOpen)>,
}

/// A work-dir file opened inside the jail for one of the program's descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkdirOpen {
    /// Read (stdin from a file put in).
    Read(PathBuf),
    /// Created or truncated, written (stdout to a file copied out later).
    Write(PathBuf),
    /// The same open file as another target already opened.
    SameAs(RawFd),
}

/// What the child needs, owned; [`Order::prepared`] points a [`Prepared`] into it.
pub struct Order {
    mounts: MountOps,
    hostname: CString,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    filter: Vec<libc::sock_filter>,
    rlimits: Vec<(crate::config::limits::Resource, libc::rlimit)>,
    uid: u32,
    gid: u32,
    drop_groups: bool,
    /// The targets of `Wiring::fds`, in order (the sources are the parent's, or the
    /// descriptors that came with the order).
    targets: Vec<RawFd>,
    opens: Vec<Open>,
    workdir: Option<CString>,
    loopback: bool,
    await_placement: bool,
    wall: Option<libc::timeval>,
}

fn cstring(bytes: &[u8]) -> Result<CString, NulInPath> {
    CString::new(bytes).map_err(|_| NulInPath(String::from_utf8_lossy(bytes).into_owned()))
}

impl Order {
    /// Fails only for a string the kernel would have to take that holds a NUL byte.
    /// `attached`: the plan steps init attaches from the run's detached mounts, in the
    /// order of their descriptors (see `super::idmap`).
    pub fn new(
        plan: &Plan,
        wiring: &Wiring,
        await_placement: bool,
        attached: &[u32],
    ) -> Result<Order, NulInPath> {
        // The compiler refuses programs longer than the kernel's 4096 instructions, so
        // the length fits the kernel's u16.
        let insns = plan.filter.insns();
        Ok(Order {
            mounts: MountOps::prepare(&plan.tree, attached)?,
            hostname: cstring(plan.policy.hostname.as_bytes())?,
            program: cstring(plan.program.as_os_str().as_bytes())?,
            argv: plan.argv.clone(),
            envp: plan.envp.clone(),
            cwd: cstring(plan.policy.cwd.as_os_str().as_bytes())?,
            filter: insns
                .iter()
                .map(|i| libc::sock_filter {
                    code: i.code,
                    jt: i.jt,
                    jf: i.jf,
                    k: i.k,
                })
                .collect(),
            rlimits: plan
                .rlimits
                .iter()
                .map(|&(r, soft, hard)| {
                    (
                        r,
                        libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        },
                    )
                })
                .collect(),
            uid: plan.ids.inside_uid,
            gid: plan.ids.inside_gid,
            drop_groups: plan.ids.may_setgroups(),
            targets: wiring.fds.iter().map(|(t, _)| *t).collect(),
            opens: wiring
                .opens
                .iter()
                .map(|(target, how)| {
                    let target = *target;
                    Ok(match how {
                        WorkdirOpen::Read(path) => Open::File {
                            target,
                            path: cstring(path.as_os_str().as_bytes())?,
                            flags: libc::O_RDONLY | libc::O_NOCTTY,
                        },
                        WorkdirOpen::Write(path) => Open::File {
                            target,
                            path: cstring(path.as_os_str().as_bytes())?,
                            flags: libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_TRUNC
                                | libc::O_NOCTTY
                                | libc::O_NOFOLLOW,
                        },
                        WorkdirOpen::SameAs(other) => Open::Same {
                            target,
                            same_as: *other,
                        },
                    })
                })
                .collect::<Result<_, NulInPath>>()?,
            workdir: plan
                .policy
                .workdir
                .as_ref()
                .map(|w| cstring(w.path.as_os_str().as_bytes()))
                .transpose()?,
            loopback: plan.loopback,
            await_placement,
            wall: plan.policy.limits.wall_time.map(|w| libc::timeval {
                tv_sec: w.as_secs() as _,
                // Rounded up: the timer must not fire before the deadline.
                tv_usec: (w.subsec_nanos().div_ceil(1000)) as _,
            }),
        })
    }

    /// The child's view of this order. `sources`: the descriptors for `targets`, as
    /// numbered in the process that will clone or run the child; `fd_base` is above
    /// every target, and `err_fd`, `ctl_fd` and the `detached` mounts (one for each the
    /// order attaches, by slot) are at or above it.
    #[allow(clippy::too_many_arguments)]
    pub fn prepared(
        &self,
        err_fd: RawFd,
        ctl_fd: RawFd,
        sources: &[RawFd],
        fd_base: RawFd,
        cpus: Option<libc::cpu_set_t>,
        args_area: Option<(usize, usize)>,
        detached: &[RawFd],
    ) -> Prepared<'_> {
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        let fds: Vec<(RawFd, RawFd)> = self
            .targets
            .iter()
            .copied()
            .zip(sources.iter().copied())
            .collect();
        let mut keep: Vec<RawFd> = fds.iter().map(|(_, s)| *s).collect();
        keep.extend([err_fd, ctl_fd]);
        keep.extend_from_slice(detached);
        keep.sort_unstable();
        keep.dedup();
        Prepared {
            mounts: &self.mounts,
            detached: detached.to_vec(),
            hostname: &self.hostname,
            program: &self.program,
            argv: ptrs(&self.argv),
            envp: ptrs(&self.envp),
            cwd: &self.cwd,
            filter: libc::sock_fprog {
                len: self.filter.len() as u16,
                filter: self.filter.as_ptr() as *mut libc::sock_filter,
            },
            rlimits: &self.rlimits,
            uid: self.uid,
            gid: self.gid,
            drop_groups: self.drop_groups,
            err_fd,
            ctl_fd,
            fds,
            fd_base,
            keep,
            opens: &self.opens,
            workdir: self.workdir.as_ref(),
            args_area,
            loopback: self.loopback,
            cpus,
            await_placement: self.await_placement,
            wall: self.wall,
        }
    }

    /// The order as bytes, for a jail made ahead.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.mounts.encode(&mut w);
        w.cstr(&self.hostname);
        w.cstr(&self.program);
        w.cstrs(&self.argv);
        w.cstrs(&self.envp);
        w.cstr(&self.cwd);
        w.u64(self.filter.len() as u64);
        for i in &self.filter {
            w.u32(u32::from(i.code) | u32::from(i.jt) << 16 | u32::from(i.jf) << 24);
            w.u32(i.k);
        }
        w.u64(self.rlimits.len() as u64);
        for (r, l) in &self.rlimits {
            // The resource's type is u32 with glibc and i32 with musl.
            #[allow(clippy::unnecessary_cast)]
            w.u32(*r as u32);
            w.u64(l.rlim_cur);
            w.u64(l.rlim_max);
        }
        w.u32(self.uid);
        w.u32(self.gid);
        w.bool(self.drop_groups);
        w.u64(self.targets.len() as u64);
        for t in &self.targets {
            w.i32(*t);
        }
        w.u64(self.opens.len() as u64);
        for o in &self.opens {
            match o {
                Open::File {
                    target,
                    path,
                    flags,
                } => {
                    w.u8(0);
                    w.i32(*target);
                    w.cstr(path);
                    w.i32(*flags);
                }
                Open::Same { target, same_as } => {
                    w.u8(1);
                    w.i32(*target);
                    w.i32(*same_as);
                }
            }
        }
        w.opt_cstr(self.workdir.as_ref());
        w.bool(self.loopback);
        w.bool(self.await_placement);
        w.bool(self.wall.is_some());
        if let Some(t) = &self.wall {
            w.u64(t.tv_sec as u64);
            w.u64(t.tv_usec as u64);
        }
        w.bytes
    }

    /// Reads back what [`Order::encode`] wrote, whole or not at all.
    pub fn decode(bytes: &[u8]) -> Result<Order, Malformed> {
        let mut r = Reader::new(bytes);
        let mounts = MountOps::decode(&mut r)?;
        let hostname = r.cstr("hostname")?;
        let program = r.cstr("program")?;
        let argv = r.cstrs("argv")?;
        let envp = r.cstrs("envp")?;
        let cwd = r.cstr("cwd")?;
        let n = r.count(8, "filter")?;
        if n > u16::MAX as usize {
            return Err(Malformed("filter"));
        }
        let mut filter = Vec::with_capacity(n);
        for _ in 0..n {
            let head = r.u32("filter")?;
            filter.push(libc::sock_filter {
                code: head as u16,
                jt: (head >> 16) as u8,
                jf: (head >> 24) as u8,
                k: r.u32("filter")?,
            });
        }
        let n = r.count(20, "rlimits")?;
        let mut rlimits = Vec::with_capacity(n);
        for _ in 0..n {
            rlimits.push((
                r.u32("rlimit")? as crate::config::limits::Resource,
                libc::rlimit {
                    rlim_cur: r.u64("rlimit")?,
                    rlim_max: r.u64("rlimit")?,
                },
            ));
        }
        let uid = r.u32("uid")?;
        let gid = r.u32("gid")?;
        let drop_groups = r.bool("groups")?;
        let n = r.count(4, "descriptors")?;
        let targets = (0..n)
            .map(|_| r.i32("descriptor"))
            .collect::<Result<_, _>>()?;
        let n = r.count(9, "opens")?;
        let mut opens = Vec::with_capacity(n);
        for _ in 0..n {
            opens.push(match r.u8("open")? {
                0 => Open::File {
                    target: r.i32("open")?,
                    path: r.cstr("open")?,
                    flags: r.i32("open")?,
                },
                1 => Open::Same {
                    target: r.i32("open")?,
                    same_as: r.i32("open")?,
                },
                _ => return Err(Malformed("open")),
            });
        }
        let workdir = r.opt_cstr("workdir")?;
        let loopback = r.bool("loopback")?;
        let await_placement = r.bool("placement")?;
        let wall = if r.bool("wall")? {
            Some(libc::timeval {
                tv_sec: r.u64("wall")? as _,
                tv_usec: r.u64("wall")? as _,
            })
        } else {
            None
        };
        if !r.finished() {
            return Err(Malformed("trailing bytes"));
        }
        Ok(Order {
            mounts,
            hostname,
            program,
            argv,
            envp,
            cwd,
            filter,
            rlimits,
            uid,
            gid,
            drop_groups,
            targets,
            opens,
            workdir,
            loopback,
            await_placement,
            wall,
        })
    }

    /// A number above every descriptor the program gets (and at least 3).
    pub fn fd_base(&self) -> RawFd {
        let opened = self.opens.iter().map(|o| match o {
            Open::File { target, .. } | Open::Same { target, .. } => *target,
        });
        self.targets
            .iter()
            .copied()
            .chain(opened)
            .max()
            .unwrap_or(2)
            .max(2)
            + 1
    }

    /// How many descriptors come with the order (one per target).
    pub fn sources(&self) -> usize {
        self.targets.len()
    }

    /// How many detached mounts come with the order, after the sources.
    pub fn detached(&self) -> usize {
        self.mounts.detached()
    }
}

/// The start and end of this process's argv strings (they never move), read once.
pub(crate) fn args_area() -> Option<(usize, usize)> {
    static AREA: std::sync::OnceLock<Option<(usize, usize)>> = std::sync::OnceLock::new();
    *AREA.get_or_init(read_args_area)
}

/// Fields 48 and 49 of /proc/self/stat.
fn read_args_area() -> Option<(usize, usize)> {
    // Once per process, so on every `moat run`.
    let stat = super::sys::read_proc("/proc/self/stat")?;
    // The command name may hold spaces and parentheses; fields count from the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}
