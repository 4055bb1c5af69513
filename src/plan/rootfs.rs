//! The jail's file tree, planned in the parent: which directories, symlinks and mounts
//! the fresh tmpfs root gets, in the order the child must make them. Host paths are only
//! looked at (lstat, readlink, statvfs); nothing is changed here.
//!
//! Host symlinks on the way to a file are recreated as symlinks (merged-/usr:
//! `/lib64 -> usr/lib64`), so a program finds its loader and libraries by the very paths
//! its ELF names, and only the real files are bind-mounted.

use crate::config::policy::{normalize, Bind, Tmpfs, Workdir, EXEC_STORE};
use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Device nodes of the minimal /dev: harmless sinks and sources of bytes.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// Size of the root tmpfs: it only holds directories, symlinks and mount points.
const ROOT_SIZE: u64 = 1 << 20;
const DEV_SIZE: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Step {
    Mkdir {
        path: PathBuf,
    },
    /// A file written into the root (a rootfs template's, read-only) or into the work
    /// dir (a request's, with its mode).
    File {
        path: PathBuf,
        contents: Arc<[u8]>,
        mode: u32,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    /// Bind-mount host `src` at `dst`. Read-only unless `rw`; writable binds are
    /// noexec; device binds keep device access (everything else is nodev).
    Bind {
        src: PathBuf,
        dst: PathBuf,
        dir: bool,
        rw: bool,
        device: bool,
        /// Flags of the source mount that a user namespace must keep when remounting
        /// (noexec and the atime flags are locked); MS_* bits.
        locked: u64,
    },
    Tmpfs {
        dst: PathBuf,
        size: u64,
        mode: u32,
        noexec: bool,
    },
    Proc {
        dst: PathBuf,
    },
    /// Remount a tmpfs read-only once it is populated.
    Seal {
        dst: PathBuf,
    },
    /// Bind a file of the jail's own tree (`src`, inside the new root) at `dst`,
    /// read-only and executable: how a program put into the noexec work dir can still
    /// be the one program started, while nothing written there can run.
    InnerBind {
        src: PathBuf,
        dst: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    pub root_size: u64,
    pub steps: Vec<Step>,
}

impl Tree {
    /// The writable binds of host files and directories (devices are not among them),
    /// as (step index, host source, whether it is a directory). For a root caller each
    /// one its jail could not write is bound through an id-mapped mount (see
    /// `jail::idmap`), and the plan's filter then keeps the program from setting
    /// set-user-ID and set-group-ID bits (see `Plan::finish`).
    pub fn writable_binds(&self) -> impl Iterator<Item = (u32, &Path, bool)> + '_ {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, step)| match step {
                Step::Bind {
                    src,
                    rw: true,
                    device: false,
                    dir,
                    ..
                } => Some((i as u32, src.as_path(), *dir)),
                _ => None,
            })
    }
}

/// Whether a process with fsuid `uid`, fsgid `gid` and no supplementary group may
/// write `mode`/`owner`/`group` (a directory: also search it), by the mode bits alone,
/// as the kernel's `generic_permission` checks them.
pub fn writable_by(mode: u32, owner: u32, group: u32, uid: u32, gid: u32, dir: bool) -> bool {
    let want = if dir { 0o3 } else { 0o2 };
    let shift = if owner == uid {
        6
    } else if group == gid {
        3
    } else {
        0
    };
    (mode >> shift) & want == want
}

/// Whether a root caller's jail, running as `uid`/`gid` outside, needs a writable bind
/// of `mode`/`owner`/`group` made id-mapped (`jail::idmap`) to write it: it could not
/// as it is, and its owner is not the jail's already (an owner's own read-only mode is
/// kept: mapping would change nothing).
pub fn needs_idmap(mode: u32, owner: u32, group: u32, uid: u32, gid: u32, dir: bool) -> bool {
    !writable_by(mode, owner, group, uid, gid, dir) && owner != uid
}

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot inspect {path} on the host: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("too many levels of symbolic links resolving {0}")]
    SymlinkLoop(PathBuf),
    #[error("{path} is needed inside the jail at the same place but {other} already puts something else there")]
    Conflict { path: PathBuf, other: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    Symlink(PathBuf),
    Bind {
        src: PathBuf,
        dir: bool,
        rw: bool,
        device: bool,
    },
    Tmpfs {
        size: u64,
        exec: bool,
        seal: bool,
    },
    Proc,
    File(Arc<[u8]>, u32),
    InnerBind(PathBuf),
}

