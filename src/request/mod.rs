//! Requests: a judge's run of one or more programs, each in its own fresh jail with a
//! private work dir, described once and shared by every entry point (`moat exec`,
//! `moat batch`, the library).
//!
//! Owns: the request and response types and their JSON form (`wire`), the checks a
//! request must pass before anything runs (`check`), the cache of files between
//! commands and requests (`cache`), the pipes between commands and the proxy that
//! records them (`pipes`), running one request (`exec`) and a stream of them
//! (`batch`). May use: `report`, `watch`, `plan`, `config`. Decides no verdict: each
//! command's is its run's, but for `file_error`, which is about the files a request
//! asked for.

pub(crate) mod batch;
pub(crate) mod cache;
pub(crate) mod check;
pub(crate) mod exec;
pub(crate) mod pipes;
#[cfg(test)]
mod tests;
pub(crate) mod wire;

use crate::config::limits::Limits;
use crate::report::outcome::Outcome;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use batch::{batch, BatchOptions, BatchSummary};
pub use cache::{CacheFull, Cached, FileCache};
pub use exec::{exec, exec_with, ExecOptions};

/// The version of the request and response format this moat speaks.
pub const SCHEMA: u32 = 1;

/// The work dir's place when a command names none.
pub const DEFAULT_WORKDIR: &str = "/w";
/// The work dir's size when a command names none.
pub const DEFAULT_WORKDIR_SIZE: u64 = 64 << 20;

/// One request: commands, each in its own jail, optionally joined by pipes. Commands
/// joined by pipes start together; otherwise they run one after another, in order, so
/// a later one can use what an earlier one left in the cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Echoed in the response (a string or a number).
    pub id: Option<serde_json::Value>,
    /// The commands, at least one.
    pub commands: Vec<Command>,
    /// The pipes between commands.
    pub pipes: Vec<Pipe>,
}

/// One program to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The program and its arguments. A path with a `/` that lands in the work dir
    /// (`./a`) is a file put in; any other is found on the host, as for `moat run`.
    pub args: Vec<String>,
    /// The profile (a name or a path to a TOML file).
    pub profile: String,
    /// Added to the profile's environment.
    pub env: BTreeMap<String, String>,
    /// Over the profile's limits.
    pub limits: Limits,
    /// Where the work dir is inside the jail.
    pub workdir: PathBuf,
    /// The work dir's size (a tmpfs: everything put in and written there).
    pub workdir_size: u64,
    /// The working directory (default: the work dir).
    pub cwd: Option<PathBuf>,
    /// Where stdin comes from (default: nothing).
    pub stdin: Input,
    /// Where stdout goes (default: nowhere).
    pub stdout: Output,
    /// Where stderr goes (default: nowhere).
    pub stderr: Output,
    /// Files put into the work dir before the program starts, by name.
    pub files_in: BTreeMap<String, FileSource>,
    /// Files taken from the work dir after it ends.
    pub files_out: Vec<CopyOut>,
}

impl Command {
    /// A command with the defaults: the `default` profile, a 64 MiB work dir at `/w`,
    /// empty stdin, stdout and stderr discarded.
    pub fn new(args: &[&str]) -> Command {
        Command {
            args: args.iter().map(|a| a.to_string()).collect(),
            profile: "default".into(),
            env: BTreeMap::new(),
            limits: Limits::default(),
            workdir: PathBuf::from(DEFAULT_WORKDIR),
            workdir_size: DEFAULT_WORKDIR_SIZE,
            cwd: None,
            stdin: Input::Empty,
            stdout: Output::Discard,
            stderr: Output::Discard,
            files_in: BTreeMap::new(),
            files_out: Vec::new(),
        }
    }
}

/// Where a command's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Nothing: reads end at once.
    Empty,
    /// These bytes (`content` or `base64`).
    Bytes(Arc<[u8]>),
    /// A file put into the work dir (its name there).
    File(String),
    /// A cached file.
    Cached(String),
    /// The read end of a pipe (its name).
    Pipe(String),
}

