//! Writable binds a root caller's jail could not write as they are: bound through an
//! id-mapped mount that shows the directory's owner as the jail's own outside id.
//!
//! A root caller's jail runs as uid/gid 65534 outside (never 0; see `plan::ids`), so a
//! `--bind-rw ./work` that root (or any other user) owns with mode 0755 is read-only to
//! it: `ld` fails with "cannot open output file sol: Permission denied". Such a bind is
//! made here, in the parent, before the jail is cloned: a detached copy of the mount
//! (`open_tree(OPEN_TREE_CLONE)`, Linux 5.2) given an idmapping
//! (`mount_setattr(MOUNT_ATTR_IDMAP)`, Linux 5.12, commit 9caccd41541a "fs: introduce
//! MOUNT_ATTR_IDMAP") by a user namespace whose maps are `OWNER 65534 1` and
//! `GROUP 65534 1`. Through such a mount an id X stored on disk is seen as the id X maps
//! to in that namespace, and an id written to disk is mapped back: the directory's
//! owner is seen as the jail's outside id, so the jail may write there, and what the
//! jail creates is stored owned by the directory's owner and group. On the host the
//! files the program made are the owner's, as that user expects ("my files stay
//! mine"); inside they belong to the jail's uid, as in a rootless run. No other id is
//! mapped: files of other owners in that directory are seen as owned by the overflow
//! id, which never matches the jail's (an unmapped id compares equal to nothing), so
//! they stay exactly as protected as before. Nothing outside the directory the caller
//! named writable changes.
//!
//! What the jail may do as the owner, it may do only inside that directory, and never
//! with set-user-ID or set-group-ID bits: a set-user-ID file it left there would run
//! with the owner's ids (root's) for anyone on the host. The plan's filter makes every
//! call that could set those bits fail with EPERM (see `Plan::finish`), and
//! [`detach`] refuses to build such a mount for a plan whose filter lacks that guard.
//!
//! The copy is not recursive: mounts below the directory on the host are not part of
//! it (their mount points show as the empty directories under them). An idmapping is
//! the same for a whole tree, and one made for the directory's owner would map the
//! owners of other file systems below it to the jail, too.
//!
//! Only when needed: the caller is root, the bind is writable and no device, and the
//! jail's outside ids could not write the source as it is (its owner, group and mode
//! say so). A rootless caller's jail runs as the caller outside, the owner of its own
//! directories; nothing changes for it. Where the kernel or the file system cannot
//! map ids (ENOSYS before 5.12; EINVAL from a file system without `FS_ALLOW_IDMAP`,
//! tmpfs before 6.3 among them), the run is refused before anything of the jail
//! exists, naming the directory and the fix.
//!
//! The detached mounts reach init as descriptors: inherited on the cold path, sent
//! with the order (SCM_RIGHTS) on the warm one; init attaches each with `move_mount`
//! where the plan put the bind, then restricts it (nosuid, nodev, noexec) as every
//! writable bind is. The user namespace that carried the mapping is held by no process
//! once the mount has it: its helper is killed and reaped here, and the descriptor
//! closed.

use super::sys;
use crate::plan::ids::IdMaps;
use crate::plan::rootfs::{needs_idmap, Tree};
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `MOUNT_ATTR_IDMAP` (linux/mount.h): the mount takes the idmapping of `userns_fd`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// nosuid, nodev, noexec (linux/mount.h): a writable bind's restrictions, set on the
/// detached mount already, so it is never attached without them.
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;

/// The detached, id-mapped mounts for a run: `fds[i]` is attached by init in place of
/// the bind of plan step `steps[i]`.
#[derive(Debug, Default)]
pub struct Detached {
    /// The plan steps (writable binds) made from a detached mount, in slot order.
    pub steps: Vec<u32>,
    /// The detached mounts, close-on-exec; dropping one dissolves its mount.
    pub fds: Vec<OwnedFd>,
}

/// Why a writable bind cannot be made writable for a root caller's jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmapError {
    /// The bind's host source.
    pub path: PathBuf,
    /// The jail's outside ids.
    pub uid: u32,
    pub gid: u32,
    /// The source's owner, group and mode, as the host has them.
    pub owner: u32,
    pub group: u32,
    pub mode: u32,
    /// What stood in the way.
    pub cause: Cause,
}

