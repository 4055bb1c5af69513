//! go-judge's REST request and result on the wire, and their translation to moat's own
//! [`Request`] and back. The field names, units (ns, bytes), status strings and the
//! order of a result's keys are go-judge's, so its clients work unchanged; what moat
//! knows beyond them (its own verdict, the violation, how each limit was enforced, the
//! profile) goes under a `moat` key that those clients ignore.
//!
//! Where the two differ, moat's rules win and the request is refused with the JSON path
//! of the fault rather than half-served: no host file is written (`files` outputs are
//! collectors or `/dev/null`), no `tty`, copy-in only into the work dir `/w`, no
//! symlinks put in, and host `src` files only under the server's `--src-prefix`.

use crate::report::verdict::Status;
use crate::request::{
    CacheAs, Command, CommandResult, CopyOut, FileCache, FileOutResult, FileSource, Input, Output,
    Pipe, PipeEnd, Request, Response,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `POST /run`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GjRequest {
    pub request_id: Option<String>,
    pub cmd: Vec<GjCmd>,
    pub pipe_mapping: Vec<GjPipe>,
}

/// One command of a request.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GjCmd {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub files: Vec<Option<GjFile>>,
    pub tty: bool,
    pub cpu_limit: u64,
    pub real_cpu_limit: u64,
    pub clock_limit: u64,
    pub memory_limit: u64,
    pub stack_limit: u64,
    pub proc_limit: u64,
    pub cpu_rate_limit: u64,
    pub cpu_set_limit: String,
    pub strict_memory_limit: bool,
    pub data_segment_limit: bool,
    pub address_space_limit: bool,
    pub copy_in: BTreeMap<String, GjFile>,
    pub copy_out: Vec<String>,
    pub copy_out_cached: Vec<String>,
    pub copy_out_max: u64,
    pub copy_out_truncate: bool,
    pub copy_out_dir: String,
    /// moat's own: the profile to run under (a name or a path), instead of the
    /// server's default.
    pub moat_profile: Option<String>,
}

/// A file of `files` or `copyIn`: which kind it is is told by the first key present,
/// in go-judge's order (`src`, `content`, `fileId`, then `name` with `max`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GjFile {
    pub src: Option<String>,
    pub content: Option<String>,
    pub file_id: Option<String>,
    pub name: Option<String>,
    pub max: Option<i64>,
    pub symlink: Option<String>,
    pub stream_in: Option<bool>,
    pub stream_out: Option<bool>,
    pub pipe: Option<bool>,
}

/// One pipe between two commands' descriptors.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GjPipe {
    #[serde(rename = "in")]
    pub from: GjEnd,
    #[serde(rename = "out")]
    pub to: GjEnd,
    pub name: Option<String>,
    pub max: Option<i64>,
    pub proxy: bool,
    pub disable_zero_copy: bool,
}

/// A command's descriptor.
#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(default)]
pub struct GjEnd {
    pub index: usize,
    pub fd: i32,
}

/// What the server lets requests use.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The profile of a command that names none.
    pub profile: String,
    /// Host directories whose files a request may copy in by `src`; `/dev/null` is
    /// always allowed (as empty input).
    pub src_prefix: Vec<PathBuf>,
    /// The most bytes of one host `src` file.
    pub max_src: u64,
}

/// A fault of a request, answered before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// 400 for a request that is wrong, 500 for one naming what the server lacks (an
    /// unknown file id), as go-judge answers.
    pub status: u16,
    /// The JSON path of the fault (`cmd[0].files[1]`) and what is wrong.
    pub message: String,
}

fn bad(path: impl std::fmt::Display, message: impl std::fmt::Display) -> Fault {
    Fault {
        status: 400,
        message: format!("{path}: {message}"),
    }
}

