//! What a request must be before anything of it runs: names that stay inside the work
//! dir, pipes with exactly one writer and one reader on two different commands,
//! descriptors given once, cached files made before they are used, and an order the
//! commands can start in. Each fault is named by its JSON path.

use super::{key, CacheAs, Command, FileSource, Input, Output, PipeEnd, Request, RequestError};
use crate::config::policy::plain_relative;
use crate::jail::child::MAX_FDS;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Most commands in one request (each is a jail, and those joined by pipes run at once).
pub const MAX_COMMANDS: usize = 64;
/// Descriptors a pipe end may be put on are below this.
pub const MAX_FD: i32 = 256;
/// The most a pipe may record, or a stream collect.
pub const MAX_KEEP: u64 = 1 << 30;

/// The order a request runs in: groups of commands, each group started together (the
/// commands a pipe joins), one group after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub groups: Vec<Vec<usize>>,
    /// Every pipe's writing and reading end.
    pub ends: Vec<(PipeEnd, PipeEnd)>,
}

/// Checks `req`; the schedule it runs in.
pub fn check(req: &Request) -> Result<Schedule, RequestError> {
    if req.commands.is_empty() {
        return Err(RequestError::at("commands", "give at least one command"));
    }
    if req.commands.len() > MAX_COMMANDS {
        return Err(RequestError::at(
            "commands",
            format!(
                "{} commands; at most {MAX_COMMANDS} in one request (send more requests)",
                req.commands.len()
            ),
        ));
    }
    for (i, c) in req.commands.iter().enumerate() {
        command(&format!("commands[{i}]"), c)?;
    }
    let ends = pipes(req)?;
    let groups = groups(req.commands.len(), &ends);
    cache_order(req, &groups)?;
    Ok(Schedule { groups, ends })
}

/// The longest name of a file in the work dir, and of one component of it.
pub const MAX_NAME: usize = 1024;
const MAX_COMPONENT: usize = 255;

fn name_in_workdir(path: &str, name: &str) -> Result<(), RequestError> {
    plain_relative(Path::new(name)).map_err(|why| {
        RequestError::at(
            path,
            format!("`{name}` {why}: name a file inside the work dir, like `in.txt` or `src/a.c`"),
        )
    })?;
    if name.len() > MAX_NAME || name.split('/').any(|c| c.len() > MAX_COMPONENT) {
        return Err(RequestError::at(
            path,
            format!("a name is at most {MAX_NAME} bytes, each part between slashes at most {MAX_COMPONENT}"),
        ));
    }
    Ok(())
}

fn no_nul(path: &str, s: &str) -> Result<(), RequestError> {
    if s.contains('\0') {
        return Err(RequestError::at(path, "holds a NUL byte"));
    }
    Ok(())
}

/// An id of the cache: 1 to 255 characters, none of them a control character.
pub fn cache_id(path: &str, id: &str) -> Result<(), RequestError> {
    if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
        return Err(RequestError::at(
            path,
            "a cache id is 1 to 255 characters, none a control character",
        ));
    }
    Ok(())
}

