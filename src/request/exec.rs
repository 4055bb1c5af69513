//! Running one request, as one linear sequence: check it (nothing runs if it is
//! wrong), load every command's policy, then for each group in order make its pipes,
//! run each command in its own jail from its own thread (proxies beside them), and
//! gather the results; cache what was asked to be cached on the way.

use super::cache::FileCache;
use super::check::{self, Schedule};
use super::pipes::{self, Plumbing};
use super::{
    CacheAs, Command, CommandResult, FileError, FileOutResult, FileSource, Input, Output, Recorded,
    Request, RequestError, Response,
};
use crate::config::policy::{FileIn, FileOut, Overrides, Policy, PolicyError, Workdir};
use crate::jail::spawn::JailError;
use crate::plan::ldso::cache::LdCache;
use crate::plan::Plan;
use crate::report::outcome::{ErrorKind, Outcome, Status};
use crate::watch::cancel::Cancel;
use crate::watch::files::FileFault;
use crate::watch::run::{self, Io, RunError, RunOptions};
use crate::watch::stdio;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How requests run, beyond what they say.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A delegated cgroup v2 directory to create each run's cgroup in.
    pub cgroup: Option<PathBuf>,
    /// Ends every run of the request (each then ends as `cancelled`).
    pub cancel: Option<Cancel>,
    /// Jails made ahead to run the commands in (see [`crate::Pool`]).
    pub pool: Option<std::sync::Arc<crate::jail::pool::Pool>>,
}

/// Runs a request with a cache of its own: files one command caches are there for the
/// later commands of the same request.
pub fn exec(request: &Request) -> Response {
    exec_with(request, &FileCache::default(), &ExecOptions::default())
}

/// Runs a request with `cache`, which holds files between requests for as long as the
/// caller keeps it. Returns when every command has ended and every jail is gone.
pub fn exec_with(request: &Request, cache: &FileCache, opts: &ExecOptions) -> Response {
    let ld = LdCache::load().unwrap_or_default();
    Shared {
        cache,
        opts,
        ld: &ld,
    }
    .exec(request)
}

/// What the requests of one `exec` or `batch` share.
pub(crate) struct Shared<'a> {
    pub cache: &'a FileCache,
    pub opts: &'a ExecOptions,
    /// The loader's cache, read once.
    pub ld: &'a LdCache,
}

/// What one group gave: each command's result and each recorded pipe's bytes, by index.
type GroupRun = (Vec<(usize, CommandResult)>, Vec<(usize, Recorded)>);

/// A request checked and its policies loaded: ready to run.
struct Ready<'r> {
    request: &'r Request,
    schedule: Schedule,
    policies: Vec<Policy>,
}