/// Where a command's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Nowhere.
    Discard,
    /// Into the response, at most this many bytes: one more ends the run as
    /// `output_limit`, with exactly these kept.
    Collect(u64),
    /// A file of the work dir (its name there), which `files_out` can take.
    File(String),
    /// The write end of a pipe (its name).
    Pipe(String),
}

/// Where a file put into the work dir comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    /// These bytes (`content` or `base64`).
    Bytes {
        /// The bytes.
        data: Arc<[u8]>,
        /// Its permission bits (0644 unless given).
        mode: u32,
    },
    /// A host file, read by moat.
    Host {
        /// Its absolute path on the host.
        path: PathBuf,
        /// Its permission bits (default: the host file's, without set-id bits).
        mode: Option<u32>,
    },
    /// A cached file.
    Cached {
        /// Its id in the cache.
        id: String,
        /// Its permission bits (default: those it was cached with).
        mode: Option<u32>,
    },
}

/// A file to take from the work dir after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// Its name in the work dir.
    pub path: String,
    /// The most bytes taken (default: the work dir's size); a larger file is a
    /// `file_error`, never a cut copy.
    pub max: Option<u64>,
    /// A missing file is then no error.
    pub optional: bool,
    /// Whether it goes into the cache instead of the response.
    pub cache: CacheAs,
}

/// How a file taken out is cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheAs {
    /// Not cached: its bytes are in the response.
    No,
    /// Cached under an id moat picks, given in the response.
    Auto,
    /// Cached under this id (so a later command of the same stream can name it before
    /// the response is seen).
    Id(String),
}

/// A pipe between two commands (each in its own jail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipe {
    /// Its name, as commands' `{"pipe": NAME}` and the response name it.
    pub name: String,
    /// Through moat, which keeps up to this many bytes of what passed for the response;
    /// without it the pipe is the kernel's alone.
    pub record: Option<u64>,
    /// The writing end, when not named by a command's stdout or stderr.
    pub from: Option<PipeEnd>,
    /// The reading end, when not named by a command's stdin.
    pub to: Option<PipeEnd>,
}

/// One end of a pipe: a descriptor of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipeEnd {
    /// The command's index in `commands`.
    pub command: usize,
    /// The descriptor it has the end on.
    pub fd: i32,
}

/// A request that cannot run, and where in it the fault is: nothing ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct RequestError {
    /// The JSON path of the fault (`commands[1].stdin.pipe`); empty for the whole.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// `path.name` for a key that is a plain word, `path["a/b.c"]` for any other (a file
/// name with dots or slashes stays one step of the path).
pub(crate) fn key(path: &str, name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{name}")
    } else {
        format!("{path}[{}]", serde_json::Value::String(name.to_string()))
    }
}

impl RequestError {
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> RequestError {
        RequestError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What a request gave: one result per command, in order, and the recorded pipes.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The request's id.
    pub id: Option<serde_json::Value>,
    /// One per command, in the request's order (empty for a bad request).
    pub results: Vec<CommandResult>,
    /// What each recorded pipe carried.
    pub pipes: BTreeMap<String, Recorded>,
    /// Why nothing ran, for a bad request.
    pub error: Option<RequestError>,
}

/// One command's result: its run's whole report, and what it left.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    /// The report, as `moat run` writes it (status, exit code, times, memory, limits…).
    pub outcome: Outcome,
    /// stdout as collected, when it was.
    pub stdout: Option<Vec<u8>>,
    /// stderr as collected, when it was.
    pub stderr: Option<Vec<u8>>,
    /// The files taken out, by name.
    pub files_out: BTreeMap<String, FileOutResult>,
    /// The files that could not be put in or taken out, and why.
    pub file_errors: Vec<FileError>,
}

/// A file taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutResult {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// It went into the cache, under this id.
    Cached {
        /// Its id.
        id: String,
        /// Its size.
        size: u64,
    },
}

/// A file that could not be put in or taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// Its name in the work dir.
    pub path: String,
    /// Why (`missing`, `too large: …`, `not a regular file: a symlink …`).
    pub reason: String,
}

/// What passed through a recorded pipe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The first bytes, up to the pipe's `record` cap.
    pub bytes: Vec<u8>,
    /// How many bytes passed in all.
    pub total: u64,
}