fn command(at: &str, c: &Command) -> Result<(), RequestError> {
    if c.args.is_empty() || c.args[0].is_empty() {
        return Err(RequestError::at(
            format!("{at}.args"),
            "give the program and its arguments, e.g. [\"./a\"]",
        ));
    }
    for (i, a) in c.args.iter().enumerate() {
        no_nul(&format!("{at}.args[{i}]"), a)?;
    }
    for (k, v) in &c.env {
        let path = key(&format!("{at}.env"), k);
        if k.is_empty() || k.contains('=') {
            return Err(RequestError::at(
                path,
                "a variable's name is not empty and has no `=`",
            ));
        }
        no_nul(&path, k)?;
        no_nul(&path, v)?;
    }
    let w = &c.workdir;
    if !w.is_absolute()
        || w == Path::new("/")
        || w.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(RequestError::at(
            format!("{at}.workdir"),
            format!(
                "`{}`: give an absolute path other than /, without `..`, e.g. /w",
                w.display()
            ),
        ));
    }
    if c.workdir_size == 0 {
        return Err(RequestError::at(
            format!("{at}.workdir_size"),
            "must be at least 1 byte",
        ));
    }
    if let Some(cwd) = &c.cwd {
        if !cwd.is_absolute() {
            return Err(RequestError::at(
                format!("{at}.cwd"),
                "give an absolute path inside the jail",
            ));
        }
    }
    for (name, source) in &c.files_in {
        let path = key(&format!("{at}.files_in"), name);
        name_in_workdir(&path, name)?;
        if let FileSource::Cached { id, .. } = source {
            cache_id(&format!("{path}.cached"), id)?;
        }
        if let FileSource::Host { path: host, .. } = source {
            if !host.is_absolute() {
                return Err(RequestError::at(
                    format!("{path}.host"),
                    "give the host file's absolute path",
                ));
            }
        }
    }
    // A name that is a file cannot also be a directory of another.
    for name in c.files_in.keys() {
        let below = format!("{name}/");
        // Names sort, so what lies below `name/` comes right after it.
        let next = c.files_in.range(below.clone()..).next().map(|(k, _)| k);
        if let Some(other) = next.filter(|o| o.starts_with(&below)) {
            return Err(RequestError::at(
                key(&format!("{at}.files_in"), other),
                format!(
                    "`{other}` needs `{name}` to be a directory, and `{name}` is a file put in"
                ),
            ));
        }
    }
    match &c.stdin {
        Input::File(name) => {
            let path = format!("{at}.stdin.file");
            name_in_workdir(&path, name)?;
            if !c.files_in.contains_key(name) {
                return Err(RequestError::at(
                    path,
                    format!("`{name}` is not among the command's files_in: a work dir holds only what is put in before the program starts"),
                ));
            }
        }
        Input::Cached(id) => cache_id(&format!("{at}.stdin.cached"), id)?,
        _ => {}
    }
    for (stream, out) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
        match out {
            Output::File(name) if c.stdin == Input::File(name.clone()) => {
                return Err(RequestError::at(
                    format!("{at}.{stream}.file"),
                    format!("`{name}` is the command's stdin too: writing it would empty the input before the program reads it"),
                ))
            }
            Output::File(name) => name_in_workdir(&format!("{at}.{stream}.file"), name)?,
            Output::Collect(cap) if *cap > MAX_KEEP => {
                return Err(RequestError::at(
                    format!("{at}.{stream}.collect"),
                    "at most 1GiB is collected; write more into a work-dir file",
                ))
            }
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    for (i, f) in c.files_out.iter().enumerate() {
        let path = format!("{at}.files_out[{i}]");
        name_in_workdir(&format!("{path}.path"), &f.path)?;
        if !seen.insert(&f.path) {
            return Err(RequestError::at(
                format!("{path}.path"),
                format!("`{}` is taken out twice", f.path),
            ));
        }
        if let CacheAs::Id(id) = &f.cache {
            cache_id(&format!("{path}.cache"), id)?;
        }
        if f.max.is_some_and(|m| m > MAX_KEEP) {
            return Err(RequestError::at(
                format!("{path}.max"),
                "at most 1GiB is taken out of one file",
            ));
        }
    }
    Ok(())
}

/// A pipe's name: letters, digits, `_`, `-`, `.`; not ending in `_base64`, which the
/// response keeps for pipes whose bytes are not text.
fn pipe_name(path: &str, name: &str) -> Result<(), RequestError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.ends_with("_base64");
    if !ok {
        return Err(RequestError::at(
            path,
            format!("`{name}`: a pipe's name is 1 to 64 letters, digits, `_`, `-` or `.`, not ending in `_base64`"),
        ));
    }
    Ok(())
}