impl fmt::Display for Node {
    /// What a node puts at its path, in words, for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Dir => f.write_str("a directory"),
            Node::Symlink(target) => write!(f, "a symlink to {}", target.display()),
            Node::Bind {
                src, device: true, ..
            } => write!(f, "the device {}", src.display()),
            Node::Bind { src, rw, .. } => write!(
                f,
                "a {} bind of {}",
                if *rw { "writable" } else { "read-only" },
                src.display()
            ),
            Node::Tmpfs { size, .. } => {
                write!(f, "a tmpfs of {}", crate::config::units::Size(*size))
            }
            Node::Proc => f.write_str("/proc"),
            Node::File(..) => f.write_str("a file put in the jail"),
            Node::InnerBind(src) => write!(f, "the program {}", src.display()),
        }
    }
}

struct Builder {
    nodes: BTreeMap<PathBuf, Node>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Builder {
    fn add(&mut self, path: PathBuf, node: Node) -> Result<(), RootfsError> {
        match self.nodes.get(&path) {
            None => {
                self.nodes.insert(path, node);
                Ok(())
            }
            Some(existing) if *existing == node => Ok(()),
            // A directory that is also a mount point becomes the mount point.
            Some(Node::Dir) if !matches!(node, Node::Symlink(_)) => {
                self.nodes.insert(path, node);
                Ok(())
            }
            Some(_) if node == Node::Dir => Ok(()),
            Some(existing) => Err(RootfsError::Conflict {
                path,
                other: existing.to_string(),
            }),
        }
    }

    fn parents(&mut self, path: &Path) -> Result<(), RootfsError> {
        for anc in path.ancestors().skip(1) {
            if anc != Path::new("/") {
                self.add(anc.to_path_buf(), Node::Dir)?;
            }
        }
        Ok(())
    }

    /// Walks `host_path` from the root, recreating every symlink met on the way, and
    /// returns the real path of what it names.
    fn follow(&mut self, host_path: &Path) -> Result<PathBuf, RootfsError> {
        let mut path = normalize(host_path);
        'restart: for _ in 0..40 {
            let mut cur = PathBuf::from("/");
            let comps: Vec<_> = path.components().skip(1).collect();
            for (i, c) in comps.iter().enumerate() {
                let next = cur.join(c);
                let meta = std::fs::symlink_metadata(&next).map_err(io_err(&next))?;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&next).map_err(io_err(&next))?;
                    self.add(next.clone(), Node::Symlink(target.clone()))?;
                    let mut resolved = cur.join(&target);
                    for rest in &comps[i + 1..] {
                        resolved.push(rest);
                    }
                    path = normalize(&resolved);
                    continue 'restart;
                }
                if i + 1 < comps.len() {
                    self.add(next.clone(), Node::Dir)?;
                }
                cur = next;
            }
            return Ok(cur);
        }
        Err(RootfsError::SymlinkLoop(host_path.to_path_buf()))
    }

    /// Makes host `src` visible inside at `dst` (the same path unless the profile says
    /// otherwise).
    fn bind(&mut self, src: &Path, dst: &Path, rw: bool, device: bool) -> Result<(), RootfsError> {
        let same_place = src == dst;
        let real = if same_place {
            self.follow(src)?
        } else {
            std::fs::canonicalize(src).map_err(io_err(src))?
        };
        let dst = if same_place {
            real.clone()
        } else {
            dst.to_path_buf()
        };
        let dir = std::fs::metadata(&real).map_err(io_err(&real))?.is_dir();
        self.parents(&dst)?;
        self.add(
            dst,
            Node::Bind {
                src: real,
                dir,
                rw,
                device,
            },
        )
    }
}

/// What the jail's tree must hold, as the policy and the program's ELF say.
#[derive(Debug, Clone, Copy)]
pub struct Wants<'a> {
    pub binds: &'a [Bind],
    pub tmpfs: &'a [Tmpfs],
    /// The program, its interpreter and libraries, as `ldso::resolve` found them.
    pub program_files: &'a [PathBuf],
    /// Small files written into the root (a rootfs template's, filled in).
    pub files: &'a [(PathBuf, Vec<u8>)],
    /// The run's private work dir, if it has one.
    pub workdir: Option<&'a Workdir>,
    pub proc: bool,
    pub dev: bool,
    pub cwd: &'a Path,
}