/// What a translated request needs to give its results back in go-judge's shape.
#[derive(Debug, Default)]
pub struct Shape {
    /// Per command: (stdout collector name, stderr collector name).
    collectors: Vec<[Option<(String, u64)>; 2]>,
    /// Per command: collector names whose bytes go to the file store.
    cached_collectors: Vec<Vec<String>>,
    /// Per command: the profile it ran under.
    profiles: Vec<String>,
    /// Recorded pipes: (pipe name, the writing command, the name in its `files`).
    recorded: Vec<(String, usize, String)>,
    /// Per command: the work-dir file both stdout and stderr were written to, when they
    /// share a collector.
    shared: Vec<Option<String>>,
}

/// The default per-file copy-out cap (go-judge's `-copy-out-limit`).
const DEFAULT_COPY_OUT_MAX: u64 = 256 << 20;
/// The work dir's size (go-judge's tmpfs `size=128m`).
const WORKDIR_SIZE: u64 = 128 << 20;

/// Parses a body, naming the path of a type fault.
pub fn parse(body: &[u8]) -> Result<GjRequest, Fault> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Fault {
            status: 400,
            message: if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        }
    })
}

/// Translates a go-judge request into moat's.
pub fn translate(
    req: &GjRequest,
    rules: &Rules,
    store: &FileCache,
) -> Result<(Request, Shape), Fault> {
    if req.cmd.is_empty() {
        return Err(Fault {
            status: 400,
            message: "no cmd provided".into(),
        });
    }
    let mut out = Request {
        id: req.request_id.clone().map(Value::String),
        ..Request::default()
    };
    let mut shape = Shape::default();
    for (i, c) in req.cmd.iter().enumerate() {
        let (cmd, collectors, shared) = command(c, &format!("cmd[{i}]"), rules, store)?;
        let cached: Vec<String> = c
            .copy_out_cached
            .iter()
            .map(|n| n.trim_end_matches('?').to_string())
            .filter(|n| collectors.iter().flatten().any(|(c, _)| c == n))
            .collect();
        shape.profiles.push(cmd.profile.clone());
        out.commands.push(cmd);
        shape.collectors.push(collectors);
        shape.cached_collectors.push(cached);
        shape.shared.push(shared);
    }
    // go-judge joins commands by pipes only when there are several.
    if req.cmd.len() > 1 {
        for (k, p) in req.pipe_mapping.iter().enumerate() {
            let path = format!("pipeMapping[{k}]");
            for (end, e) in [("in", p.from), ("out", p.to)] {
                let Some(c) = req.cmd.get(e.index) else {
                    return Err(bad(
                        format!("{path}.{end}.index"),
                        format!("there is no cmd[{}]", e.index),
                    ));
                };
                if c.files.get(e.fd as usize).is_some_and(Option::is_some) {
                    return Err(bad(
                        format!("{path}.{end}"),
                        format!(
                            "fd {} of cmd[{}] is given in its files; make it null there",
                            e.fd, e.index
                        ),
                    ));
                }
            }
            let name = format!("gojudge-pipe-{k}");
            let record = match (p.proxy, &p.name) {
                (true, Some(n)) => {
                    shape.recorded.push((name.clone(), p.from.index, n.clone()));
                    Some(p.max.unwrap_or(0).max(0) as u64)
                }
                _ => None,
            };
            out.pipes.push(Pipe {
                name,
                record,
                from: Some(PipeEnd {
                    command: p.from.index,
                    fd: p.from.fd,
                }),
                to: Some(PipeEnd {
                    command: p.to.index,
                    fd: p.to.fd,
                }),
            });
        }
    }
    Ok((out, shape))
}

type Collectors = [Option<(String, u64)>; 2];

