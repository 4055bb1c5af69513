//! Mounts, child side: carries out the tree `rootfs` planned, then pivots into it.
//!
//! `prepare` runs in the parent and turns each step into the exact system calls with
//! their C strings; `apply` runs in the cloned child, where it must not allocate (the
//! parent may be multi-threaded, and a lock held by another thread at clone time would
//! never be released), so it only walks the prepared list.

use crate::plan::rootfs::{Step, Tree};
use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
    /// A small file with prepared contents (a rootfs template's).
    Write {
        path: CString,
        data: Vec<u8>,
    },
    Mount {
        src: Option<CString>,
        dst: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
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

/// Which part of the mount program failed.
pub const STEP_BASE: u32 = u32::MAX - 10;
pub const STEP_PIVOT: u32 = u32::MAX - 9;
pub const STEP_SEAL_ROOT: u32 = u32::MAX - 8;

fn c(path: impl AsRef<[u8]>) -> CString {
    CString::new(path.as_ref()).expect("planned paths come from the file system and have no NUL")
}

fn under(prefix: &str, path: &Path) -> CString {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    c(bytes)
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

impl MountOps {
    pub fn prepare(tree: &Tree) -> MountOps {
        let mut ops = Vec::new();
        for (i, step) in tree.steps.iter().enumerate() {
            let i = i as u32;
            match step {
                Step::Mkdir { path } => ops.push((i, Op::Mkdir(under(NEW_ROOT, path)))),
                Step::File { path, contents } => ops.push((
                    i,
                    Op::Write {
                        path: under(NEW_ROOT, path),
                        data: contents.clone(),
                    },
                )),
                Step::Symlink { path, target } => ops.push((
                    i,
                    Op::Symlink {
                        target: c(target.as_os_str().as_bytes()),
                        path: under(NEW_ROOT, path),
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
                    let dst_c = under(NEW_ROOT, dst);
                    ops.push((
                        i,
                        if *dir {
                            Op::Mkdir(dst_c.clone())
                        } else {
                            Op::Touch(dst_c.clone())
                        },
                    ));
                    // Recursive for directories: in a user namespace a non-recursive
                    // bind of a tree with locked submounts is refused.
                    let rec = if *dir { libc::MS_REC } else { 0 };
                    ops.push((
                        i,
                        Op::Mount {
                            src: Some(under(OLD_ROOT, src)),
                            dst: dst_c.clone(),
                            fstype: None,
                            flags: libc::MS_BIND | rec,
                            data: None,
                        },
                    ));
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
                    let dst_c = under(NEW_ROOT, dst);
                    ops.push((i, Op::Mkdir(dst_c.clone())));
                    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
                    if *noexec {
                        flags |= libc::MS_NOEXEC;
                    }
                    ops.push((
                        i,
                        Op::Mount {
                            src: Some(c("tmpfs")),
                            dst: dst_c,
                            fstype: Some(c("tmpfs")),
                            flags,
                            data: Some(c(format!("size={size},mode={mode:o}"))),
                        },
                    ));
                }
                Step::Proc { dst } => {
                    let dst_c = under(NEW_ROOT, dst);
                    ops.push((i, Op::Mkdir(dst_c.clone())));
                    ops.push((
                        i,
                        Op::Mount {
                            src: Some(c("proc")),
                            dst: dst_c,
                            fstype: Some(c("proc")),
                            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            data: None,
                        },
                    ));
                }
                Step::Seal { dst } => ops.push((
                    i,
                    Op::Mount {
                        src: None,
                        dst: under(NEW_ROOT, dst),
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
        MountOps {
            ops,
            root_data: c(format!("size={},mode=755", tree.root_size)),
        }
    }

    /// Child side: builds the new root and pivots into it. On failure returns the step
    /// index and errno. Allocates nothing.
    pub fn apply(&self) -> Result<(), (u32, i32)> {
        let base = |r: libc::c_int| {
            if r < 0 {
                Err((STEP_BASE, errno()))
            } else {
                Ok(())
            }
        };
        // SAFETY (all calls below): plain system calls on NUL-terminated strings the
        // parent prepared, which live as long as `self`.
        unsafe {
            // Nothing mounted from here on may propagate back to the host, and host
            // mount events must not reach the jail.
            base(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            // A scratch tmpfs over /tmp becomes the root for the build; the host root
            // stays reachable at /oldroot, so sources anywhere (even under /tmp) can be
            // bound, and nothing of the host is left once /oldroot is detached.
            base(libc::mount(
                c"tmpfs".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=64k,mode=700".as_ptr().cast(),
            ))?;
            base(libc::chdir(c"/tmp".as_ptr()))?;
            base(libc::mkdir(c"newroot".as_ptr(), 0o755))?;
            base(libc::mkdir(c"oldroot".as_ptr(), 0o755))?;
            base(pivot_root(c".", c"oldroot"))?;
            base(libc::chdir(c"/".as_ptr()))?;
            base(libc::mount(
                c"tmpfs".as_ptr(),
                c"/newroot".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.root_data.as_ptr().cast(),
            ))?;
            for (step, op) in &self.ops {
                run(op).map_err(|e| (*step, e))?;
            }
            let pivot = |r: libc::c_int| {
                if r < 0 {
                    Err((STEP_PIVOT, errno()))
                } else {
                    Ok(())
                }
            };
            // Detach the host: after this no path inside leads out.
            pivot(libc::umount2(c"/oldroot".as_ptr(), libc::MNT_DETACH))?;
            pivot(libc::chdir(c"/newroot".as_ptr()))?;
            // pivot_root(".", ".") stacks the old root under the new one; detaching "."
            // then removes the scratch tmpfs.
            pivot(pivot_root(c".", c"."))?;
            pivot(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            pivot(libc::chdir(c"/".as_ptr()))?;
            // The root is read-only at the end: the program can create nothing outside
            // the writable mounts the profile names.
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            ) < 0
            {
                return Err((STEP_SEAL_ROOT, errno()));
            }
        }
        Ok(())
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

unsafe fn pivot_root(new: &CStr, old: &CStr) -> libc::c_int {
    libc::syscall(libc::SYS_pivot_root, new.as_ptr(), old.as_ptr()) as libc::c_int
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Runs one prepared op. Child side: no allocation.
fn run(op: &Op) -> Result<(), i32> {
    let check = |r: libc::c_int| if r < 0 { Err(errno()) } else { Ok(()) };
    let opt = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: system calls on prepared NUL-terminated strings and a stack struct.
    unsafe {
        match op {
            Op::Mkdir(path) => {
                if libc::mkdir(path.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
                    return Err(errno());
                }
                Ok(())
            }
            Op::Symlink { target, path } => check(libc::symlink(target.as_ptr(), path.as_ptr())),
            Op::Write { path, data } => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o444,
                );
                if fd < 0 {
                    return Err(errno());
                }
                let mut rest: &[u8] = data;
                while !rest.is_empty() {
                    let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
                    if n <= 0 {
                        let e = errno();
                        libc::close(fd);
                        return Err(e);
                    }
                    rest = &rest[n as usize..];
                }
                libc::close(fd);
                Ok(())
            }
            Op::Touch(path) => {
                let fd = libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o444,
                );
                if fd < 0 {
                    return Err(errno());
                }
                libc::close(fd);
                Ok(())
            }
            Op::Mount {
                src,
                dst,
                fstype,
                flags,
                data,
            } => check(libc::mount(
                opt(src),
                dst.as_ptr(),
                opt(fstype),
                *flags,
                opt(data).cast(),
            )),
            Op::Restrict {
                dst,
                attr_set,
                remount_flags,
            } => {
                let attr = MountAttr {
                    attr_set: *attr_set,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                let r = libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    dst.as_ptr(),
                    libc::AT_RECURSIVE as libc::c_uint,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                );
                if r == 0 {
                    return Ok(());
                }
                if errno() != libc::ENOSYS {
                    return Err(errno());
                }
                check(libc::mount(
                    std::ptr::null(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    *remount_flags,
                    std::ptr::null(),
                ))
            }
        }
    }
}

/// Describes a failed step for the error message.
pub fn describe_step(tree: &Tree, step: u32) -> String {
    match step {
        STEP_BASE => "preparing the scratch root".into(),
        STEP_PIVOT => "pivoting into the new root".into(),
        STEP_SEAL_ROOT => "making the root read-only".into(),
        i => tree.steps.get(i as usize).map_or_else(
            || format!("mount step {i}"),
            |s| {
                s.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        ),
    }
}
