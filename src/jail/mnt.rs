//! Mounts, child side: carries out the tree `rootfs` planned, then pivots into it.
//!
//! `prepare` runs in the parent and turns each step into the exact system calls with
//! their C strings; `apply` runs in the cloned child, where it must not allocate (the
//! parent may be multi-threaded, and a lock held by another thread at clone time would
//! never be released), so it only walks the prepared list.

use super::stage::Stage;
use super::sys;
use super::wire::{Malformed, Reader, Writer};
use crate::plan::rootfs::{Step, Tree};
use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Where the host's root is reachable while the new root is built.
const OLD_ROOT: &str = "/oldroot";
/// Where the new root is built before the final pivot.
const NEW_ROOT: &str = "/newroot";

#[derive(Debug)]
enum Op {
    Mkdir(CString),
    Symlink {
        target: CString,
        path: CString,
    },
    /// An empty file to bind a file over.
    Touch(CString),
    /// A file with prepared contents (a rootfs template's, a work dir's).
    Write {
        path: CString,
        data: Arc<[u8]>,
        mode: libc::mode_t,
    },
    Mount {
        src: Option<CString>,
        dst: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Attach the detached mount in slot `slot` of the run's mount descriptors at `dst`
    /// (`move_mount`): a writable bind made id-mapped in the parent (see
    /// `super::idmap`), in place of the bind from the old root. The descriptor is
    /// closed once attached.
    Attach {
        slot: u32,
        dst: CString,
    },
    /// Make a bind mount (and everything under it) read-only/nosuid/nodev (or noexec
    /// when writable): mount_setattr where the kernel has it (it reaches submounts and
    /// keeps the flags a user namespace locks); a remount of the top otherwise.
    Restrict {
        dst: CString,
        attr_set: u64,
        remount_flags: libc::c_ulong,
    },
}

/// The prepared mount program. Each op carries the index of the plan step it belongs
/// to, so a failure can be reported against the step a person can read.
#[derive(Debug)]
pub struct MountOps {
    ops: Vec<(u32, Op)>,
    root_data: CString,
}

/// A planned path that cannot be handed to the kernel: it holds a NUL byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the path {0:?} contains a NUL byte")]
pub struct NulInPath(pub String);

fn c(bytes: impl AsRef<[u8]>) -> Result<CString, NulInPath> {
    let bytes = bytes.as_ref();
    CString::new(bytes).map_err(|_| NulInPath(String::from_utf8_lossy(bytes).into_owned()))
}

fn under(prefix: &str, path: &Path) -> Result<CString, NulInPath> {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    c(bytes)
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

impl MountOps {
    /// Turns the planned tree into the ops the child runs, in the parent. `attached`:
    /// the steps (writable binds) the child attaches from a detached mount instead of
    /// binding them, in the order of their descriptors (see `super::idmap::Detached`).
    pub fn prepare(tree: &Tree, attached: &[u32]) -> Result<MountOps, NulInPath> {
        let mut ops = Vec::new();
        for (i, step) in tree.steps.iter().enumerate() {
            let i = i as u32;
            match step {
                Step::Mkdir { path } => ops.push((i, Op::Mkdir(under(NEW_ROOT, path)?))),
                Step::File {
                    path,
                    contents,
                    mode,
                } => ops.push((
                    i,
                    Op::Write {
                        path: under(NEW_ROOT, path)?,
                        data: contents.clone(),
                        mode: *mode,
                    },
                )),
                Step::InnerBind { src, dst } => {
                    let dst_c = under(NEW_ROOT, dst)?;
                    ops.push((i, Op::Touch(dst_c.clone())));
                    ops.push((
                        i,
                        Op::Mount {
                            src: Some(under(NEW_ROOT, src)?),
                            dst: dst_c.clone(),
                            fstype: None,
                            flags: libc::MS_BIND,
                            data: None,
                        },
                    ));
                    ops.push((
                        i,
                        Op::Restrict {
                            dst: dst_c,
                            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                            remount_flags: libc::MS_REMOUNT
                                | libc::MS_BIND
                                | libc::MS_RDONLY
                                | libc::MS_NOSUID
                                | libc::MS_NODEV,
                        },
                    ));
                }
                Step::Symlink { path, target } => ops.push((
                    i,
                    Op::Symlink {
                        target: c(target.as_os_str().as_bytes())?,
                        path: under(NEW_ROOT, path)?,
                    },
                )),
                Step::Bind {
                    src,
                    dst,
                    dir,
                    rw,
                    device,
                    locked,
                } => {
                    let dst_c = under(NEW_ROOT, dst)?;
                    ops.push((
                        i,
                        if *dir {
                            Op::Mkdir(dst_c.clone())
                        } else {
                            Op::Touch(dst_c.clone())
                        },
                    ));
                    if let Some(slot) = attached.iter().position(|s| *s == i) {
                        ops.push((
                            i,
                            Op::Attach {
                                slot: slot as u32,
                                dst: dst_c.clone(),
                            },
                        ));
                    } else {
                        // Recursive for directories: in a user namespace a
                        // non-recursive bind of a tree with locked submounts is refused.
                        let rec = if *dir { libc::MS_REC } else { 0 };
                        ops.push((
                            i,
                            Op::Mount {
                                src: Some(under(OLD_ROOT, src)?),
                                dst: dst_c.clone(),
                                fstype: None,
                                flags: libc::MS_BIND | rec,
                                data: None,
                            },
                        ));
                    }
                    let mut attr_set = MOUNT_ATTR_NOSUID;
                    let mut flags = libc::MS_REMOUNT
                        | libc::MS_BIND
                        | libc::MS_NOSUID
                        | *locked as libc::c_ulong;
                    if !device {
                        attr_set |= MOUNT_ATTR_NODEV;
                        flags |= libc::MS_NODEV;
                    }
                    // Writable mounts are never executable: nothing the program writes
                    // can be run.
                    if *rw {
                        attr_set |= MOUNT_ATTR_NOEXEC;
                        flags |= libc::MS_NOEXEC;
                        flags &= !libc::MS_RDONLY;
                    } else {
                        attr_set |= MOUNT_ATTR_RDONLY;
                        flags |= libc::MS_RDONLY;
                    }
                    ops.push((
                        i,
                        Op::Restrict {
                            dst: dst_c,
                            attr_set,
                            remount_flags: flags,
                        },
                    ));
                }
                Step::Tmpfs {
                    dst,
                    size,
                    mode,
                    noexec,
                } => {
                    let dst_c = under(NEW_ROOT, dst)?;
                    ops.push((i, Op::Mkdir(dst_c.clone())));
                    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
                    if *noexec {
                        flags |= libc::MS_NOEXEC;
                    }
                    ops.push((
                        i,
                        Op::Mount {
                            src: Some(c("tmpfs")?),
                            dst: dst_c,
                            fstype: Some(c("tmpfs")?),
                            flags,
                            data: Some(c(format!("size={size},mode={mode:o}"))?),
                        },
                    ));
                }
                Step::Proc { dst } => {
                    let dst_c = under(NEW_ROOT, dst)?;
                    ops.push((i, Op::Mkdir(dst_c.clone())));
                    ops.push((
                        i,
                        Op::Mount {
                            src: Some(c("proc")?),
                            dst: dst_c,
                            fstype: Some(c("proc")?),
                            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            data: None,
                        },
                    ));
                }
                Step::Seal { dst } => ops.push((
                    i,
                    Op::Mount {
                        src: None,
                        dst: under(NEW_ROOT, dst)?,
                        fstype: None,
                        flags: libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV
                            | libc::MS_NOEXEC,
                        data: None,
                    },
                )),
            }
        }
        Ok(MountOps {
            ops,
            root_data: c(format!("size={},mode=755", tree.root_size))?,
        })
    }

    /// How many detached mounts the ops attach (one descriptor each).
    pub fn detached(&self) -> usize {
        self.ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::Attach { .. }))
            .count()
    }