fn command(
    c: &GjCmd,
    path: &str,
    rules: &Rules,
    store: &FileCache,
) -> Result<(Command, Collectors, Option<String>), Fault> {
    if c.args.is_empty() {
        return Err(bad(
            format!("{path}.args"),
            "give the program and its arguments",
        ));
    }
    if c.tty {
        return Err(bad(
            format!("{path}.tty"),
            "a terminal is not served by moat",
        ));
    }
    let mut args = c.args.clone();
    // A program named without a slash is looked for in the work dir first (as go-judge
    // does), then on the host's PATH.
    if !args[0].contains('/') && c.copy_in.contains_key(&args[0]) {
        args[0] = format!("./{}", args[0]);
    }
    let mut cmd = Command::new(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.profile = c
        .moat_profile
        .clone()
        .unwrap_or_else(|| rules.profile.clone());
    cmd.workdir_size = WORKDIR_SIZE;
    for (k, e) in c.env.iter().enumerate() {
        let Some((key, value)) = e.split_once('=') else {
            return Err(bad(
                format!("{path}.env[{k}]"),
                format!("{e:?} is not KEY=VALUE"),
            ));
        };
        cmd.env.insert(key.to_string(), value.to_string());
    }
    // Limits: go-judge's zero is "not given" here, so the profile's limit holds.
    let ns = Duration::from_nanos;
    let clock = if c.real_cpu_limit > 0 {
        c.real_cpu_limit
    } else {
        c.clock_limit
    };
    if c.cpu_limit > 0 {
        cmd.limits.cpu_time = Some(ns(c.cpu_limit));
    }
    if clock > 0 {
        cmd.limits.wall_time = Some(ns(clock));
    } else if c.cpu_limit > 0 {
        // go-judge: without a clock limit, the CPU limit is the clock limit too.
        cmd.limits.wall_time = Some(ns(c.cpu_limit));
    }
    if c.memory_limit > 0 {
        cmd.limits.memory = Some(c.memory_limit);
        if c.address_space_limit {
            cmd.limits.address_space = Some(c.memory_limit);
        }
    }
    if c.stack_limit > 0 {
        cmd.limits.stack = Some(c.stack_limit);
    }
    if c.proc_limit > 0 {
        cmd.limits.processes = Some(c.proc_limit);
    }
    // The descriptors.
    let mut collectors: Collectors = [None, None];
    for (fd, f) in c.files.iter().enumerate() {
        let fpath = format!("{path}.files[{fd}]");
        let Some(f) = f else { continue };
        match fd {
            0 => cmd.stdin = input(f, &fpath, rules, store)?,
            1 | 2 => {
                if let Some((name, max)) = collector(f) {
                    collectors[fd - 1] = Some((name, max));
                } else if f.src.as_deref() == Some("/dev/null") {
                    // Discarded, the default.
                } else {
                    return Err(bad(
                        fpath,
                        "an output is a collector {\"name\", \"max\"} or {\"src\": \"/dev/null\"}",
                    ));
                }
            }
            _ => {
                return Err(bad(
                    fpath,
                    "moat gives a command files on fds 0 to 2; make this null and join it with pipeMapping",
                ))
            }
        }
    }
    let mut shared = None;
    match &collectors {
        [Some((a, max)), Some((b, _))] if a == b => {
            // Both streams into one file of the work dir, as go-judge does.
            cmd.stdout = Output::File(a.clone());
            cmd.stderr = Output::File(a.clone());
            cmd.files_out.push(CopyOut {
                path: a.clone(),
                max: Some(*max),
                optional: true,
                cache: CacheAs::No,
            });
            shared = Some(a.clone());
        }
        _ => {
            if let Some((_, max)) = &collectors[0] {
                cmd.stdout = Output::Collect(*max);
            }
            if let Some((_, max)) = &collectors[1] {
                cmd.stderr = Output::Collect(*max);
            }
        }
    }
    for (name, f) in &c.copy_in {
        let fpath = crate::request::key(&format!("{path}.copyIn"), name);
        let inside = match name.strip_prefix("/w/") {
            Some(rest) => rest.to_string(),
            None if name.starts_with('/') => {
                return Err(bad(
                    fpath,
                    "moat copies files into the work dir /w only: name it relative to /w",
                ))
            }
            None => name.clone(),
        };
        cmd.files_in
            .insert(inside, file_in(f, &fpath, rules, store)?);
    }
    let max = if c.copy_out_max > 0 {
        c.copy_out_max
    } else {
        DEFAULT_COPY_OUT_MAX
    };
    let is_collector = |n: &str| collectors.iter().flatten().any(|(c, _)| c == n);
    for (list, cache) in [(&c.copy_out, false), (&c.copy_out_cached, true)] {
        for name in list.iter() {
            let (name, optional) = match name.strip_suffix('?') {
                Some(n) => (n, true),
                None => (name.as_str(), false),
            };
            // A collector's output is always in the result (cached: see `Shape`).
            if is_collector(name) {
                continue;
            }
            cmd.files_out.push(CopyOut {
                path: name.to_string(),
                max: Some(max),
                optional,
                cache: if cache { CacheAs::Auto } else { CacheAs::No },
            });
        }
    }
    Ok((cmd, collectors, shared))
}

fn collector(f: &GjFile) -> Option<(String, u64)> {
    if f.src.is_some() || f.content.is_some() || f.file_id.is_some() {
        return None;
    }
    match (&f.name, f.max) {
        (Some(n), Some(m)) => Some((n.clone(), m.max(0) as u64)),
        _ => None,
    }
}

fn host_file(src: &str, path: &str, rules: &Rules) -> Result<PathBuf, Fault> {
    let p = Path::new(src);
    if !p.is_absolute() {
        return Err(bad(path, format!("src {src:?} is not an absolute path")));
    }
    let real = p
        .canonicalize()
        .map_err(|e| bad(path, format!("src {src:?}: {e}")))?;
    if !rules.src_prefix.iter().any(|d| real.starts_with(d)) {
        return Err(bad(
            path,
            if rules.src_prefix.is_empty() {
                format!("src {src:?}: this server copies in no host file (start it with --src-prefix DIR)")
            } else {
                format!(
                    "src {src:?} is not under --src-prefix ({})",
                    rules
                        .src_prefix
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
        ));
    }
    Ok(real)
}

fn known_id(id: &str, store: &FileCache) -> Result<(), Fault> {
    if store.get(id).is_none() {
        return Err(Fault {
            status: 500,
            message: format!("file does not exists with id: {id:?}"),
        });
    }
    Ok(())
}

fn input(f: &GjFile, path: &str, rules: &Rules, store: &FileCache) -> Result<Input, Fault> {
    if let Some(src) = &f.src {
        if src == "/dev/null" {
            return Ok(Input::Empty);
        }
        let real = host_file(src, path, rules)?;
        let meta = std::fs::metadata(&real).map_err(|e| bad(path, format!("src {src:?}: {e}")))?;
        if !meta.is_file() || meta.len() > rules.max_src {
            return Err(bad(
                path,
                format!(
                    "src {src:?} is not a regular file of at most {} bytes",
                    rules.max_src
                ),
            ));
        }
        let data = std::fs::read(&real).map_err(|e| bad(path, format!("src {src:?}: {e}")))?;
        return Ok(Input::Bytes(data.into()));
    }
    if let Some(content) = &f.content {
        return Ok(Input::Bytes(content.as_bytes().to_vec().into()));
    }
    if let Some(id) = &f.file_id {
        known_id(id, store)?;
        return Ok(Input::Cached(id.clone()));
    }
    Err(bad(
        path,
        "file type is not valid for stdin: give src, content or fileId",
    ))
}

fn file_in(f: &GjFile, path: &str, rules: &Rules, store: &FileCache) -> Result<FileSource, Fault> {
    if f.symlink.is_some() {
        return Err(bad(path, "moat puts no symlink into the work dir"));
    }
    if let Some(src) = &f.src {
        let real = host_file(src, path, rules)?;
        return Ok(FileSource::Host {
            path: real,
            mode: None,
        });
    }
    if let Some(content) = &f.content {
        return Ok(FileSource::Bytes {
            data: content.as_bytes().to_vec().into(),
            mode: 0o644,
        });
    }
    if let Some(id) = &f.file_id {
        known_id(id, store)?;
        return Ok(FileSource::Cached {
            id: id.clone(),
            mode: None,
        });
    }
    Err(bad(
        path,
        "file type is not valid for copyIn: give src, content or fileId",
    ))
}

/// go-judge's status for moat's verdict.
pub fn status_string(s: Status) -> &'static str {
    match s {
        Status::Ok => "Accepted",
        Status::NonzeroExit => "Nonzero Exit Status",
        Status::Signaled => "Signalled",
        Status::Violation => "Dangerous Syscall",
        Status::CpuTimeLimit | Status::WallTimeLimit => "Time Limit Exceeded",
        Status::MemoryLimit => "Memory Limit Exceeded",
        Status::OutputLimit => "Output Limit Exceeded",
        Status::FileError => "File Error",
        Status::SetupError | Status::Cancelled => "Internal Error",
    }
}

fn file_error(name: &str, reason: &str) -> Value {
    let (kind, message) = if reason == "missing" {
        (
            "CopyOutOpen",
            format!("open {name}: no such file or directory"),
        )
    } else if reason.starts_with("too large") {
        ("CopyOutSizeExceeded", format!("{name}: {reason}"))
    } else if reason.starts_with("not a regular file") {
        ("CopyOutOpen", format!("{name} is not a regular file"))
    } else if reason.contains("cache") {
        ("CopyOutCreateFile", format!("{name}: {reason}"))
    } else {
        ("CopyInOpenFile", format!("{name}: {reason}"))
    };
    json!({"name": name, "type": kind, "message": message})
}

/// The results of a request, as go-judge's `POST /run` gives them: an array with one
/// result per command.
pub fn results(resp: &Response, shape: &Shape, store: &FileCache) -> Value {
    let mut all = Vec::new();
    for (i, r) in resp.results.iter().enumerate() {
        all.push(result(r, i, resp, shape, store));
    }
    Value::Array(all)
}

fn result(r: &CommandResult, i: usize, resp: &Response, shape: &Shape, store: &FileCache) -> Value {
    let o = &r.outcome;
    let mut status = o.status;
    let mut files = Map::new();
    let mut ids = Map::new();
    let mut errors = Vec::new();
    let collectors = shape.collectors.get(i).cloned().unwrap_or_default();
    let cached = shape.cached_collectors.get(i).cloned().unwrap_or_default();
    let put =
        |name: &str, bytes: &[u8], files: &mut Map<String, Value>, ids: &mut Map<String, Value>| {
            if cached.iter().any(|c| c == name) {
                if let Ok(id) = store.insert(None, bytes.to_vec().into(), 0o644) {
                    store.name(&id, name);
                    ids.insert(name.to_string(), Value::String(id));
                    return;
                }
            }
            files.insert(
                name.to_string(),
                Value::String(String::from_utf8_lossy(bytes).into_owned()),
            );
        };
    let shared = shape.shared.get(i).cloned().flatten();
    for (k, got) in [&r.stdout, &r.stderr].iter().enumerate() {
        if let Some((name, max)) = &collectors[k] {
            if shared.as_deref() == Some(name.as_str()) {
                continue;
            }
            let bytes = got.as_deref().unwrap_or_default();
            if status == Status::OutputLimit && bytes.len() as u64 >= *max {
                errors.push(json!({"name": name, "type": "CollectSizeExceeded", "message": "Output Limit Exceeded"}));
            }
            put(name, bytes, &mut files, &mut ids);
        }
    }
    for (name, out) in &r.files_out {
        match out {
            FileOutResult::Bytes(b) => put(name, b, &mut files, &mut ids),
            FileOutResult::Cached { id, .. } => {
                store.name(id, name);
                ids.insert(name.clone(), Value::String(id.clone()));
            }
        }
    }
    for e in &r.file_errors {
        if shared.as_deref() == Some(e.path.as_str()) && e.reason.starts_with("too large") {
            // The shared collector went past its cap.
            errors.push(json!({"name": e.path, "type": "CollectSizeExceeded", "message": "Output Limit Exceeded"}));
            if status == Status::FileError || status == Status::Ok {
                status = Status::OutputLimit;
            }
            continue;
        }
        errors.push(file_error(&e.path, &e.reason));
    }
    for (pipe, writer, name) in &shape.recorded {
        if *writer == i {
            if let Some(rec) = resp.pipes.get(pipe) {
                files.insert(
                    name.clone(),
                    Value::String(String::from_utf8_lossy(&rec.bytes).into_owned()),
                );
            }
        }
    }
    let exit_status = o.exit_code.or(o.signal).unwrap_or(0);
    let error = match status {
        Status::FileError => errors
            .first()
            .and_then(|e| e["message"].as_str().map(str::to_string))
            .or_else(|| o.error.as_ref().map(|e| e.message.clone())),
        Status::OutputLimit if !errors.is_empty() => Some("Output Limit Exceeded".to_string()),
        Status::SetupError | Status::Cancelled => Some(
            o.error
                .as_ref()
                .map_or_else(|| "cancelled".to_string(), |e| e.message.clone()),
        ),
        _ => None,
    };
    let mut m = Map::new();
    m.insert("status".into(), status_string(status).into());
    m.insert("exitStatus".into(), exit_status.into());
    if let Some(e) = error {
        m.insert("error".into(), e.into());
    }
    m.insert("time".into(), (o.cpu_time_ms * 1_000_000).into());
    m.insert("memory".into(), (o.peak_memory_kib * 1024).into());
    m.insert("runTime".into(), (o.wall_time_ms * 1_000_000).into());
    if !files.is_empty() {
        m.insert("files".into(), Value::Object(files));
    }
    if !ids.is_empty() {
        m.insert("fileIds".into(), Value::Object(ids));
    }
    if !errors.is_empty() {
        m.insert("fileError".into(), Value::Array(errors));
    }
    // moat's own, for clients that look: the whole report of the run.
    let mut extra: Value = serde_json::from_str(&o.to_json()).unwrap_or(Value::Null);
    if let Value::Object(x) = &mut extra {
        if let Some(p) = shape.profiles.get(i) {
            x.insert("profile".into(), p.clone().into());
        }
    }
    m.insert("moat".into(), extra);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            profile: "gojudge".into(),
            src_prefix: vec![PathBuf::from("/etc")],
            max_src: 1 << 20,
        }
    }

    fn tr(body: &str) -> Result<(Request, Shape), Fault> {
        let req = parse(body.as_bytes())?;
        translate(&req, &rules(), &FileCache::default())
    }

    #[test]
    fn the_readme_compile_request_translates() {
        let (r, shape) = tr(
            r#"{"cmd":[{"args":["/usr/bin/g++","a.cc","-o","a"],"env":["PATH=/usr/bin:/bin"],
            "files":[{"content":""},{"name":"stdout","max":10240},{"name":"stderr","max":10240}],
            "cpuLimit":10000000000,"memoryLimit":104857600,"procLimit":50,
            "copyIn":{"a.cc":{"content":"int main(){}"}},
            "copyOut":["stdout","stderr"],"copyOutCached":["a.cc","a"]}]}"#,
        )
        .unwrap();
        let c = &r.commands[0];
        assert_eq!(c.args, ["/usr/bin/g++", "a.cc", "-o", "a"]);
        assert_eq!(c.profile, "gojudge");
        assert_eq!(c.env["PATH"], "/usr/bin:/bin");
        assert_eq!(c.limits.cpu_time, Some(Duration::from_secs(10)));
        assert_eq!(c.limits.wall_time, Some(Duration::from_secs(10)));
        assert_eq!(
            (c.limits.memory, c.limits.processes),
            (Some(100 << 20), Some(50))
        );
        assert_eq!(c.stdin, Input::Bytes(Vec::new().into()));
        assert_eq!(
            (&c.stdout, &c.stderr),
            (&Output::Collect(10240), &Output::Collect(10240))
        );
        // stdout and stderr are collectors: not copied out again.
        let outs: Vec<_> = c
            .files_out
            .iter()
            .map(|o| (o.path.as_str(), o.cache.clone()))
            .collect();
        assert_eq!(outs, [("a.cc", CacheAs::Auto), ("a", CacheAs::Auto)]);
        assert_eq!(shape.collectors[0][0], Some(("stdout".into(), 10240)));
    }

    #[test]
    fn a_copied_in_program_is_run_from_the_work_dir() {
        let store = FileCache::default();
        let id = store.insert(None, b"x".to_vec().into(), 0o755).unwrap();
        let body = format!(r#"{{"cmd":[{{"args":["a"],"copyIn":{{"a":{{"fileId":"{id}"}}}}}}]}}"#);
        let (r, _) = translate(&parse(body.as_bytes()).unwrap(), &rules(), &store).unwrap();
        assert_eq!(r.commands[0].args[0], "./a");
        // An unknown id is go-judge's 500.
        let f = tr(r#"{"cmd":[{"args":["a"],"copyIn":{"a":{"fileId":"NOPE"}}}]}"#).unwrap_err();
        assert_eq!(f.status, 500);
    }

    #[test]
    fn faults_name_their_json_path() {
        let fault = |body: &str| tr(body).unwrap_err().message;
        assert_eq!(fault(r#"{"cmd":[]}"#), "no cmd provided");
        assert!(
            fault(r#"{"cmd":[{"args":["x"],"cpuLimit":"1"}]}"#).starts_with("cmd[0].cpuLimit: ")
        );
        assert!(fault(r#"{"cmd":[{"args":["x"],"files":[{}]}]}"#).starts_with("cmd[0].files[0]: "));
        assert!(
            fault(r#"{"cmd":[{"args":["x"],"files":[null,{"content":"a"}]}]}"#)
                .starts_with("cmd[0].files[1]: ")
        );
        assert!(fault(r#"{"cmd":[{"args":["x"],"env":["NOEQ"]}]}"#).starts_with("cmd[0].env[0]: "));
        assert!(
            fault(r#"{"cmd":[{"args":["x"],"copyIn":{"/etc/x":{"content":""}}}]}"#)
                .starts_with(r#"cmd[0].copyIn["/etc/x"]: "#)
        );
        // Host files only under --src-prefix.
        assert!(
            fault(r#"{"cmd":[{"args":["x"],"copyIn":{"a":{"src":"/proc/self/environ"}}}]}"#)
                .contains("not under --src-prefix")
        );
        let (r, _) =
            tr(r#"{"cmd":[{"args":["x"],"copyIn":{"a":{"src":"/etc/hostname"}}}]}"#).unwrap();
        assert!(matches!(
            &r.commands[0].files_in["a"],
            FileSource::Host { .. }
        ));
        assert!(fault(r#"{"cmd":[{"args":["x"]},{"args":["y"]}],"pipeMapping":[{"in":{"index":5,"fd":1},"out":{"index":1,"fd":0}}]}"#)
            .starts_with("pipeMapping[0].in.index: "));
    }

    #[test]
    fn the_interactive_example_joins_two_commands() {
        let (r, _) = tr(r#"{"cmd":[{"args":["/bin/cat","1"],"files":[{"content":""},null,{"name":"stderr","max":10240}],
            "copyIn":{"1":{"content":"TEST 1"}}},
            {"args":["/bin/cat"],"files":[null,{"name":"stdout","max":10240},{"name":"stderr","max":10240}]}],
            "pipeMapping":[{"in":{"index":0,"fd":1},"out":{"index":1,"fd":0}}]}"#)
        .unwrap();
        assert_eq!(r.pipes.len(), 1);
        assert_eq!(r.pipes[0].from, Some(PipeEnd { command: 0, fd: 1 }));
        assert_eq!(r.pipes[0].to, Some(PipeEnd { command: 1, fd: 0 }));
        assert_eq!(r.pipes[0].record, None);
    }

    #[test]
    fn every_status_has_go_judges_string() {
        let all = [
            (Status::Ok, "Accepted"),
            (Status::NonzeroExit, "Nonzero Exit Status"),
            (Status::Signaled, "Signalled"),
            (Status::Violation, "Dangerous Syscall"),
            (Status::CpuTimeLimit, "Time Limit Exceeded"),
            (Status::WallTimeLimit, "Time Limit Exceeded"),
            (Status::MemoryLimit, "Memory Limit Exceeded"),
            (Status::OutputLimit, "Output Limit Exceeded"),
            (Status::FileError, "File Error"),
            (Status::SetupError, "Internal Error"),
            (Status::Cancelled, "Internal Error"),
        ];
        for (s, want) in all {
            assert_eq!(status_string(s), want);
        }
    }
}
