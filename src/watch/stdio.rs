//! The program's stdin, stdout and stderr as the child gets them: files where the run
//! names them, moat's own otherwise, and with an output cap pipes that the relay copies
//! to the real destination, counting.

use super::relay;
use crate::jail::sys;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    /// The pipes the output relay needs.
    #[error("cannot create the output relay's pipes: {0}")]
    Pipe(#[source] io::Error),
}

/// The wiring of one run.
pub struct Stdio {
    /// Descriptors for the child's 0, 1, 2 (-1: moat's own).
    pub child: [RawFd; 3],
    /// The pipes' write ends, which the parent must close once the child holds them.
    pub child_ends: Vec<OwnedFd>,
    pub relay: Vec<relay::Stream>,
    /// The files, kept open until the run ends.
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

impl Stdio {
    /// Opens what is named; with `relayed`, puts pipes between the program and its
    /// output destinations.
    pub fn prepare(
        stdin: Option<&Path>,
        stdout: Option<&Path>,
        stderr: Option<&Path>,
        relayed: bool,
    ) -> Result<Stdio, StdioError> {
        let stdin = stdin
            .map(|p| open_with("open the --stdin file", p, |p| File::open(p)))
            .transpose()?;
        let out_file = stdout
            .map(|p| open_with("create the --stdout file", p, create))
            .transpose()?;
        // One file for both (`>F 2>&1`): one open file description, so the streams are
        // written in the order they come, neither truncating nor overwriting the other.
        let shared = match (stdout, stderr, &out_file) {
            (Some(o), Some(e), Some(f)) => o == e || same_file(f, e),
            _ => false,
        };
        let err_file = if shared {
            None
        } else {
            stderr
                .map(|p| open_with("create the --stderr file", p, create))
                .transpose()?
        };
        let outputs = [out_file, err_file];
        let mut out = Stdio {
            child: [stdin.as_ref().map_or(-1, |f| f.as_raw_fd()), -1, -1],
            child_ends: Vec::new(),
            relay: Vec::new(),
            _files: Vec::new(),
        };
        for (i, file) in outputs.iter().enumerate() {
            if i == 1 && shared {
                // The very descriptor stdout got: one open file description, and with
                // a cap one pipe, so the relay sees the two streams in their order
                // (and counts them together, as stdout).
                out.child[2] = out.child[1];
                continue;
            }
            let dest = file.as_ref().map_or(i as RawFd + 1, |f| f.as_raw_fd());
            if relayed {
                let (from, to) = sys::pipe().map_err(StdioError::Pipe)?;
                out.child[i + 1] = to.as_raw_fd();
                out.child_ends.push(to);
                out.relay.push(relay::Stream { from, to: dest });
            } else if file.is_some() {
                out.child[i + 1] = dest;
            }
        }
        out._files = stdin
            .into_iter()
            .chain(outputs.into_iter().flatten())
            .collect();
        Ok(out)
    }
}