/// What kept an id-mapped mount from being made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The kernel has no id-mapped mounts (ENOSYS: before Linux 5.12).
    Kernel,
    /// The file system does not support them (EINVAL or EOPNOTSUPP from
    /// mount_setattr), with its type where mountinfo names it.
    FileSystem(Option<String>),
    /// Through the mount the source is still not seen as the jail's (a file system
    /// that maps ids of its own, say).
    Unmapped { uid: u32, gid: u32 },
    /// The plan's filter does not keep the program from setting set-user-ID bits.
    Unguarded,
    /// A step failed otherwise.
    Failed { what: &'static str, errno: i32 },
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Kernel => f.write_str("this kernel has no id-mapped mounts (Linux 5.12 and later have them)"),
            Cause::FileSystem(fs) => write!(
                f,
                "its file system{} does not support id-mapped mounts (ext4, xfs and btrfs do since Linux 5.12, tmpfs since 6.3)",
                fs.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()
            ),
            Cause::Unmapped { uid, gid } => write!(
                f,
                "through the id-mapped mount it is still owned by {uid}:{gid} (its file system maps ids of its own)"
            ),
            Cause::Unguarded => f.write_str(
                "the plan's filter does not keep the program from setting set-user-ID bits",
            ),
            Cause::Failed { what, errno } => {
                write!(f, "{what} failed: {}", io::Error::from_raw_os_error(*errno))
            }
        }
    }
}

impl fmt::Display for IdmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        write!(
            f,
            "{p} is bound writable, but the jail runs as uid {uid} outside and {p} is owned by \
             {owner}:{group} with mode {mode:o}, so the jail cannot write it; moat would map \
             its owner to the jail with an id-mapped mount, but {cause}. Fix: `chown {uid}:{gid} {p}` \
             (what the program writes is then owned by {uid}), or run moat as an unprivileged \
             user (the jail then writes as that user)",
            uid = self.uid,
            gid = self.gid,
            owner = self.owner,
            group = self.group,
            mode = self.mode & 0o7777,
            cause = self.cause,
        )
    }
}

impl std::error::Error for IdmapError {}

/// Makes the detached, id-mapped mount of every writable bind of `tree` that a root
/// caller's jail (`ids`) could not write as it is. `guarded`: the plan's filter keeps
/// the program from setting set-user-ID and set-group-ID bits (see the module
/// comment); without it nothing is mapped. A rootless caller gets nothing. Parent side.
pub fn detach(tree: &Tree, ids: &IdMaps, guarded: bool) -> Result<Detached, IdmapError> {
    let mut out = Detached::default();
    if !ids.privileged {
        return Ok(out);
    }
    // One user namespace per (owner, group) the binds need; usually one.
    let mut namespaces: Vec<((u32, u32), OwnedFd)> = Vec::new();
    for (step, src, dir) in tree.writable_binds() {
        let error = |(owner, group, mode): (u32, u32, u32), cause: Cause| IdmapError {
            path: src.to_path_buf(),
            uid: ids.outside_uid,
            gid: ids.outside_gid,
            owner,
            group,
            mode,
            cause,
        };
        let failed = |what| move |errno| error((0, 0, 0), Cause::Failed { what, errno });
        let source = open_path(src).map_err(failed("opening it"))?;
        let st = fstat(source.as_raw_fd()).map_err(failed("fstat"))?;
        let (owner, group, mode) = (st.st_uid, st.st_gid, st.st_mode);
        // Writable as it is, or already the jail's own: bound as every other bind is.
        if !needs_idmap(mode, owner, group, ids.outside_uid, ids.outside_gid, dir) {
            continue;
        }
        let fail = |cause: Cause| error((owner, group, mode), cause);
        if !guarded {
            return Err(fail(Cause::Unguarded));
        }
        let userns = match namespaces.iter().find(|(k, _)| *k == (owner, group)) {
            Some((_, fd)) => fd.as_raw_fd(),
            None => {
                let fd = mapping_userns(owner, group, ids.outside_uid, ids.outside_gid)
                    .map_err(|(what, errno)| fail(Cause::Failed { what, errno }))?;
                let raw = fd.as_raw_fd();
                namespaces.push(((owner, group), fd));
                raw
            }
        };
        let mnt = sys::open_tree_clone(source.as_raw_fd()).map_err(|e| {
            fail(match e {
                libc::ENOSYS => Cause::Kernel,
                errno => Cause::Failed {
                    what: "open_tree (a detached copy of the bind)",
                    errno,
                },
            })
        })?;
        let attrs = MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        sys::mount_setattr_fd(mnt.as_raw_fd(), attrs, userns).map_err(|e| {
            fail(match e {
                libc::ENOSYS => Cause::Kernel,
                libc::EINVAL | libc::EOPNOTSUPP => Cause::FileSystem(fs_type(&source)),
                errno => Cause::Failed {
                    what: "mount_setattr(MOUNT_ATTR_IDMAP)",
                    errno,
                },
            })
        })?;
        // The check that counts: through the new mount the source is the jail's.
        let seen = fstat(mnt.as_raw_fd()).map_err(|errno| {
            fail(Cause::Failed {
                what: "fstat of the id-mapped mount",
                errno,
            })
        })?;
        if (seen.st_uid, seen.st_gid) != (ids.outside_uid, ids.outside_gid) {
            return Err(fail(Cause::Unmapped {
                uid: seen.st_uid,
                gid: seen.st_gid,
            }));
        }
        out.steps.push(step);
        out.fds.push(mnt);
    }
    Ok(out)
}