    /// Child side: builds the new root and pivots into it. `detached`: the run's
    /// detached mounts, by slot. On failure returns the stage, the plan step (for
    /// [`Stage::Mount`]) and the errno. Allocates nothing.
    pub fn apply(&self, detached: &[RawFd]) -> Result<(), (Stage, u32, i32)> {
        let at = |stage: Stage| move |e: i32| (stage, 0, e);
        let scratch = at(Stage::MountScratch);
        // Nothing mounted from here on may propagate back to the host, and host mount
        // events must not reach the jail.
        sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).map_err(scratch)?;
        // A scratch tmpfs over /tmp becomes the root for the build; the host root stays
        // reachable at /oldroot, so sources anywhere (even under /tmp) can be bound, and
        // nothing of the host is left once /oldroot is detached.
        let tmpfs = Some(c"tmpfs");
        let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
        sys::mount(
            tmpfs,
            c"/tmp",
            tmpfs,
            nosuid_nodev,
            Some(c"size=64k,mode=700"),
        )
        .map_err(scratch)?;
        sys::chdir(c"/tmp").map_err(scratch)?;
        sys::mkdir(c"newroot", 0o755, false).map_err(scratch)?;
        sys::mkdir(c"oldroot", 0o755, false).map_err(scratch)?;
        sys::check(sys::pivot_root(c".", c"oldroot")).map_err(scratch)?;
        sys::chdir(c"/").map_err(scratch)?;
        sys::mount(
            tmpfs,
            c"/newroot",
            tmpfs,
            nosuid_nodev,
            Some(&self.root_data),
        )
        .map_err(scratch)?;
        for (step, op) in &self.ops {
            run(op, detached).map_err(|e| (Stage::Mount, *step, e))?;
        }
        let pivot = at(Stage::Pivot);
        sys::chdir(c"/newroot").map_err(pivot)?;
        // pivot_root(".", ".") stacks the old root (the scratch tmpfs, with the host's
        // tree at /oldroot below it) over the new one; detaching "." then removes both
        // at once, since a lazy unmount takes the whole subtree: after this no path
        // inside leads out. One unmount, not two: each waits for an RCU grace period.
        sys::check(sys::pivot_root(c".", c".")).map_err(pivot)?;
        sys::umount2(c".", libc::MNT_DETACH).map_err(pivot)?;
        sys::chdir(c"/").map_err(pivot)?;
        // The root is read-only at the end: the program can create nothing outside the
        // writable mounts the profile names.
        let sealed = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | nosuid_nodev;
        sys::mount(None, c"/", None, sealed, None).map_err(at(Stage::SealRoot))
    }
}

