//! Copy-out: files read back from the work dir once the jail is gone.
//!
//! The program controls its work dir, so every name is resolved against the
//! descriptor init handed over, with `openat2` and `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`: no symlink is
//! followed (a file swapped for a link to `/etc/shadow` is refused, not read), nothing
//! outside the work dir's own mount is reached, `..` never climbs out. The file is
//! first opened `O_PATH` and looked at: only a regular file is opened for reading, so
//! a FIFO never blocks moat and a device is never opened; its size is checked against
//! the cap before a byte is read (a sparse file of a terabyte costs nothing to refuse)
//! and the read stops at the cap whatever the size said. It runs after every process
//! of the jail is reaped, in moat, so nothing can change the tree under the checks.
//!
//! Why moat and not the jail's init: init would have to keep privileges and code after
//! the program ends, and the copy would race whatever the program left running; the
//! parent reads a tree nobody can touch any more. A hard link to a file outside the
//! work dir cannot exist (links never cross mounts), so a regular file found here is
//! the program's own.

use crate::config::policy::{FileIn, FileOut};
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Why a file could not be copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileFault {
    /// There is no such file.
    Missing,
    /// It is not a regular file: the kind found (`a symlink`, `a FIFO`, …).
    NotRegular(&'static str),
    /// It is larger than the cap.
    TooLarge { size: u64, max: u64 },
    /// Reaching it would cross a mount (a file bound in, not written by the program).
    OtherMount,
    /// It could not be read.
    Unreadable(String),
}

impl std::fmt::Display for FileFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileFault::Missing => f.write_str("missing"),
            FileFault::NotRegular(kind) => write!(f, "not a regular file: {kind}"),
            FileFault::TooLarge { size, max } => {
                write!(f, "too large: {size} bytes, the cap is {max}")
            }
            FileFault::OtherMount => {
                f.write_str("not the program's: reaching it leaves the work dir's own mount")
            }
            FileFault::Unreadable(why) => write!(f, "cannot be read: {why}"),
        }
    }
}

/// One file read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub bytes: Vec<u8>,
    /// Its permission bits (an executable the program wrote stays executable).
    pub mode: u32,
}

/// What each file of `files` gave, in order. `put_in` are the files put into the work
/// dir: one put in with an executable mode was bound read-only over its name, so the
/// program could not change it, and with the jail gone its bind is gone too (the name
/// shows the empty file it was bound over): its bytes are the ones put in.
pub fn copy_out(
    dir: &OwnedFd,
    files: &[FileOut],
    put_in: &[FileIn],
) -> Vec<(PathBuf, Result<Copied, FileFault>)> {
    files
        .iter()
        .map(|f| {
            let bound = put_in
                .iter()
                .find(|p| p.name == f.name && p.mode & 0o111 != 0);
            let got = match bound {
                Some(p) if p.contents.len() as u64 > f.max => Err(FileFault::TooLarge {
                    size: p.contents.len() as u64,
                    max: f.max,
                }),
                Some(p) => Ok(Copied {
                    bytes: p.contents.to_vec(),
                    mode: p.mode & 0o555,
                }),
                None => copy_one(dir, f),
            };
            (f.name.clone(), got)
        })
        .collect()
}

const RESOLVE: u64 = libc::RESOLVE_BENEATH
    | libc::RESOLVE_NO_SYMLINKS
    | libc::RESOLVE_NO_MAGICLINKS
    | libc::RESOLVE_NO_XDEV;

fn openat2(dir: &OwnedFd, name: &CString, flags: libc::c_int) -> Result<OwnedFd, i32> {
    // SAFETY: an all-zero open_how is valid; the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    // openat2 refuses with O_PATH any flag beyond these; O_NOCTTY goes with reads.
    let extra = if flags & libc::O_PATH != 0 {
        0
    } else {
        libc::O_NOCTTY
    };
    how.flags = (flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra) as u64;
    how.resolve = RESOLVE;
    loop {
        // SAFETY: openat2 reads a NUL-terminated path and an open_how of the size
        // given; it returns a new descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                name.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a fresh descriptor owned by no one else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if e != libc::EINTR && e != libc::EAGAIN {
            return Err(e);
        }
    }
}

fn fault(errno: i32) -> FileFault {
    match errno {
        libc::ENOENT | libc::ENOTDIR => FileFault::Missing,
        // RESOLVE_NO_SYMLINKS and O_NOFOLLOW: a symlink on the way or at the end.
        libc::ELOOP => FileFault::NotRegular("a symlink (symlinks are never followed)"),
        libc::EXDEV => FileFault::OtherMount,
        e => FileFault::Unreadable(std::io::Error::from_raw_os_error(e).to_string()),
    }
}

fn kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symlink (symlinks are never followed)",
        _ => "not a plain file",
    }
}

fn fstat(fd: &OwnedFd) -> Result<libc::stat, FileFault> {
    // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor we own into a stack struct.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(fault(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    Ok(st)
}

