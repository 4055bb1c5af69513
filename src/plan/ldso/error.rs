//! Why a program's dependencies could not be resolved, each with what to do about it.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{} does not exist; check the program path", .path.display())]
    NotFound { path: PathBuf },

    #[error("{} cannot be executed: {reason}; point the profile at an executable file (chmod +x if it is yours)", .path.display())]
    NotExecutable { path: PathBuf, reason: String },

    #[error("{} is neither an ELF program nor a #! script; give the path of a compiled program or a script with a #! line", .path.display())]
    NotElf { path: PathBuf },

    #[error("{} is {found}; only x86-64 ELF programs (64-bit, little-endian) are supported, use an x86-64 build of it", .path.display())]
    WrongClass { path: PathBuf, found: String },

    #[error("interpreter {}, needed by {}, was not found; install it or fix the program's interpreter path", .interpreter.display(), .needed_by.display())]
    MissingInterpreter {
        interpreter: PathBuf,
        needed_by: PathBuf,
    },

    #[error("library {library}, needed by {}, was not found (searched: {}){}; install it, or add its directory to the profile's library_path",
        .needed_by.display(), join_paths(.searched), other_arch_note(.wrong_class))]
    MissingLibrary {
        library: String,
        needed_by: PathBuf,
        /// Directories searched in order (without the hwcaps subdirectories tried in
        /// each), with `/etc/ld.so.cache` at the point the cache was consulted; for a
        /// name containing `/`, that path.
        searched: Vec<PathBuf>,
        /// Files with the right name that ld.so skips because they are for another
        /// ELF class or machine (e.g. a 32-bit build).
        wrong_class: Vec<PathBuf>,
    },

    #[error("cannot read {}: {source}; check that it exists and is readable", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is unusable: {reason}; the kernel or the dynamic loader would refuse it as well, so repair, rebuild or reinstall it", .path.display())]
    Malformed { path: PathBuf, reason: String },

    #[error("{}: {reason}; run the innermost interpreter directly, or reduce the program's dependencies", .path.display())]
    TooDeep { path: PathBuf, reason: String },
}

pub(super) fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn other_arch_note(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        String::new()
    } else {
        format!(
            "; skipped because built for another architecture: {}",
            join_paths(paths)
        )
    }
}

pub(super) fn malformed(path: &Path, reason: impl Into<String>) -> ElfError {
    ElfError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(super) fn io_error(path: &Path, source: io::Error) -> ElfError {
    ElfError::Io {
        path: path.to_path_buf(),
        source,
    }
}