/// Plans the tree that holds what `wants` names.
pub fn plan(wants: &Wants) -> Result<Tree, RootfsError> {
    let mut b = Builder {
        nodes: BTreeMap::new(),
    };
    for bind in wants.binds {
        if bind.optional && !bind.src.exists() {
            continue;
        }
        b.bind(&bind.src, &bind.dst, bind.rw, false)?;
    }
    for t in wants.tmpfs {
        b.parents(&t.path)?;
        b.add(
            t.path.clone(),
            Node::Tmpfs {
                size: t.size,
                exec: false,
                seal: false,
            },
        )?;
    }
    for file in wants.program_files {
        b.bind(file, file, false, false)?;
    }
    if wants.proc {
        b.add(PathBuf::from("/proc"), Node::Proc)?;
    }
    for (path, contents) in wants.files {
        b.parents(path)?;
        b.add(path.clone(), Node::File(contents.as_slice().into(), 0o444))?;
    }
    if let Some(w) = wants.workdir {
        b.parents(&w.path)?;
        b.add(
            w.path.clone(),
            Node::Tmpfs {
                size: w.size,
                exec: false,
                seal: false,
            },
        )?;
        // Executable files go into a store of their own, sealed read-only, and are
        // bound into the noexec work dir: the program can be one of them, but nothing
        // the program writes can run.
        let exec: Vec<&crate::config::policy::FileIn> =
            w.files_in.iter().filter(|f| f.mode & 0o111 != 0).collect();
        if !exec.is_empty() {
            let size = exec
                .iter()
                .map(|f| (f.contents.len() as u64).div_ceil(4096) * 4096 + 4096)
                .sum::<u64>();
            let store = PathBuf::from(EXEC_STORE);
            b.add(
                store.clone(),
                Node::Tmpfs {
                    size,
                    exec: true,
                    seal: true,
                },
            )?;
            for (i, f) in exec.iter().enumerate() {
                let stored = store.join(i.to_string());
                b.add(
                    stored.clone(),
                    Node::File(f.contents.clone(), f.mode & 0o555),
                )?;
                let dst = w.path.join(&f.name);
                b.parents(&dst)?;
                b.add(dst, Node::InnerBind(stored))?;
            }
        }
        for f in w.files_in.iter().filter(|f| f.mode & 0o111 == 0) {
            let dst = w.path.join(&f.name);
            b.parents(&dst)?;
            b.add(dst, Node::File(f.contents.clone(), f.mode & 0o7777))?;
        }
    }
    if wants.dev {
        // /dev needs no programs, and once its device binds are made it is sealed.
        b.add(
            PathBuf::from("/dev"),
            Node::Tmpfs {
                size: DEV_SIZE,
                exec: false,
                seal: true,
            },
        )?;
        for d in DEVICES {
            let path = Path::new("/dev").join(d);
            let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
            if meta.file_type().is_char_device() {
                b.add(
                    path.clone(),
                    Node::Bind {
                        src: path,
                        dir: false,
                        rw: true,
                        device: true,
                    },
                )?;
            }
        }
        if wants.proc {
            for (name, target) in [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ] {
                b.add(Path::new("/dev").join(name), Node::Symlink(target.into()))?;
            }
        }
    }
    if !wants.cwd.as_os_str().is_empty() && wants.cwd != Path::new("/") {
        // The working directory exists even when nothing is mounted there.
        b.parents(wants.cwd)?;
        b.add(wants.cwd.to_path_buf(), Node::Dir)?;
    }
    Ok(Tree {
        root_size: ROOT_SIZE,
        steps: order(&b.nodes),
    })
}