/// Every pipe's two ends, from `from`/`to` and from the commands' stdio.
fn pipes(req: &Request) -> Result<Vec<(PipeEnd, PipeEnd)>, RequestError> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, p) in req.pipes.iter().enumerate() {
        pipe_name(&format!("pipes[{k}].name"), &p.name)?;
        if index.insert(&p.name, k).is_some() {
            return Err(RequestError::at(
                format!("pipes[{k}].name"),
                format!("`{}` is the name of an earlier pipe too", p.name),
            ));
        }
        if p.record.is_some_and(|r| r > MAX_KEEP) {
            return Err(RequestError::at(
                format!("pipes[{k}].record"),
                "at most 1GiB is recorded",
            ));
        }
    }
    // (writer, where it was named), (reader, where) per pipe.
    let mut writers: Vec<Vec<(PipeEnd, String)>> = vec![Vec::new(); req.pipes.len()];
    let mut readers: Vec<Vec<(PipeEnd, String)>> = vec![Vec::new(); req.pipes.len()];
    let find = |path: &str, name: &str| {
        index.get(name).copied().ok_or_else(|| {
            RequestError::at(path, format!("there is no pipe named `{name}` in `pipes`"))
        })
    };
    for (i, c) in req.commands.iter().enumerate() {
        if let Input::Pipe(name) = &c.stdin {
            let path = format!("commands[{i}].stdin.pipe");
            let k = find(&path, name)?;
            readers[k].push((PipeEnd { command: i, fd: 0 }, path));
        }
        for (fd, stream, out) in [(1, "stdout", &c.stdout), (2, "stderr", &c.stderr)] {
            if let Output::Pipe(name) = out {
                let path = format!("commands[{i}].{stream}.pipe");
                let k = find(&path, name)?;
                writers[k].push((PipeEnd { command: i, fd }, path));
            }
        }
    }
    let n = req.commands.len();
    let mut used: BTreeMap<(usize, i32), String> = BTreeMap::new();
    for (k, p) in req.pipes.iter().enumerate() {
        for (end, side, list) in [
            (p.from, "from", &mut writers[k]),
            (p.to, "to", &mut readers[k]),
        ] {
            let Some(e) = end else { continue };
            let path = format!("pipes[{k}].{side}");
            if e.command >= n {
                return Err(RequestError::at(
                    format!("{path}.command"),
                    format!(
                        "there is no command {} (the request has {n}, from 0)",
                        e.command
                    ),
                ));
            }
            if e.fd < 0 || e.fd >= MAX_FD {
                return Err(RequestError::at(
                    format!("{path}.fd"),
                    format!("fd {}: give a descriptor from 0 to {}", e.fd, MAX_FD - 1),
                ));
            }
            if let Some(taken) = stdio_taken(&req.commands[e.command], e.fd) {
                return Err(RequestError::at(
                    format!("{path}.fd"),
                    format!(
                        "fd {} of command {} is already its {taken}",
                        e.fd, e.command
                    ),
                ));
            }
            list.push((e, path));
        }
    }
    let mut ends = Vec::new();
    for (k, p) in req.pipes.iter().enumerate() {
        let one = |list: &[(PipeEnd, String)], does: &str, how: &str| match list {
            [(e, _)] => Ok(*e),
            [] => Err(RequestError::at(
                format!("pipes[{k}]"),
                format!("no command {does} `{}`: {how}", p.name),
            )),
            [_, (_, second), ..] => Err(RequestError::at(
                second.clone(),
                format!(
                    "pipe `{}` has one {} end, named already",
                    p.name,
                    if does == "writes into" {
                        "writing"
                    } else {
                        "reading"
                    }
                ),
            )),
        };
        let w = one(
            &writers[k],
            "writes into",
            "give `from`, or a command's stdout {\"pipe\": NAME}",
        )?;
        let r = one(
            &readers[k],
            "reads from",
            "give `to`, or a command's stdin {\"pipe\": NAME}",
        )?;
        if w.command == r.command {
            return Err(RequestError::at(
                format!("pipes[{k}]"),
                format!(
                    "`{}` joins command {} to itself: a pipe joins two commands (each in its own jail)",
                    p.name, w.command
                ),
            ));
        }
        for (e, path) in [(w, &writers[k][0].1), (r, &readers[k][0].1)] {
            // Every command has its 0, 1 and 2; pipe ends elsewhere add to them.
            let others = used
                .keys()
                .filter(|(c, fd)| *c == e.command && *fd > 2)
                .count();
            if e.fd > 2 && 3 + others + 1 > MAX_FDS {
                return Err(RequestError::at(
                    path.clone(),
                    format!(
                        "command {} would get more than {MAX_FDS} descriptors",
                        e.command
                    ),
                ));
            }
            if let Some(other) = used.insert((e.command, e.fd), p.name.clone()) {
                return Err(RequestError::at(
                    path.clone(),
                    format!(
                        "fd {} of command {} is an end of pipe `{other}` already",
                        e.fd, e.command
                    ),
                ));
            }
        }
        ends.push((w, r));
    }
    Ok(ends)
}