impl MountOps {
    /// Writes the ops for a jail made ahead (see `super::wire`).
    pub fn encode(&self, w: &mut Writer) {
        w.cstr(&self.root_data);
        w.u64(self.ops.len() as u64);
        for (step, op) in &self.ops {
            w.u32(*step);
            match op {
                Op::Mkdir(path) => {
                    w.u8(0);
                    w.cstr(path);
                }
                Op::Symlink { target, path } => {
                    w.u8(1);
                    w.cstr(target);
                    w.cstr(path);
                }
                Op::Touch(path) => {
                    w.u8(2);
                    w.cstr(path);
                }
                Op::Write { path, data, mode } => {
                    w.u8(3);
                    w.cstr(path);
                    w.bytes(data);
                    w.u32(*mode);
                }
                Op::Mount {
                    src,
                    dst,
                    fstype,
                    flags,
                    data,
                } => {
                    w.u8(4);
                    w.opt_cstr(src.as_ref());
                    w.cstr(dst);
                    w.opt_cstr(fstype.as_ref());
                    w.u64(*flags);
                    w.opt_cstr(data.as_ref());
                }
                Op::Attach { slot, dst } => {
                    w.u8(6);
                    w.u32(*slot);
                    w.cstr(dst);
                }
                Op::Restrict {
                    dst,
                    attr_set,
                    remount_flags,
                } => {
                    w.u8(5);
                    w.cstr(dst);
                    w.u64(*attr_set);
                    w.u64(*remount_flags);
                }
            }
        }
    }

    /// Reads back what [`MountOps::encode`] wrote. Runs in a jail made ahead, whose
    /// parent is single-threaded: it may allocate.
    pub fn decode(r: &mut Reader) -> Result<MountOps, Malformed> {
        let root_data = r.cstr("root tmpfs options")?;
        let n = r.count(5, "mount ops")?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let step = r.u32("mount step")?;
            let op = match r.u8("mount op")? {
                0 => Op::Mkdir(r.cstr("mkdir")?),
                1 => Op::Symlink {
                    target: r.cstr("symlink target")?,
                    path: r.cstr("symlink")?,
                },
                2 => Op::Touch(r.cstr("touch")?),
                3 => Op::Write {
                    path: r.cstr("file")?,
                    data: Arc::from(r.bytes("file contents")?),
                    mode: r.u32("file mode")?,
                },
                4 => Op::Mount {
                    src: r.opt_cstr("mount source")?,
                    dst: r.cstr("mount target")?,
                    fstype: r.opt_cstr("mount type")?,
                    flags: r.u64("mount flags")?,
                    data: r.opt_cstr("mount options")?,
                },
                5 => Op::Restrict {
                    dst: r.cstr("restricted mount")?,
                    attr_set: r.u64("mount attributes")?,
                    remount_flags: r.u64("remount flags")?,
                },
                6 => Op::Attach {
                    slot: r.u32("detached mount")?,
                    dst: r.cstr("detached mount target")?,
                },
                _ => return Err(Malformed("mount op")),
            };
            ops.push((step, op));
        }
        Ok(MountOps { ops, root_data })
    }
}