/// Orders nodes so that each is made after the mount that holds it, and drops those a
/// same-path directory bind already shows (they are there, and read-only).
fn order(nodes: &BTreeMap<PathBuf, Node>) -> Vec<Step> {
    let covering: Vec<&PathBuf> = nodes
        .iter()
        .filter_map(|(p, n)| match n {
            Node::Bind { src, dir: true, .. } if src == p => Some(p),
            _ => None,
        })
        .collect();
    let covered = |p: &Path| {
        covering
            .iter()
            .any(|c| p != c.as_path() && p.starts_with(c))
    };
    let mut sorted: Vec<(&PathBuf, &Node)> = nodes.iter().filter(|(p, _)| !covered(p)).collect();
    sorted.sort_by_key(|(p, _)| (p.components().count(), (*p).clone()));

    let mut steps = Vec::new();
    // After everything else: binds of the jail's own files (their sources must be
    // there first), then the seals (their tmpfs must be filled first).
    let mut inner = Vec::new();
    let mut seal = Vec::new();
    for (path, node) in sorted {
        let path = path.clone();
        steps.push(match node {
            Node::Dir => Step::Mkdir { path },
            Node::Symlink(target) => Step::Symlink {
                path,
                target: target.clone(),
            },
            Node::Bind {
                src,
                dir,
                rw,
                device,
            } => Step::Bind {
                locked: locked_flags(src),
                src: src.clone(),
                dst: path,
                dir: *dir,
                rw: *rw,
                device: *device,
            },
            Node::Tmpfs {
                size,
                exec,
                seal: sealed,
            } => {
                if *sealed {
                    seal.push(Step::Seal { dst: path.clone() });
                }
                Step::Tmpfs {
                    dst: path,
                    size: *size,
                    mode: 0o755,
                    // A writable tmpfs is never executable; only the exec store is,
                    // and it is sealed read-only once filled.
                    noexec: !exec,
                }
            }
            Node::Proc => Step::Proc { dst: path },
            Node::File(contents, mode) => Step::File {
                path,
                contents: contents.clone(),
                mode: *mode,
            },
            Node::InnerBind(src) => {
                inner.push(Step::InnerBind {
                    src: src.clone(),
                    dst: path,
                });
                continue;
            }
        });
    }
    steps.extend(inner);
    steps.extend(seal);
    steps
}

