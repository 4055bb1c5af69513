//! The program's descriptors as the child gets them: its stdin, stdout and stderr
//! (moat's own, host files, bytes in memory, work-dir files, pipe ends, or pipes the
//! relay copies and counts), plus any further pipe ends a request gives it.

use super::relay::{self, Sink};
use crate::jail::spawn::{Wiring, WorkdirOpen};
use crate::jail::sys;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the program's stdin comes from.
#[derive(Debug, Default)]
pub enum Input {
    /// moat's own stdin.
    #[default]
    Inherit,
    /// A host file.
    File(PathBuf),
    /// These bytes, from a sealed memory file (seekable, like a file, and never
    /// changed by the program).
    Bytes(Arc<[u8]>),
    /// A file of the work dir (a path inside the jail), opened there.
    Workdir(PathBuf),
    /// An open descriptor, e.g. a pipe's read end; the run owns it and closes its copy
    /// once the jail holds it.
    Fd(OwnedFd),
    /// Nothing: reads end at once.
    Null,
}

/// Where the program's stdout or stderr goes.
#[derive(Debug, Default)]
pub enum Output {
    /// moat's own stdout or stderr.
    #[default]
    Inherit,
    /// A host file, created or truncated.
    File(PathBuf),
    /// Into memory, at most this many bytes: one byte more ends the run as
    /// `output_limit`, with exactly this many kept.
    Collect(u64),
    /// A file of the work dir (a path inside the jail), created there.
    Workdir(PathBuf),
    /// An open descriptor, e.g. a pipe's write end; the run owns it.
    Fd(OwnedFd),
    /// Nowhere.
    Null,
}