impl Shared<'_> {
    pub fn exec(&self, request: &Request) -> Response {
        let ready = match prepare(request) {
            Ok(r) => r,
            Err(e) => {
                return Response {
                    id: request.id.clone(),
                    results: Vec::new(),
                    pipes: BTreeMap::new(),
                    error: Some(e),
                }
            }
        };
        let mut results: Vec<Option<CommandResult>> = vec![None; request.commands.len()];
        let mut recorded = BTreeMap::new();
        for members in &ready.schedule.groups {
            let (got, pipes) = self.group(&ready, members);
            for (i, r) in got {
                results[i] = Some(r);
            }
            for (k, rec) in pipes {
                recorded.insert(request.pipes[k].name.clone(), rec);
            }
        }
        Response {
            id: request.id.clone(),
            results: results
                .into_iter()
                .map(|r| r.unwrap_or_else(|| not_run("the command was not run")))
                .collect(),
            pipes: recorded,
            error: None,
        }
    }

    /// Runs one group: its commands at once, each from its own thread (a jail is
    /// monitored by the thread that started it), its proxies beside them.
    fn group(&self, ready: &Ready<'_>, members: &[usize]) -> GroupRun {
        let mut plumbing = match pipes::make(&ready.request.pipes, &ready.schedule, members) {
            Ok(p) => p,
            Err(e) => {
                let why = format!("cannot create the request's pipes: {e}");
                return (
                    members.iter().map(|&i| (i, not_run(&why))).collect(),
                    Vec::new(),
                );
            }
        };
        let mut work: Vec<(usize, Vec<(i32, OwnedFd)>)> = members
            .iter()
            .map(|&i| (i, take_ends(&mut plumbing, i)))
            .collect();
        let proxies = std::mem::take(&mut plumbing.proxies);
        if work.len() == 1 && proxies.is_empty() {
            let (i, ends) = work.pop().unwrap_or_default();
            let r = self.command(&ready.request.commands[i], &ready.policies[i], ends);
            return (vec![(i, r)], Vec::new());
        }
        std::thread::scope(|scope| {
            let proxy_threads: Vec<_> = proxies
                .into_iter()
                .map(|(k, p)| (k, scope.spawn(move || p.run())))
                .collect();
            let command_threads: Vec<_> = work
                .into_iter()
                .map(|(i, ends)| {
                    let (c, p) = (&ready.request.commands[i], &ready.policies[i]);
                    (i, scope.spawn(move || self.command(c, p, ends)))
                })
                .collect();
            let results = command_threads
                .into_iter()
                .map(|(i, t)| {
                    let r = t
                        .join()
                        .unwrap_or_else(|_| not_run("moat failed while running the command"));
                    (i, r)
                })
                .collect();
            // Every jail is gone, so every proxy has seen its end.
            let recorded = proxy_threads
                .into_iter()
                .map(|(k, t)| (k, t.join().unwrap_or_default()))
                .collect();
            (results, recorded)
        })
    }

    /// Runs one command with its pipe ends; never fails, the result says what went
    /// wrong.
    fn command(&self, c: &Command, policy: &Policy, ends: Vec<(i32, OwnedFd)>) -> CommandResult {
        let mut file_errors = Vec::new();
        let files = self.files_in(c, &mut file_errors);
        let stdin = match &c.stdin {
            Input::Cached(id) => match self.cache.get(id) {
                Some(f) => Some(stdio::Input::Bytes(f.data)),
                None => {
                    file_errors.push(FileError {
                        path: "stdin".into(),
                        reason: format!("`{id}` is not in the cache"),
                    });
                    None
                }
            },
            _ => None,
        };
        if !file_errors.is_empty() {
            return CommandResult {
                file_errors,
                ..not_started(
                    ErrorKind::File,
                    "files to put in could not be had (see file_errors)",
                )
            };
        }
        let policy = match policy.clone().with_files_in(files) {
            Ok(p) => p,
            Err(e) => return not_started(ErrorKind::File, &e.to_string()),
        };
        let args: Vec<std::ffi::OsString> = c.args.iter().map(Into::into).collect();
        let plan = match Plan::build_with(policy, &args, self.ld) {
            Ok(p) => p,
            Err(e) => return not_started(ErrorKind::of_plan(&e), &e.to_string()),
        };
        let io = wire_io(c, stdin, ends);
        let opts = RunOptions {
            cgroup: self.opts.cgroup.clone(),
            cancel: self.opts.cancel.clone(),
            pool: self.opts.pool.clone(),
            ..RunOptions::default()
        };
        let ran = match run::run_io(&plan, io, &opts, None) {
            Ok(r) => r,
            Err(e) => return not_started(ErrorKind::Setup, &run_error(&e)),
        };
        let mut outcome = Outcome::from_run(&ran);
        let mut files_out = BTreeMap::new();
        for ((name, got), want) in ran.files_out.into_iter().zip(&c.files_out) {
            let path = name.display().to_string();
            let copied = match got {
                Ok(copied) => copied,
                Err(FileFault::Missing) if want.optional => continue,
                Err(fault) => {
                    file_errors.push(FileError {
                        path,
                        reason: fault.to_string(),
                    });
                    continue;
                }
            };
            let id = match &want.cache {
                CacheAs::No => {
                    files_out.insert(path, FileOutResult::Bytes(copied.bytes));
                    continue;
                }
                CacheAs::Auto => None,
                CacheAs::Id(id) => Some(id.as_str()),
            };
            let size = copied.bytes.len() as u64;
            match self.cache.insert(id, copied.bytes.into(), copied.mode) {
                Ok(id) => {
                    files_out.insert(path, FileOutResult::Cached { id, size });
                }
                Err(full) => file_errors.push(FileError {
                    path,
                    reason: full.to_string(),
                }),
            }
        }
        // The program did what it was asked, but what it had to leave is not there.
        if outcome.status == Status::Ok && !file_errors.is_empty() {
            outcome.status = Status::FileError;
        }
        let [stdout, stderr] = ran.collected;
        CommandResult {
            outcome,
            stdout,
            stderr,
            files_out,
            file_errors,
        }
    }

    /// The files to put in, read from where they are; a file that cannot be had, or
    /// does not fit the work dir, is a file error naming it.
    fn files_in(&self, c: &Command, errors: &mut Vec<FileError>) -> Vec<FileIn> {
        let mut out = Vec::new();
        let mut used: u64 = 0;
        for (name, source) in &c.files_in {
            let room = c.workdir_size.saturating_sub(used);
            let got = match source {
                FileSource::Bytes { data, mode } => Ok((data.clone(), *mode)),
                FileSource::Cached { id, mode } => match self.cache.get(id) {
                    Some(f) => Ok((f.data, mode.unwrap_or(f.mode))),
                    None => Err(format!("`{id}` is not in the cache")),
                },
                FileSource::Host { path, mode } => {
                    read_host(path, room).map(|(d, m)| (d, mode.unwrap_or(m)))
                }
            };
            let (contents, mode) = match got {
                Ok(g) => g,
                Err(reason) => {
                    errors.push(FileError {
                        path: name.clone(),
                        reason,
                    });
                    continue;
                }
            };
            // tmpfs counts whole pages.
            let pages = (contents.len() as u64).div_ceil(4096) * 4096;
            if pages > room {
                errors.push(FileError {
                    path: name.clone(),
                    reason: format!(
                        "does not fit the work dir: {} bytes, and {room} of its {} are left",
                        contents.len(),
                        c.workdir_size
                    ),
                });
                continue;
            }
            used += pages;
            out.push(FileIn {
                name: PathBuf::from(name),
                contents,
                mode,
            });
        }
        out
    }
}