/// Mount flags of the host mount holding `path` that a remount inside a user namespace
/// must repeat (the kernel locks them).
fn locked_flags(path: &Path) -> u64 {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return 0;
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut out = 0u64;
    for (st_flag, ms_flag) in [
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        // nix names ST_RELATIME only for glibc; the kernel reports it on every libc
        // (include/linux/statfs.h).
        (FsFlags::from_bits_retain(0x1000), libc::MS_RELATIME),
        (FsFlags::ST_RDONLY, libc::MS_RDONLY),
    ] {
        if f.contains(st_flag) {
            out |= ms_flag;
        }
    }
    out
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mkdir { path } => write!(f, "mkdir    {}", path.display()),
            Step::Symlink { path, target } => {
                write!(f, "symlink  {} -> {}", path.display(), target.display())
            }
            Step::Bind {
                src,
                dst,
                rw,
                device,
                dir,
                ..
            } => {
                let mut flags = vec![if *rw { "rw" } else { "ro" }, "nosuid"];
                if !device {
                    flags.push("nodev");
                }
                if *rw {
                    flags.push("noexec");
                }
                if *dir {
                    flags.push("rec");
                }
                if src == dst {
                    write!(f, "bind     {} ({})", dst.display(), flags.join(","))
                } else {
                    write!(
                        f,
                        "bind     {} <- {} ({})",
                        dst.display(),
                        src.display(),
                        flags.join(",")
                    )
                }
            }
            Step::Tmpfs {
                dst,
                size,
                mode,
                noexec,
            } => write!(
                f,
                "tmpfs    {} (size={},mode={:o},nosuid,nodev{})",
                dst.display(),
                crate::config::units::Size(*size),
                mode,
                if *noexec { ",noexec" } else { "" }
            ),
            Step::Proc { dst } => write!(f, "proc     {} (nosuid,nodev,noexec)", dst.display()),
            Step::Seal { dst } => write!(f, "remount  {} (ro)", dst.display()),
            Step::File {
                path,
                contents,
                mode,
            } => write!(
                f,
                "file     {} ({} bytes, mode {mode:o})",
                path.display(),
                contents.len()
            ),
            Step::InnerBind { src, dst } => write!(
                f,
                "bind     {} <- {} (ro,nosuid,nodev,exec)",
                dst.display(),
                src.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the default profile asks for: /dev, nothing else.
    fn wants<'a>(program_files: &'a [PathBuf]) -> Wants<'a> {
        Wants {
            binds: &[],
            tmpfs: &[],
            program_files,
            files: &[],
            proc: false,
            dev: true,
            cwd: Path::new("/"),
            workdir: None,
        }
    }

    #[test]
    fn writable_by_follows_the_mode_bits_of_the_class_that_applies() {
        // root:root 0755, the jail 65534: others' bits, r-x.
        assert!(!writable_by(0o40755, 0, 0, 65534, 65534, true));
        assert!(writable_by(0o40777, 0, 0, 65534, 65534, true));
        // Sticky /tmp-like directories are writable (the sticky bit guards entries).
        assert!(writable_by(0o41777, 0, 0, 65534, 65534, true));
        // The owner class decides for the owner, even if others may write.
        assert!(!writable_by(0o40577, 65534, 0, 65534, 65534, true));
        assert!(writable_by(0o40700, 65534, 0, 65534, 65534, true));
        // The group class for a member; write without search is not enough.
        assert!(writable_by(0o40775, 0, 65534, 65534, 65534, true));
        assert!(!writable_by(0o40765, 0, 65534, 65534, 65534, true));
        // A file needs write only.
        assert!(writable_by(0o100662, 0, 0, 65534, 65534, false));
        assert!(!writable_by(0o100644, 0, 0, 65534, 65534, false));
    }

    #[test]
    fn loader_symlinks_are_recreated() {
        // On merged-/usr Debian the loader path crosses two symlinks.
        let ld = PathBuf::from("/lib64/ld-linux-x86-64.so.2");
        let tree = plan(&wants(std::slice::from_ref(&ld))).unwrap();
        let real = std::fs::canonicalize(&ld).unwrap();
        assert!(tree
            .steps
            .iter()
            .any(|s| matches!(s, Step::Bind { dst, .. } if *dst == real)));
        if std::fs::symlink_metadata("/lib64")
            .unwrap()
            .file_type()
            .is_symlink()
        {
            assert!(tree
                .steps
                .iter()
                .any(|s| matches!(s, Step::Symlink { path, .. } if path == Path::new("/lib64"))));
        }
        // Parents come before children, the /dev seal last.
        let pos = |want: &Path| {
            tree.steps
                .iter()
                .position(|s| matches!(s, Step::Mkdir { path } if path == want))
        };
        let usr = pos(Path::new("/usr")).unwrap();
        let usr_lib = pos(Path::new("/usr/lib")).unwrap();
        assert!(usr < usr_lib);
        assert!(matches!(tree.steps.last(), Some(Step::Seal { .. })));
    }

    #[test]
    fn files_under_a_bound_directory_are_not_bound_again() {
        let binds = [Bind {
            src: "/usr".into(),
            dst: "/usr".into(),
            rw: false,
            optional: false,
        }];
        let files = [PathBuf::from("/usr/bin/env")];
        let tree = plan(&Wants {
            binds: &binds,
            ..wants(&files)
        })
        .unwrap();
        let binds: Vec<_> = tree
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind {
                    dst, device: false, ..
                } => Some(dst.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(binds, vec![PathBuf::from("/usr")]);
    }

    #[test]
    fn dev_and_proc() {
        let tree = plan(&Wants {
            proc: true,
            ..wants(&[])
        })
        .unwrap();
        let text: Vec<String> = tree.steps.iter().map(|s| s.to_string()).collect();
        assert!(
            text.iter().any(|t| t.starts_with("proc     /proc")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("bind     /dev/null (rw,nosuid,noexec)")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t == "symlink  /dev/fd -> /proc/self/fd"),
            "{text:?}"
        );
    }

    #[test]
    fn files_are_written_after_their_parents() {
        let files = [
            (PathBuf::from("/etc/passwd"), b"x:1:1\n".to_vec()),
            (PathBuf::from("/etc/a/b"), Vec::new()),
        ];
        let tree = plan(&Wants {
            files: &files,
            ..wants(&[])
        })
        .unwrap();
        let pos = |f: &dyn Fn(&Step) -> bool| tree.steps.iter().position(f).unwrap();
        let etc = pos(&|s| matches!(s, Step::Mkdir { path } if path == Path::new("/etc")));
        let etc_a = pos(&|s| matches!(s, Step::Mkdir { path } if path == Path::new("/etc/a")));
        let passwd = pos(
            &|s| matches!(s, Step::File { path, contents, .. } if path == Path::new("/etc/passwd") && &contents[..] == b"x:1:1\n"),
        );
        let b = pos(&|s| matches!(s, Step::File { path, .. } if path == Path::new("/etc/a/b")));
        assert!(etc < passwd && etc < etc_a && etc_a < b);
    }

    #[test]
    fn relocated_bind_creates_parents() {
        let binds = [Bind {
            src: "/etc".into(),
            dst: "/opt/hostetc".into(),
            rw: true,
            optional: false,
        }];
        let tree = plan(&Wants {
            binds: &binds,
            ..wants(&[])
        })
        .unwrap();
        let text: Vec<String> = tree.steps.iter().map(|s| s.to_string()).collect();
        assert!(text.contains(&"mkdir    /opt".to_string()), "{text:?}");
        assert!(
            text.contains(
                &"bind     /opt/hostetc <- /etc (rw,nosuid,nodev,noexec,rec)".to_string()
            ),
            "{text:?}"
        );
    }
}