/// An `O_PATH` descriptor for `path` itself (a symlink put there since the plan was
/// made is not followed): what is checked is what is bound.
fn open_path(path: &Path) -> Result<OwnedFd, i32> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?;
    let fd = sys::open(&c, libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0)?;
    // SAFETY: a fresh descriptor from open, owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: RawFd) -> Result<libc::stat, i32> {
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one stat struct we own; O_PATH descriptors may be given.
    sys::check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// The file system type of the mount holding `fd`, from mountinfo (by mount id).
fn fs_type(fd: &OwnedFd) -> Option<String> {
    // SAFETY: an all-zero statx is a valid value for statx to overwrite.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx of a descriptor of ours with an empty NUL-terminated path, writing
    // one statx struct we own.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if r < 0 || stx.stx_mask & libc::STATX_MNT_ID == 0 {
        return None;
    }
    let id = stx.stx_mnt_id.to_string();
    let info = sys::read_proc("/proc/self/mountinfo")?;
    info.lines()
        .find(|l| l.split(' ').next() == Some(id.as_str()))
        .and_then(|l| l.split(" - ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .map(str::to_owned)
}

/// A user namespace that maps `owner` to `to_uid` and `group` to `to_gid` and nothing
/// else, held by a descriptor: the idmapping of a mount. Made by a helper child cloned
/// into a new user namespace, whose maps this process (root) writes; the helper is
/// killed and reaped before this returns, the namespace lives on in the descriptor.
fn mapping_userns(
    owner: u32,
    group: u32,
    to_uid: u32,
    to_gid: u32,
) -> Result<OwnedFd, (&'static str, i32)> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // Every signal blocked across the clone, so the helper never runs one of moat's
    // handlers (a Ctrl-C reaches the whole process group); the parent's mask is put
    // back at once.
    // SAFETY: all-zero sigset_t values are valid sets for sigfillset and
    // pthread_sigmask to fill.
    let (mut all, mut old): (libc::sigset_t, libc::sigset_t) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: sigfillset and pthread_sigmask on stack sets.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let pid = sys::clone_fork(libc::CLONE_NEWUSER);
    if pid == 0 {
        hold(parent);
    }
    let errno = sys::errno();
    // SAFETY: pthread_sigmask restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(("creating a user namespace for the mapping", errno));
    }
    let helper = Helper(pid);
    let io_errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("{owner} {to_uid} 1\n"),
    )
    .map_err(|e| ("writing the mapping's uid_map", io_errno(e)))?;
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("{group} {to_gid} 1\n"),
    )
    .map_err(|e| ("writing the mapping's gid_map", io_errno(e)))?;
    let path = CString::new(format!("/proc/{pid}/ns/user")).map_err(|_| ("", libc::EINVAL))?;
    let fd = sys::open(&path, libc::O_RDONLY | libc::O_CLOEXEC, 0)
        .map_err(|e| ("opening the mapping's user namespace", e))?;
    // SAFETY: a fresh descriptor from open, owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    drop(helper);
    Ok(fd)
}