/// Checks the request and loads each command's policy: a fault anywhere is the
/// request's, and nothing runs.
fn prepare(request: &Request) -> Result<Ready<'_>, RequestError> {
    let schedule = check::check(request)?;
    let policies = request
        .commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Policy::load(&c.profile, &overrides(c)).map_err(|e| {
                let path = match &e {
                    PolicyError::Profile(_) => format!("commands[{i}].profile"),
                    PolicyError::Option { option, .. } => {
                        format!("commands[{i}].{}", option.trim_start_matches('-'))
                    }
                };
                RequestError::at(path, e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ready {
        request,
        schedule,
        policies,
    })
}

fn overrides(c: &Command) -> Overrides {
    Overrides {
        binds: Vec::new(),
        cwd: c.cwd.clone(),
        env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        limits: c.limits.clone(),
        learn: false,
        workdir: Some(Workdir {
            path: c.workdir.clone(),
            size: c.workdir_size,
            files_in: Vec::new(),
            files_out: c
                .files_out
                .iter()
                .map(|f| FileOut {
                    name: PathBuf::from(&f.path),
                    max: f.max.unwrap_or(c.workdir_size.min(check::MAX_KEEP)),
                })
                .collect(),
        }),
    }
}

/// The ends of pipes command `i` gets, by descriptor.
fn take_ends(plumbing: &mut Plumbing, i: usize) -> Vec<(i32, OwnedFd)> {
    let keys: Vec<(usize, i32)> = plumbing
        .ends
        .keys()
        .filter(|(c, _)| *c == i)
        .copied()
        .collect();
    keys.into_iter()
        .filter_map(|k| plumbing.ends.remove(&k).map(|fd| (k.1, fd)))
        .collect()
}

/// The command's descriptors as the run takes them: its stdio as asked, pipe ends on
/// the descriptors they name.
fn wire_io(c: &Command, cached_stdin: Option<stdio::Input>, ends: Vec<(i32, OwnedFd)>) -> Io {
    let in_workdir = |name: &str| c.workdir.join(name);
    let mut io = Io {
        stdin: match (&c.stdin, cached_stdin) {
            (_, Some(cached)) => cached,
            (Input::Bytes(b), _) => stdio::Input::Bytes(b.clone()),
            (Input::File(name), _) => stdio::Input::Workdir(in_workdir(name)),
            _ => stdio::Input::Null,
        },
        stdout: stdio::Output::Null,
        stderr: stdio::Output::Null,
        fds: Vec::new(),
    };
    for (slot, out) in [(&mut io.stdout, &c.stdout), (&mut io.stderr, &c.stderr)] {
        *slot = match out {
            Output::Collect(cap) => stdio::Output::Collect(*cap),
            Output::File(name) => stdio::Output::Workdir(in_workdir(name)),
            Output::Discard | Output::Pipe(_) => stdio::Output::Null,
        };
    }
    for (fd, end) in ends {
        match fd {
            0 => io.stdin = stdio::Input::Fd(end),
            1 => io.stdout = stdio::Output::Fd(end),
            2 => io.stderr = stdio::Output::Fd(end),
            _ => io.fds.push((fd, end)),
        }
    }
    io
}

/// A host file to put in: moat reads it (the request is trusted, the program is not),
/// at most `room` bytes, only if it is a regular file (a FIFO would block). Its mode
/// without set-id and sticky bits.
fn read_host(path: &Path, room: u64) -> Result<(Arc<[u8]>, u32), String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("the host file {} is missing", path.display()),
            _ => format!("the host file {} cannot be read: {e}", path.display()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("the host file {} cannot be read: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "the host file {} is not a regular file",
            path.display()
        ));
    }
    if meta.size().div_ceil(4096) * 4096 > room {
        return Err(format!(
            "does not fit the work dir: the host file {} has {} bytes, and {room} are left",
            path.display(),
            meta.size()
        ));
    }
    let mut data = Vec::with_capacity(meta.size() as usize);
    file.take(room)
        .read_to_end(&mut data)
        .map_err(|e| format!("the host file {} cannot be read: {e}", path.display()))?;
    Ok((data.into(), meta.mode() & 0o777))
}

/// A run that could not start, in words (a host without user namespaces is told how
/// to fix it, as `moat check` would).
fn run_error(e: &RunError) -> String {
    match e {
        RunError::Jail(JailError::Namespaces { errno }) => format!(
            "cannot create the jail's namespaces: {}",
            crate::check::explain_userns_failure(*errno)
        ),
        e => e.to_string(),
    }
}

fn not_started(kind: ErrorKind, message: &str) -> CommandResult {
    CommandResult {
        outcome: Outcome::setup_error(kind, message.to_string()),
        stdout: None,
        stderr: None,
        files_out: BTreeMap::new(),
        file_errors: Vec::new(),
    }
}

fn not_run(message: &str) -> CommandResult {
    not_started(ErrorKind::Setup, message)
}