fn copy_one(dir: &OwnedFd, f: &FileOut) -> Result<Copied, FileFault> {
    let name = CString::new(f.name.as_os_str().as_bytes())
        .map_err(|_| FileFault::Unreadable("the name holds a NUL byte".into()))?;
    // O_PATH opens nothing: a FIFO is not waited on, a device not opened.
    let path = openat2(dir, &name, libc::O_PATH).map_err(fault)?;
    let st = fstat(&path)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(FileFault::NotRegular(kind(st.st_mode)));
    }
    let size = st.st_size.max(0) as u64;
    if size > f.max {
        return Err(FileFault::TooLarge { size, max: f.max });
    }
    let file = openat2(dir, &name, libc::O_RDONLY | libc::O_NONBLOCK).map_err(fault)?;
    // The same file as looked at: nothing is alive to swap it, but check anyway.
    let again = fstat(&file)?;
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
        || again.st_mode & libc::S_IFMT != libc::S_IFREG
    {
        return Err(FileFault::NotRegular("replaced while being read"));
    }
    // The size said is the program's to choose (a sparse file within the cap costs it
    // nothing): memory moat cannot have is a fault of this file, never an abort.
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(size.min(f.max).saturating_add(1) as usize)
        .map_err(|_| FileFault::Unreadable(format!("moat cannot hold {size} bytes in memory")))?;
    std::fs::File::from(file)
        .take(f.max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FileFault::Unreadable(e.to_string()))?;
    if bytes.len() as u64 > f.max {
        return Err(FileFault::TooLarge {
            size: bytes.len() as u64,
            max: f.max,
        });
    }
    Ok(Copied {
        bytes,
        mode: st.st_mode & 0o7777,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dir(path: &Path) -> OwnedFd {
        std::fs::File::open(path).unwrap().into()
    }

    fn out(name: &str, max: u64) -> FileOut {
        FileOut {
            name: PathBuf::from(name),
            max,
        }
    }

    fn one(d: &OwnedFd, name: &str, max: u64) -> Result<Copied, FileFault> {
        copy_out(d, &[out(name, max)], &[]).remove(0).1
    }

    #[test]
    fn only_regular_files_beneath_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path();
        std::fs::write(p.join("ok"), b"12345").unwrap();
        std::fs::hard_link(p.join("ok"), p.join("hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", p.join("d")).unwrap();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::write(p.join("sub/in"), b"x").unwrap();
        nix::unistd::mkfifo(
            &p.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(p.join("sock")).unwrap();
        let sparse = std::fs::File::create(p.join("sparse")).unwrap();
        sparse.set_len(1 << 40).unwrap();
        let d = dir(p);

        let got = one(&d, "ok", 5).unwrap();
        assert_eq!(got.bytes, b"12345");
        assert_eq!(one(&d, "hard", 5).unwrap().bytes, b"12345");
        assert_eq!(one(&d, "sub/in", 1).unwrap().bytes, b"x");
        assert_eq!(
            one(&d, "ok", 4),
            Err(FileFault::TooLarge { size: 5, max: 4 })
        );
        assert_eq!(
            one(&d, "sparse", 1 << 20),
            Err(FileFault::TooLarge {
                size: 1 << 40,
                max: 1 << 20
            })
        );
        let symlink = FileFault::NotRegular("a symlink (symlinks are never followed)");
        assert_eq!(one(&d, "link", 1 << 20), Err(symlink.clone()));
        assert_eq!(one(&d, "d/passwd", 1 << 20), Err(symlink));
        assert_eq!(one(&d, "fifo", 10), Err(FileFault::NotRegular("a FIFO")));
        assert_eq!(one(&d, "sock", 10), Err(FileFault::NotRegular("a socket")));
        assert_eq!(
            one(&d, "sub", 10),
            Err(FileFault::NotRegular("a directory"))
        );
        assert_eq!(one(&d, "nope", 10), Err(FileFault::Missing));
        assert_eq!(one(&d, "ok/x", 10), Err(FileFault::Missing));
        // `..` never climbs out (names with it are refused before, this is the floor).
        assert_eq!(one(&d, "../x", 10), Err(FileFault::OtherMount));
        assert_eq!(one(&d, "sub/../../x", 10), Err(FileFault::OtherMount));
    }

    #[test]
    fn devices_are_never_opened_and_mounts_never_crossed() {
        let dev = dir(Path::new("/dev"));
        assert_eq!(
            one(&dev, "null", 10),
            Err(FileFault::NotRegular("a character device"))
        );
        let root = dir(Path::new("/"));
        assert_eq!(
            one(&root, "proc/version", 1 << 20),
            Err(FileFault::OtherMount)
        );
    }

    #[test]
    fn a_file_bound_in_gives_the_bytes_put_in() {
        let tmp = tempfile::tempdir().unwrap();
        // What the jail leaves under a bind that is gone: the empty file it covered.
        std::fs::write(tmp.path().join("a"), b"").unwrap();
        let put_in = [FileIn {
            name: PathBuf::from("a"),
            contents: b"\x7fELF...".to_vec().into(),
            mode: 0o755,
        }];
        let d = dir(tmp.path());
        let got = copy_out(&d, &[out("a", 100)], &put_in).remove(0).1.unwrap();
        assert_eq!(
            (got.bytes.as_slice(), got.mode),
            (&b"\x7fELF..."[..], 0o555)
        );
        let got = copy_out(&d, &[out("a", 3)], &put_in).remove(0).1;
        assert_eq!(got, Err(FileFault::TooLarge { size: 7, max: 3 }));
    }
}