/// The helper of [`mapping_userns`], killed and reaped when dropped.
struct Helper(libc::pid_t);

impl Drop for Helper {
    fn drop(&mut self) {
        // SAFETY: kill of our own child, not yet reaped, so the pid is still its.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a stack status word.
            let r = unsafe { libc::waitpid(self.0, &mut status, libc::__WALL) };
            if r >= 0 || sys::errno() != libc::EINTR {
                return;
            }
        }
    }
}

/// The helper's life: it holds its user namespace until it is killed, and dies with
/// this thread if moat goes first. It runs after a clone of a possibly multi-threaded
/// parent, with every signal blocked: system calls only, no allocation.
fn hold(parent: libc::pid_t) -> ! {
    // SAFETY: prctl, getppid, pause and _exit take integers or nothing.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
    // It needs none of moat's descriptors (other runs' pipes among them).
    sys::close_from(0);
    loop {
        // SAFETY: as above.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(cause: Cause) -> String {
        IdmapError {
            path: "/srv/work".into(),
            uid: 65534,
            gid: 65534,
            owner: 0,
            group: 0,
            mode: 0o40755,
            cause,
        }
        .to_string()
    }

    #[test]
    fn the_refusal_names_the_directory_the_cause_and_the_fix() {
        let text = error(Cause::FileSystem(Some("ramfs".into())));
        assert!(
            text.starts_with("/srv/work is bound writable, but the jail runs as uid 65534 outside and /srv/work is owned by 0:0 with mode 755"),
            "{text}"
        );
        assert!(
            text.contains("its file system (ramfs) does not support id-mapped mounts"),
            "{text}"
        );
        assert!(
            text.contains("Fix: `chown 65534:65534 /srv/work`"),
            "{text}"
        );
        assert!(
            text.contains("or run moat as an unprivileged user"),
            "{text}"
        );
        let text = error(Cause::Kernel);
        assert!(text.contains("Linux 5.12"), "{text}");
        let text = error(Cause::Failed {
            what: "mount_setattr(MOUNT_ATTR_IDMAP)",
            errno: libc::EPERM,
        });
        assert!(
            text.contains("mount_setattr(MOUNT_ATTR_IDMAP) failed: Operation not permitted"),
            "{text}"
        );
    }

    fn rw_tree(dir: &Path) -> Tree {
        Tree {
            root_size: 1 << 20,
            steps: vec![crate::plan::rootfs::Step::Bind {
                src: dir.to_path_buf(),
                dst: dir.to_path_buf(),
                dir: true,
                rw: true,
                device: false,
                locked: 0,
            }],
        }
    }

    #[test]
    fn as_root_a_root_owned_directory_is_seen_as_the_jails_through_its_mount() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = rw_tree(dir.path());
        let ids = IdMaps::new(0, 0, 1000, 1000);
        // Without the filter's guard nothing is mapped.
        let err = detach(&tree, &ids, false).unwrap_err();
        assert_eq!(err.cause, Cause::Unguarded);
        let d = detach(&tree, &ids, true).unwrap();
        assert_eq!(d.steps, [0]);
        let st = fstat(d.fds[0].as_raw_fd()).unwrap();
        assert_eq!((st.st_uid, st.st_gid), (65534, 65534));
        // The helper that carried the mapping is gone (reaped, not a zombie).
        let children = std::fs::read_to_string("/proc/thread-self/children").unwrap();
        assert_eq!(children.trim(), "");
        // A directory the jail may write as it is is bound as it is.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        assert!(detach(&tree, &ids, true).unwrap().fds.is_empty());
    }

    #[test]
    fn a_rootless_caller_gets_no_mapped_mount() {
        let dir = tempfile::tempdir().unwrap();
        let tree = rw_tree(dir.path());
        let ids = IdMaps::new(1234, 1234, 1000, 1000);
        let d = detach(&tree, &ids, true).unwrap();
        assert!(d.steps.is_empty() && d.fds.is_empty());
    }
}