/// A file of the run's stdio that could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// A file named for stdin, stdout or stderr.
    #[error("cannot {what} {}: {source}", .path.display())]
    File {
        /// `open the --stdin file`, `create the --stdout file`, …
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: io::Error,
    },
    /// The pipes the output relay needs, or the memory file stdin is read from.
    #[error("cannot create {what}: {source}")]
    Pipe {
        /// What was being made.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

/// The wiring of one run.
pub struct Stdio {
    /// The program's descriptors, as the jail takes them.
    pub wiring: Wiring,
    /// Descriptors only the jail may keep (pipe write ends above all): the parent
    /// closes them once the jail holds its copies, so readers see the end of file.
    pub child_ends: Vec<OwnedFd>,
    pub relay: Vec<relay::Stream>,
    /// Host files the relay writes to, kept open until the run ends.
    _files: Vec<File>,
}

fn open_with(
    what: &'static str,
    path: &Path,
    f: impl FnOnce(&Path) -> io::Result<File>,
) -> Result<File, StdioError> {
    f(path).map_err(|source| StdioError::File {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `path` names the file `file` is open on.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// A memory file holding `bytes`, sealed against any change and at offset 0.
fn memory_file(bytes: &[u8]) -> io::Result<File> {
    let name = c"moat-stdin";
    // SAFETY: memfd_create with a NUL-terminated name and a flags word.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by no one else.
    let file = unsafe { File::from_raw_fd(fd) };
    io::Write::write_all(&mut &file, bytes)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl and lseek on the descriptor just made.
    unsafe {
        if libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) < 0
            || libc::lseek(file.as_raw_fd(), 0, libc::SEEK_SET) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

impl Stdio {
    /// Opens and makes what is named. With `relayed` (an output limit), output to moat's
    /// own streams and to files goes through pipes the relay copies, counting; collected
    /// output always does. `extra` are further descriptors (target, what it is).
    pub fn prepare(
        stdin: Input,
        outputs: [Output; 2],
        extra: Vec<(RawFd, OwnedFd)>,
        relayed: bool,
    ) -> Result<Stdio, StdioError> {
        let mut out = Stdio {
            wiring: Wiring::default(),
            child_ends: Vec::new(),
            relay: Vec::new(),
            _files: Vec::new(),
        };
        match stdin {
            Input::Inherit => out.wiring.fds.push((0, 0)),
            Input::File(p) => {
                let f = open_with("open the --stdin file", &p, |p| File::open(p))?;
                out.give(0, f.into());
            }
            Input::Null => {
                let f = open_with("open", Path::new("/dev/null"), |p| File::open(p))?;
                out.give(0, f.into());
            }
            Input::Bytes(b) => {
                let f = memory_file(&b).map_err(|source| StdioError::Pipe {
                    what: "the memory file for stdin",
                    source,
                })?;
                out.give(0, f.into());
            }
            Input::Workdir(p) => out.wiring.opens.push((0, WorkdirOpen::Read(p))),
            Input::Fd(fd) => out.give(0, fd),
        }
        let [stdout, stderr] = outputs;
        // One host file for both (`>F 2>&1`), or one work-dir file for both: one open
        // file description, so the streams are written in the order they come, neither
        // truncating nor overwriting the other.
        let mut stdout_file = None;
        if let Output::File(p) = &stdout {
            stdout_file = Some(open_with("create the --stdout file", p, create)?);
        }
        let shared = match (&stdout, &stderr, &stdout_file) {
            (Output::File(o), Output::File(e), Some(f)) => o == e || same_file(f, e),
            (Output::Workdir(o), Output::Workdir(e), _) => o == e,
            _ => false,
        };
        for (i, output) in [stdout, stderr].into_iter().enumerate() {
            let target = i as RawFd + 1;
            if i == 1 && shared {
                out.share_stdout(target);
                continue;
            }
            let dest: Option<File> = match output {
                Output::Inherit => None,
                Output::File(_) if i == 0 => stdout_file.take(),
                Output::File(p) => Some(open_with("create the --stderr file", &p, create)?),
                Output::Null => Some(open_with("open", Path::new("/dev/null"), create)?),
                Output::Collect(cap) => {
                    out.relay_into(target, i, Sink::Memory { cap })?;
                    continue;
                }
                Output::Workdir(p) => {
                    out.wiring.opens.push((target, WorkdirOpen::Write(p)));
                    continue;
                }
                Output::Fd(fd) => {
                    out.give(target, fd);
                    continue;
                }
            };
            match (dest, relayed) {
                (None, false) => out.wiring.fds.push((target, target)),
                (None, true) => out.relay_into(target, i, Sink::Fd(target))?,
                (Some(f), false) => out.give(target, f.into()),
                (Some(f), true) => {
                    out.relay_into(target, i, Sink::Fd(f.as_raw_fd()))?;
                    out._files.push(f);
                }
            }
        }
        for (target, fd) in extra {
            out.give(target, fd);
        }
        Ok(out)
    }

    /// `fd` becomes the program's `target`; the parent keeps it only until the jail
    /// has its copy.
    fn give(&mut self, target: RawFd, fd: OwnedFd) {
        self.wiring.fds.push((target, fd.as_raw_fd()));
        self.child_ends.push(fd);
    }

    /// The program's `target` writes into a pipe the relay reads into `sink`.
    fn relay_into(&mut self, target: RawFd, slot: usize, sink: Sink) -> Result<(), StdioError> {
        let (from, to) = sys::pipe().map_err(|source| StdioError::Pipe {
            what: "the output relay's pipes",
            source,
        })?;
        self.give(target, to);
        self.relay.push(relay::Stream {
            from,
            to: sink,
            slot,
        });
        Ok(())
    }

    /// stderr becomes the very descriptor stdout got: one open file description, and
    /// through the relay one pipe, so the streams keep their order (and count
    /// together, as stdout).
    fn share_stdout(&mut self, target: RawFd) {
        if let Some(&(_, source)) = self.wiring.fds.iter().find(|(t, _)| *t == 1) {
            self.wiring.fds.push((target, source));
        } else {
            self.wiring.opens.push((target, WorkdirOpen::SameAs(1)));
        }
    }
}