/// What a command's fd 0, 1 or 2 is already given to, if anything but its default.
fn stdio_taken(c: &Command, fd: i32) -> Option<&'static str> {
    match fd {
        0 if c.stdin != Input::Empty => Some("stdin (given by `stdin`)"),
        1 if c.stdout != Output::Discard => Some("stdout (given by `stdout`)"),
        2 if c.stderr != Output::Discard => Some("stderr (given by `stderr`)"),
        _ => None,
    }
}

/// Commands joined by pipes, each group in the order of its first command.
fn groups(n: usize, ends: &[(PipeEnd, PipeEnd)]) -> Vec<Vec<usize>> {
    let mut root: Vec<usize> = (0..n).collect();
    fn find(root: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while root[r] != r {
            r = root[r];
        }
        root[i] = r;
        r
    }
    for (w, r) in ends {
        let (a, b) = (find(&mut root, w.command), find(&mut root, r.command));
        root[a.max(b)] = a.min(b);
    }
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = find(&mut root, i);
        by_root.entry(r).or_default().push(i);
    }
    // Roots are each group's smallest index, so the map's order is the run order.
    by_root.into_values().collect()
}

/// A file cached under an id by one command and put in by another must be made first:
/// by a command of an earlier group.
fn cache_order(req: &Request, groups: &[Vec<usize>]) -> Result<(), RequestError> {
    let mut group_of = vec![0; req.commands.len()];
    for (g, members) in groups.iter().enumerate() {
        for &i in members {
            group_of[i] = g;
        }
    }
    let mut makers: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in req.commands.iter().enumerate() {
        for f in &c.files_out {
            if let CacheAs::Id(id) = &f.cache {
                makers.entry(id).or_default().push(i);
            }
        }
    }
    for (i, c) in req.commands.iter().enumerate() {
        let mut uses: Vec<(String, &str)> = Vec::new();
        if let Input::Cached(id) = &c.stdin {
            uses.push((format!("commands[{i}].stdin.cached"), id));
        }
        for (name, f) in &c.files_in {
            if let FileSource::Cached { id, .. } = f {
                uses.push((
                    format!("{}.cached", key(&format!("commands[{i}].files_in"), name)),
                    id,
                ));
            }
        }
        for (path, id) in uses {
            for &m in makers.get(id).map_or(&[][..], |v| v.as_slice()) {
                if group_of[m] == group_of[i] {
                    return Err(RequestError::at(
                        path,
                        format!("`{id}` is cached by commands[{m}], which starts together with this one (pipes join them): it cannot be there yet, a cycle that cannot start"),
                    ));
                }
                if group_of[m] > group_of[i] {
                    return Err(RequestError::at(
                        path,
                        format!("`{id}` is cached by commands[{m}], which runs after this one: put the command that makes it first"),
                    ));
                }
            }
        }
    }
    Ok(())
}