/// Runs one prepared op. Child side: no allocation.
fn run(op: &Op, detached: &[RawFd]) -> Result<(), i32> {
    match op {
        Op::Mkdir(path) => sys::mkdir(path, 0o755, true),
        Op::Symlink { target, path } => sys::symlink(target, path),
        Op::Write { path, data, mode } => {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
            let fd = sys::open(path, flags, 0o400)?;
            // The exact mode, whatever moat's umask.
            let done = sys::write_all(fd, data).and_then(|()| sys::fchmod(fd, *mode));
            sys::close(fd);
            done
        }
        Op::Touch(path) => {
            let fd = sys::open(
                path,
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o444,
            )?;
            sys::close(fd);
            Ok(())
        }
        Op::Mount {
            src,
            dst,
            fstype,
            flags,
            data,
        } => sys::mount(
            src.as_deref(),
            dst,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Op::Attach { slot, dst } => {
            let fd = *detached.get(*slot as usize).ok_or(libc::EBADF)?;
            // The mount was made in the parent, in the host's user namespace; moving it
            // into this mount namespace needs only this namespace's CAP_SYS_ADMIN
            // (may_mount), which init holds.
            sys::move_mount_fd(fd, dst)?;
            sys::close(fd);
            Ok(())
        }
        Op::Restrict {
            dst,
            attr_set,
            remount_flags,
        } => match sys::mount_setattr_recursive(dst, *attr_set) {
            // Kernels before 5.12: a remount of the top mount is what there is.
            Err(libc::ENOSYS) => sys::mount(None, dst, None, *remount_flags, None),
            r => r,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tree(steps: Vec<Step>) -> Tree {
        Tree {
            root_size: 1 << 20,
            steps,
        }
    }

    fn s(c: &CString) -> &str {
        c.to_str().unwrap()
    }

    #[test]
    fn each_step_becomes_its_calls_under_the_new_root() {
        let t = tree(vec![
            Step::Mkdir {
                path: "/usr".into(),
            },
            Step::Symlink {
                path: "/lib64".into(),
                target: "usr/lib64".into(),
            },
            Step::File {
                path: "/etc/passwd".into(),
                contents: b"x".to_vec().into(),
                mode: 0o444,
            },
            Step::Bind {
                src: "/usr/lib".into(),
                dst: "/usr/lib".into(),
                dir: true,
                rw: false,
                device: false,
                locked: libc::MS_NOATIME,
            },
            Step::Bind {
                src: "/srv/work".into(),
                dst: "/w".into(),
                dir: false,
                rw: true,
                device: false,
                locked: 0,
            },
            Step::Bind {
                src: "/dev/null".into(),
                dst: "/dev/null".into(),
                dir: false,
                rw: true,
                device: true,
                locked: 0,
            },
            Step::Tmpfs {
                dst: "/tmp".into(),
                size: 16 << 20,
                mode: 0o755,
                noexec: true,
            },
            Step::Proc {
                dst: "/proc".into(),
            },
            Step::Seal { dst: "/dev".into() },
        ]);
        let m = MountOps::prepare(&t, &[]).unwrap();
        // What a jail made ahead reads back is the same program, op for op.
        let mut w = Writer::default();
        m.encode(&mut w);
        let mut r = Reader::new(&w.bytes);
        let back = MountOps::decode(&mut r).unwrap();
        assert!(r.finished());
        assert_eq!(format!("{back:?}"), format!("{m:?}"));
        for cut in [0, 1, w.bytes.len() / 2, w.bytes.len() - 1] {
            assert!(MountOps::decode(&mut Reader::new(&w.bytes[..cut])).is_err());
        }
        assert_eq!(s(&m.root_data), "size=1048576,mode=755");
        let steps: Vec<u32> = m.ops.iter().map(|(i, _)| *i).collect();
        assert_eq!(steps, [0, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 7, 7, 8]);
        let op = |i: usize| &m.ops[i].1;
        assert!(matches!(op(0), Op::Mkdir(p) if s(p) == "/newroot/usr"));
        assert!(
            matches!(op(1), Op::Symlink { target, path } if s(target) == "usr/lib64" && s(path) == "/newroot/lib64")
        );
        assert!(
            matches!(op(2), Op::Write { path, data, mode: 0o444 } if s(path) == "/newroot/etc/passwd" && **data == *b"x")
        );
        // A directory bind: made as a directory, bound recursively from the old root,
        // then read-only, nosuid, nodev, with the host's locked flags kept.
        assert!(matches!(op(3), Op::Mkdir(p) if s(p) == "/newroot/usr/lib"));
        match op(4) {
            Op::Mount {
                src: Some(src),
                dst,
                fstype: None,
                flags,
                data: None,
            } => {
                assert_eq!((s(src), s(dst)), ("/oldroot/usr/lib", "/newroot/usr/lib"));
                assert_eq!(*flags, libc::MS_BIND | libc::MS_REC);
            }
            other => panic!("{other:?}"),
        }
        match op(5) {
            Op::Restrict {
                dst,
                attr_set,
                remount_flags,
            } => {
                assert_eq!(s(dst), "/newroot/usr/lib");
                assert_eq!(
                    *attr_set,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
                );
                let want = libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_RDONLY
                    | libc::MS_NOATIME;
                assert_eq!(*remount_flags, want);
            }
            other => panic!("{other:?}"),
        }
        // A writable file bind: touched, bound without MS_REC, noexec and not read-only.
        assert!(matches!(op(6), Op::Touch(p) if s(p) == "/newroot/w"));
        assert!(matches!(op(7), Op::Mount { flags, .. } if *flags == libc::MS_BIND));
        assert!(matches!(op(8), Op::Restrict { attr_set, remount_flags, .. }
            if *attr_set == MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
                && remount_flags & libc::MS_RDONLY == 0 && remount_flags & libc::MS_NOEXEC != 0));
        // A device keeps device access, and only that.
        assert!(matches!(op(11), Op::Restrict { attr_set, .. }
            if *attr_set == MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC));
        match op(13) {
            Op::Mount {
                src: Some(src),
                fstype: Some(fs),
                flags,
                data: Some(data),
                ..
            } => {
                assert_eq!(
                    (s(src), s(fs), s(data)),
                    ("tmpfs", "tmpfs", "size=16777216,mode=755")
                );
                assert_eq!(*flags, libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(op(15), Op::Mount { fstype: Some(fs), .. } if s(fs) == "proc"));
        assert!(matches!(op(16), Op::Mount { src: None, dst, flags, .. }
            if s(dst) == "/newroot/dev" && flags & libc::MS_RDONLY != 0 && flags & libc::MS_REMOUNT != 0));
    }

    #[test]
    fn an_attached_bind_is_moved_from_its_slot_then_restricted() {
        let rw = |src: &str| Step::Bind {
            src: src.into(),
            dst: src.into(),
            dir: true,
            rw: true,
            device: false,
            locked: 0,
        };
        let t = tree(vec![rw("/srv/a"), rw("/srv/b")]);
        // Step 1 comes from the run's first detached mount; step 0 is bound as ever.
        let m = MountOps::prepare(&t, &[1]).unwrap();
        assert_eq!(m.detached(), 1);
        assert!(
            matches!(&m.ops[1].1, Op::Mount { src: Some(src), .. } if s(src) == "/oldroot/srv/a")
        );
        assert!(matches!(&m.ops[3], (1, Op::Mkdir(p)) if s(p) == "/newroot/srv/b"));
        assert!(
            matches!(&m.ops[4], (1, Op::Attach { slot: 0, dst }) if s(dst) == "/newroot/srv/b")
        );
        assert!(matches!(&m.ops[5], (1, Op::Restrict { attr_set, .. })
            if *attr_set == MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
        let mut w = Writer::default();
        m.encode(&mut w);
        let back = MountOps::decode(&mut Reader::new(&w.bytes)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{m:?}"));
        assert_eq!(back.detached(), 1);
        // A slot with no descriptor is refused, not a panic.
        assert_eq!(run(&m.ops[4].1, &[]), Err(libc::EBADF));
    }

    #[test]
    fn a_nul_in_a_planned_path_is_an_error_not_a_panic() {
        let t = tree(vec![Step::Mkdir {
            path: PathBuf::from("/a\0b"),
        }]);
        let err = MountOps::prepare(&t, &[]).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }
}
