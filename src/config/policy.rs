//! Policy: a profile plus the command line's overrides, validated and fully resolved.
//! Everything a person can get wrong is caught here, with the profile's file, line and
//! column, before anything is built.

use super::limits::{self, Limits};
use super::profile::{Profile, ProfileError, Source};
use super::{syscalls, templates, units};
use crate::seccomp::Rule;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The program's uid and gid inside the jail when the profile names none.
pub const DEFAULT_ID: u32 = 1000;

/// A host path mounted into the jail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    /// Host path.
    pub src: PathBuf,
    /// Path inside the jail.
    pub dst: PathBuf,
    /// Writable (and then noexec); read-only otherwise.
    pub rw: bool,
    /// Skip silently when `src` does not exist.
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tmpfs {
    pub path: PathBuf,
    pub size: u64,
}

/// Where a work dir's executable files are kept inside the jail (a sealed read-only
/// store they are bound from into the noexec work dir).
pub const EXEC_STORE: &str = "/.moat-exec";

/// A private work dir for one run: a size-capped tmpfs inside the jail (the default
/// cwd), filled before the program starts and read back after it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workdir {
    /// Where it is inside the jail (`/w`).
    pub path: PathBuf,
    /// The tmpfs's size: everything the program and the files put in may hold.
    pub size: u64,
    /// Files put in before the program starts.
    pub files_in: Vec<FileIn>,
    /// Files read back after the program ends, at most `max` bytes each.
    pub files_out: Vec<FileOut>,
}

/// One file put into the work dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIn {
    /// Its name relative to the work dir (`in.txt`, `src/main.c`).
    pub name: PathBuf,
    /// Its bytes.
    pub contents: std::sync::Arc<[u8]>,
    /// Its permission bits; with an execute bit it can be the program.
    pub mode: u32,
}

/// One file read back from the work dir after the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOut {
    /// Its name relative to the work dir.
    pub name: PathBuf,
    /// The most bytes taken; a larger file is an error, not a cut copy.
    pub max: u64,
}

/// Whether `name` is a plain relative path inside a directory: no `..`, no root, no
/// `.`, nothing empty, no NUL. Names like `../etc/passwd` or `/etc/passwd` would let a
/// request write or read outside the work dir.
pub fn plain_relative(name: &Path) -> Result<(), &'static str> {
    let text = name.as_os_str().as_encoded_bytes();
    if text.is_empty() {
        return Err("is empty");
    }
    if text.contains(&0) {
        return Err("holds a NUL byte");
    }
    if name.is_absolute() {
        return Err("is absolute");
    }
    for c in name.components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Err("climbs out with `..`"),
            _ => return Err("holds `.` or an empty component"),
        }
    }
    if text.ends_with(b"/") || text.windows(2).any(|w| w == b"//") {
        return Err("holds an empty component");
    }
    Ok(())
}

impl Workdir {
    /// The work dir held to what can be built: an absolute place that is not `/`,
    /// plain relative names, no name twice, everything put in fitting its size.
    fn checked(&self) -> Result<Workdir, PolicyError> {
        let bad = |value: String, message: String| PolicyError::Option {
            option: "workdir",
            value,
            message,
        };
        let path = normalize(&self.path);
        if !self.path.is_absolute() || path == Path::new("/") {
            return Err(bad(
                self.path.display().to_string(),
                "must be an absolute path other than /".into(),
            ));
        }
        if self.size == 0 {
            return Err(bad(self.size.to_string(), "must be at least 1 byte".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut total: u64 = 0;
        for f in &self.files_in {
            plain_relative(&f.name)
                .map_err(|why| bad(f.name.display().to_string(), format!("the file name {why}")))?;
            if !seen.insert(f.name.clone()) {
                return Err(bad(f.name.display().to_string(), "is put in twice".into()));
            }
            // tmpfs counts whole pages.
            total = total.saturating_add((f.contents.len() as u64).div_ceil(4096) * 4096);
        }
        if total > self.size {
            return Err(bad(
                format!("{total} bytes"),
                format!(
                    "the files put in do not fit the work dir of {}",
                    units::Size(self.size)
                ),
            ));
        }
        for f in &self.files_out {
            plain_relative(&f.name)
                .map_err(|why| bad(f.name.display().to_string(), format!("the file name {why}")))?;
        }
        Ok(Workdir {
            path,
            ..self.clone()
        })
    }
}

/// A profile plus the caller's overrides, validated and fully resolved. Only
/// [`Policy::load`] and [`Policy::resolve`] make one, so a Policy never holds what a
/// profile could not say (an allow of the always-denied core, say).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Where the profile came from (`built-in:default`, a path).
    pub(crate) profile: String,
    /// The profile files read (base first), built-in ones not among them: what a
    /// cached plan is checked against, with the profile directories.
    pub(crate) profile_files: Vec<PathBuf>,
    pub(crate) hostname: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cwd: PathBuf,
    /// The program's whole environment, sorted by name.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) allow_exec: bool,
    /// Argument templates put after the program's name (see `args`).
    pub(crate) args: Vec<String>,
    /// The runtime's exit code for "out of the memory it was given" (see
    /// `process.out_of_memory_exit_code`).
    #[serde(default)]
    pub(crate) out_of_memory_exit_code: Option<i32>,
    pub(crate) library_path: Vec<PathBuf>,
    pub(crate) proc: bool,
    pub(crate) dev: bool,
    /// The rootfs template whose files are written into the jail's root.
    pub(crate) template: Option<String>,
    pub(crate) binds: Vec<Bind>,
    pub(crate) tmpfs: Vec<Tmpfs>,
    pub(crate) limits: Limits,
    /// Learning mode (`moat learn`): calls outside the rules are noted and allowed
    /// (except the always-denied core), and the files the program opens are noted.
    pub(crate) learn: bool,
    /// Syscall rules, sorted by name: one per syscall, or several conditional ones.
    pub(crate) rules: Vec<Rule>,
    /// The run's private work dir, if it has one (never in a cached plan: a request's
    /// files are its own).
    #[serde(skip)]
    pub(crate) workdir: Option<Workdir>,
}

/// What the command line (or a library caller) adds to or changes in a profile. Every
/// field is validated when the policy is resolved.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Host paths to mount, after the profile's.
    pub binds: Vec<Bind>,
    /// Where the program starts, inside the jail.
    pub cwd: Option<PathBuf>,
    /// Environment entries added to (or replacing) the profile's.
    pub env: Vec<(String, String)>,
    /// Limits that replace the profile's, one by one.
    pub limits: Limits,
    /// Run in learning mode (see `Policy::learn`).
    pub learn: bool,
    /// A private work dir, which is also the default cwd.
    pub workdir: Option<Workdir>,
}

/// The bind that shows `inside` in the jail: the one mounted deepest above it (the
/// last of equals, as later mounts cover earlier ones), with `inside`'s path below its
/// mount point. Binds of missing optional sources are left out, as the jail has none.
pub fn bind_showing<'a>(binds: &'a [Bind], inside: &Path) -> Option<(&'a Bind, PathBuf)> {
    binds
        .iter()
        .filter(|b| !b.optional || b.src.exists())
        .filter_map(|b| Some((b, inside.strip_prefix(&b.dst).ok()?.to_path_buf())))
        .fold(
            None,
            |best: Option<(&Bind, PathBuf)>, (b, rest)| match &best {
                Some((d, _)) if d.dst.components().count() > b.dst.components().count() => best,
                _ => Some((b, rest)),
            },
        )
}

/// A `--cwd` (or a library caller's `Overrides::cwd`) must name a directory the jail
/// shows: a bound host directory or one below it that exists on the host, a tmpfs
/// mount's own path, the work dir or a directory its files are put in, or `/`.
/// Anything else moat would have to make as an empty directory, and a typo
/// (`/tmp/jugde`) would then fail deep inside as "can't open file". A profile's own
/// `process.cwd` asks for the directory, and is made where nothing shows it.
fn check_cwd(
    asked: &Path,
    cwd: &Path,
    binds: &[Bind],
    tmpfs: &[Tmpfs],
    workdir: Option<&Workdir>,
) -> Result<(), PolicyError> {
    let refuse = |message: String| {
        Err(PolicyError::Option {
            option: "--cwd",
            value: asked.display().to_string(),
            message,
        })
    };
    if cwd == Path::new("/") || tmpfs.iter().any(|t| t.path == cwd) {
        return Ok(());
    }
    if let Some(w) = workdir {
        if let Ok(rel) = cwd.strip_prefix(&w.path) {
            let made = rel.as_os_str().is_empty()
                || w.files_in
                    .iter()
                    .any(|f| f.name.starts_with(rel) && f.name != rel);
            return if made {
                Ok(())
            } else {
                refuse(format!(
                    "no directory {} in the work dir {}: no file is put in below it",
                    rel.display(),
                    w.path.display()
                ))
            };
        }
    }
    // A bind mounted below the cwd's own path still needs the cwd to be shown.
    if let Some((b, rest)) = bind_showing(binds, cwd) {
        let host = b.src.join(&rest);
        return if host.is_dir() {
            Ok(())
        } else {
            refuse(format!(
                "not a directory in the jail: it would be {} on the host (through the bind of {} at {}), which {}",
                host.display(),
                b.src.display(),
                b.dst.display(),
                if host.exists() { "is not a directory" } else { "does not exist" }
            ))
        };
    }
    let inside_tmpfs = tmpfs.iter().find(|t| cwd.starts_with(&t.path));
    refuse(match inside_tmpfs {
        Some(t) => format!(
            "not a directory in the jail: {} is a fresh, empty tmpfs; give --cwd {} and a \
             path from there, or bind the directory it should show",
            t.path.display(),
            t.path.display()
        ),
        None => "not a directory in the jail: nothing the profile or the command line \
                 mounts shows it; bind the directory first (`--bind DIR` or `--bind-rw \
                 DIR`, then --cwd DIR), or name it as the profile's `process.cwd`"
            .into(),
    })
}

/// A mistake in a profile or in the overrides.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// In a profile file: located by file, line, column and key.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// In an override (a command-line option or a library caller's value).
    #[error("{option} {value}: {message}")]
    Option {
        /// The option (`--bind`) or field (`env`) at fault.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it and what to give instead.
        message: String,
    },
}

impl Bind {
    /// Parses a command-line bind: `PATH` (same path inside) or `SRC:DST`. Relative
    /// paths are taken from `host_cwd`, so `--bind .` binds the current directory.
    pub fn parse(spec: &str, rw: bool, host_cwd: &Path) -> Result<Bind, PolicyError> {
        let option = if rw { "--bind-rw" } else { "--bind" };
        let bad = |message: &str| PolicyError::Option {
            option,
            value: spec.to_string(),
            message: message.to_string(),
        };
        let (src, dst) = match spec.split_once(':') {
            Some((s, d)) => (s, Some(d)),
            None => (spec, None),
        };
        if src.is_empty() || dst.is_some_and(str::is_empty) {
            return Err(bad("expected PATH or SRC:DST"));
        }
        let src = normalize(&host_cwd.join(src));
        if !src.exists() {
            return Err(bad("the source does not exist on this host"));
        }
        let dst = match dst {
            Some(d) if !d.starts_with('/') => {
                return Err(bad(
                    "the destination inside the jail must be an absolute path",
                ))
            }
            Some(d) => normalize(Path::new(d)),
            None => src.clone(),
        };
        if dst == Path::new("/") {
            return Err(bad("cannot bind over the jail's root"));
        }
        Ok(Bind {
            src,
            dst,
            rw,
            optional: false,
        })
    }
}

impl Bind {
    /// The bind as a caller built it, held to what [`Bind::parse`] would accept:
    /// absolute paths (normalized), an existing source unless optional, not over `/`.
    fn checked(&self) -> Result<Bind, PolicyError> {
        let option = if self.rw { "--bind-rw" } else { "--bind" };
        let bad = |message: &str| PolicyError::Option {
            option,
            value: format!("{}:{}", self.src.display(), self.dst.display()),
            message: message.to_string(),
        };
        let nul = |p: &Path| p.as_os_str().as_encoded_bytes().contains(&0);
        if nul(&self.src) || nul(&self.dst) {
            return Err(bad("a path holds a NUL byte"));
        }
        if !self.src.is_absolute() || !self.dst.is_absolute() {
            return Err(bad("both paths must be absolute"));
        }
        let (src, dst) = (normalize(&self.src), normalize(&self.dst));
        if dst == Path::new("/") {
            return Err(bad("cannot bind over the jail's root"));
        }
        if !self.optional && !src.exists() {
            return Err(bad("the source does not exist on this host"));
        }
        Ok(Bind {
            src,
            dst,
            ..self.clone()
        })
    }
}

/// Lexically cleans an absolute path: drops `.`, resolves `..`, no trailing slash.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl Policy {
    /// This policy with `files` put into its work dir, checked as when it was made
    /// (names inside the work dir, none twice, all fitting).
    pub(crate) fn with_files_in(mut self, files: Vec<FileIn>) -> Result<Policy, PolicyError> {
        let Some(w) = self.workdir.as_mut() else {
            return Err(PolicyError::Option {
                option: "workdir",
                value: String::new(),
                message: "files are put into a work dir, and this policy has none".into(),
            });
        };
        w.files_in = files;
        let checked = w.checked()?;
        self.workdir = Some(checked);
        Ok(self)
    }
}

impl Policy {
    /// Loads a profile by name or path and applies `overrides`.
    pub fn load(profile: &str, overrides: &Overrides) -> Result<Policy, PolicyError> {
        Self::resolve(&Profile::load(profile)?, overrides)
    }

    /// Resolves `profile`, with the profiles it extends (base first) and its local
    /// override file, then applies `overrides`.
    pub fn resolve(profile: &Profile, overrides: &Overrides) -> Result<Policy, PolicyError> {
        let layers = profile.clone().chain()?;
        let mut acc = Layered::default();
        for layer in &layers {
            acc.apply(layer, layers.len() > 1)?;
        }
        let origins: Vec<&str> = layers.iter().map(|l| l.source.origin.as_str()).collect();

        let cwd = match &overrides.cwd {
            Some(c) if c.as_os_str().as_encoded_bytes().contains(&0) => {
                return Err(PolicyError::Option {
                    option: "--cwd",
                    value: c.display().to_string(),
                    message: "holds a NUL byte".into(),
                })
            }
            Some(c) if !c.is_absolute() => {
                return Err(PolicyError::Option {
                    option: "--cwd",
                    value: c.display().to_string(),
                    message: "must be an absolute path inside the jail".into(),
                })
            }
            Some(c) => normalize(c),
            None => match &overrides.workdir {
                Some(w) => normalize(&w.path),
                None => acc.cwd.unwrap_or_else(|| PathBuf::from("/")),
            },
        };
        let workdir = overrides
            .workdir
            .as_ref()
            .map(Workdir::checked)
            .transpose()?;
        let mut env = acc.env.unwrap_or_else(|| {
            BTreeMap::from([(
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin".to_string(),
            )])
        });
        for (k, v) in &overrides.env {
            env.insert(k.clone(), v.clone());
        }
        // The loader inside must search where the planner found the libraries.
        if !acc.library_path.is_empty() && !env.contains_key("LD_LIBRARY_PATH") {
            let joined: Vec<String> = acc
                .library_path
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            env.insert("LD_LIBRARY_PATH".into(), joined.join(":"));
        }
        for (k, v) in &env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(PolicyError::Option {
                    option: "env",
                    value: format!("{k}={v}"),
                    message: "names must be non-empty without `=`; no NUL bytes anywhere".into(),
                });
            }
        }
        let mut binds = acc.binds;
        for b in &overrides.binds {
            binds.push(b.checked()?);
        }
        if let Some(asked) = &overrides.cwd {
            check_cwd(asked, &cwd, &binds, &acc.tmpfs, workdir.as_ref())?;
        }
        if let Some(w) = &workdir {
            let mut mounts: Vec<&Path> = binds.iter().map(|b| b.dst.as_path()).collect();
            mounts.extend(acc.tmpfs.iter().map(|t| t.path.as_path()));
            if acc.proc.unwrap_or(false) {
                mounts.push(Path::new("/proc"));
            }
            if acc.dev.unwrap_or(true) {
                mounts.push(Path::new("/dev"));
            }
            mounts.push(Path::new(EXEC_STORE));
            if let Some(m) = mounts
                .into_iter()
                .find(|m| w.path.starts_with(m) || m.starts_with(&w.path))
            {
                return Err(PolicyError::Option {
                    option: "workdir",
                    value: w.path.display().to_string(),
                    message: format!(
                        "overlaps {}, which the profile mounts; pick a place of its own, e.g. /w",
                        m.display()
                    ),
                });
            }
        }

        Ok(Policy {
            profile: origins.join(" <- "),
            profile_files: layers
                .iter()
                .filter(|l| !l.source.origin.starts_with("built-in:"))
                .map(|l| PathBuf::from(&l.source.origin))
                .collect(),
            hostname: acc.hostname.unwrap_or_else(|| "sandbox".to_string()),
            uid: acc.uid.unwrap_or(DEFAULT_ID),
            gid: acc.gid.unwrap_or(DEFAULT_ID),
            cwd,
            env: env.into_iter().collect(),
            allow_exec: acc.allow_exec.unwrap_or(false),
            args: acc.args,
            out_of_memory_exit_code: acc.out_of_memory_exit_code,
            library_path: acc.library_path,
            proc: acc.proc.unwrap_or(false),
            dev: acc.dev.unwrap_or(true),
            template: acc.template,
            binds,
            tmpfs: acc.tmpfs,
            workdir,
            limits: overrides.limits.over(&acc.limits),
            learn: overrides.learn,
            rules: acc.rules.into_values().flatten().collect(),
        })
    }

    /// The value of one variable of the program's environment.
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Where the profile came from, layer by layer (`built-in:default <- my.toml`).
    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The run's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Where the program starts, inside the jail.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The program's whole environment, sorted by name.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Whether this is a learning run's policy.
    pub fn learning(&self) -> bool {
        self.learn
    }
}

/// What the layers of a profile say, folded base first: a later layer's scalars replace
/// earlier ones, its env entries are added, its mounts appended, its limits replace
/// those it sets, and its syscall rules apply on top. Each layer is validated against
/// its own file, so errors point into the file that has the mistake.
#[derive(Default)]
struct Layered {
    hostname: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    cwd: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
    allow_exec: Option<bool>,
    args: Vec<String>,
    out_of_memory_exit_code: Option<i32>,
    library_path: Vec<PathBuf>,
    proc: Option<bool>,
    dev: Option<bool>,
    template: Option<String>,
    binds: Vec<Bind>,
    tmpfs: Vec<Tmpfs>,
    limits: Limits,
    rules: BTreeMap<String, Vec<Rule>>,
}

impl Layered {
    fn apply(&mut self, profile: &Profile, composed: bool) -> Result<(), PolicyError> {
        let src = &profile.source;
        let p = &profile.process;
        if let Some(h) = &p.hostname {
            let ok = !h.get_ref().is_empty()
                && h.get_ref().len() <= 64
                && h.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !ok {
                return Err(src
                    .error(
                        h.span(),
                        "process.hostname",
                        "use 1 to 64 letters, digits, `-` or `.`",
                    )
                    .into());
            }
            self.hostname = Some(h.get_ref().clone());
        }
        // Inside ids must not be 0: a program that believes it is root takes paths
        // (setuid helpers, root-only checks) that a jailed program should never take.
        for (key, id, slot) in [
            ("process.uid", p.uid, &mut self.uid),
            ("process.gid", p.gid, &mut self.gid),
        ] {
            let Some(id) = id else { continue };
            if id == 0 || id >= 1 << 31 {
                return Err(ProfileError::Invalid {
                    origin: src.origin.clone(),
                    line: 1,
                    column: 1,
                    key: key.into(),
                    message: format!(
                        "{id} is not allowed: use an id from 1 to 2147483647 (default 1000)"
                    ),
                }
                .into());
            }
            *slot = Some(id);
        }
        if let Some(c) = &p.cwd {
            self.cwd = Some(absolute(src, c, "process.cwd")?);
        }
        if let Some(env) = &p.env {
            let into = self.env.get_or_insert_with(BTreeMap::new);
            for (k, v) in env {
                let key = format!("process.env.{}", k.get_ref());
                if k.get_ref().is_empty() || k.get_ref().contains(['=', '\0']) {
                    return Err(src
                        .error(
                            k.span(),
                            &key,
                            "a variable's name must be non-empty, without `=` or NUL",
                        )
                        .into());
                }
                no_nul(src, v, &key)?;
                into.insert(k.get_ref().clone(), v.get_ref().clone());
            }
        }
        if p.allow_exec.is_some() {
            self.allow_exec = p.allow_exec;
        }
        if p.replace_args == Some(true) {
            self.args.clear();
        }
        if let Some(code) = &p.out_of_memory_exit_code {
            // 0 is success, and 126 and up are the shells' and moat's own codes; a
            // runtime's own code for "out of memory" is 1 to 125.
            if !(1..=125).contains(code.get_ref()) {
                return Err(src
                    .error(
                        code.span(),
                        "process.out_of_memory_exit_code",
                        "use the exit code the runtime gives, 1 to 125 (the JVM's \
                         -XX:+ExitOnOutOfMemoryError exits 3)",
                    )
                    .into());
            }
            self.out_of_memory_exit_code = Some(*code.get_ref() as i32);
        }
        for a in &p.args {
            no_nul(src, a, "process.args")?;
            super::args::check(a.get_ref()).map_err(|e| src.error(a.span(), "process.args", e))?;
            self.args.push(a.get_ref().clone());
        }
        for d in &p.library_path {
            self.library_path
                .push(absolute(src, d, "process.library_path")?);
        }

        let fs = &profile.filesystem;
        self.proc = fs.proc.or(self.proc);
        self.dev = fs.dev.or(self.dev);
        if let Some(t) = &fs.template {
            let known = templates::names();
            if !known.contains(&t.get_ref().as_str()) {
                return Err(src
                    .error(
                        t.span(),
                        "filesystem.template",
                        format!(
                            "unknown template `{}`; known: {}",
                            t.get_ref(),
                            known.join(", ")
                        ),
                    )
                    .into());
            }
            self.template = Some(t.get_ref().clone());
        }
        for b in &fs.bind {
            let s = absolute(src, &b.src, "filesystem.bind.src")?;
            let d = match &b.dst {
                Some(d) => absolute(src, d, "filesystem.bind.dst")?,
                None => s.clone(),
            };
            if d == Path::new("/") {
                return Err(src
                    .error(
                        b.src.span(),
                        "filesystem.bind",
                        "cannot bind over the jail's root",
                    )
                    .into());
            }
            if !b.optional && !s.exists() {
                return Err(src
                    .error(
                        b.src.span(),
                        "filesystem.bind.src",
                        format!(
                            "{} does not exist on this host; create it or mark the bind `optional = true`",
                            s.display()
                        ),
                    )
                    .into());
            }
            self.binds.push(Bind {
                src: s,
                dst: d,
                rw: b.rw,
                optional: b.optional,
            });
        }
        for t in &fs.tmpfs {
            let path = absolute(src, &t.path, "filesystem.tmpfs.path")?;
            let size = units::parse_size(t.size.get_ref())
                .map_err(|e| src.error(t.size.span(), "filesystem.tmpfs.size", e.to_string()))?;
            self.tmpfs.push(Tmpfs { path, size });
        }
        self.limits = limits::from_profile(profile)?.over(&self.limits);
        Ok(syscalls::apply(profile, &mut self.rules, composed)?)
    }
}

/// A NUL byte cannot reach the kernel (every path and argument is a C string): say
/// where it is rather than fail when the jail is built.
fn no_nul(src: &Source, value: &toml::Spanned<String>, key: &str) -> Result<(), PolicyError> {
    match value.get_ref().find('\0') {
        Some(at) => Err(src
            .error(
                value.span(),
                key,
                format!("holds a NUL byte (at character {at}), which no path or argument can"),
            )
            .into()),
        None => Ok(()),
    }
}

fn absolute(
    src: &Source,
    value: &toml::Spanned<String>,
    key: &str,
) -> Result<PathBuf, PolicyError> {
    no_nul(src, value, key)?;
    let path = Path::new(value.get_ref());
    if !path.is_absolute() {
        return Err(src
            .error(
                value.span(),
                key,
                format!("`{}` must be an absolute path", value.get_ref()),
            )
            .into());
    }
    Ok(normalize(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::Action;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::resolve(
            &Profile::parse(text, "t.toml").unwrap(),
            &Overrides::default(),
        )
    }

    #[test]
    fn default_profile_resolves() {
        let p = Policy::load("default", &Overrides::default()).unwrap();
        assert_eq!(p.hostname, "sandbox");
        assert_eq!((p.uid, p.gid), (1000, 1000));
        assert_eq!(
            p.env,
            vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())]
        );
        assert!(p
            .rules
            .iter()
            .any(|r| r.name == "read" && r.action == Action::Allow));
        assert!(!p.rules.iter().any(|r| r.name == "socket"));
        assert!(!p.allow_exec);
    }

    #[test]
    fn core_syscall_cannot_be_allowed() {
        let err = parse("[syscalls]\nallow = [\"read\", \"ptrace\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "t.toml:2:18: syscalls.allow: `ptrace` is in moat's always-denied core"
            ),
            "{err}"
        );
        // but it may be given an errno
        let p = parse("[syscalls.errno]\nptrace = \"EPERM\"\n").unwrap();
        assert_eq!(p.rules[0].action, Action::Errno(libc::EPERM));
    }

    #[test]
    fn unknown_names_are_errors() {
        let err = parse("[syscalls]\nallow = [\"reed\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`reed` is not a syscall"), "{err}");
        let err = parse("[syscalls]\ngroups = [\"nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown group `nope`"), "{err}");
        let err = parse("[syscalls.errno]\nsocket = \"EWHAT\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown errno `EWHAT`"), "{err}");
        let err = parse("[syscalls]\nallow = [\"execve\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_exec"), "{err}");
    }

    #[test]
    fn bad_values_are_located() {
        let err = parse("[limits]\nwall_time = \"5\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:2:13: limits.wall_time:"), "{err}");
        let err = parse("[process]\nuid = 0\n").unwrap_err().to_string();
        assert!(err.contains("process.uid"), "{err}");
        let err = parse("[process]\ncwd = \"rel\"\n").unwrap_err().to_string();
        assert!(err.contains("process.cwd"), "{err}");
        let err = parse("[[filesystem.bind]]\nsrc = \"/no/such/dir\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(parse("[[filesystem.bind]]\nsrc = \"/no/such/dir\"\noptional = true\n").is_ok());
    }

    #[test]
    fn limits_parse_with_units_and_flags_win() {
        let text = "[limits]\ncpu_time = \"1500ms\"\nmemory = \"64MiB\"\nprocesses = 8\noutput = \"1MiB\"\nfile_size = \"16MiB\"\nstack = \"64MiB\"\nopen_files = 64\n";
        let profile = Profile::parse(text, "l.toml").unwrap();
        let p = Policy::resolve(&profile, &Overrides::default()).unwrap();
        assert_eq!(p.limits.cpu_time, Some(Duration::from_millis(1500)));
        assert_eq!(p.limits.memory, Some(64 << 20));
        assert_eq!(p.limits.processes, Some(8));
        assert_eq!(p.limits.output, Some(1 << 20));
        assert_eq!(p.limits.open_files, Some(64));
        assert_eq!(p.limits.address_space, None);
        let o = Overrides {
            limits: Limits {
                memory: Some(32 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let p = Policy::resolve(&profile, &o).unwrap();
        assert_eq!(
            (p.limits.memory, p.limits.processes),
            (Some(32 << 20), Some(8))
        );
        let err = parse("[limits]\nprocesses = 0\n").unwrap_err().to_string();
        assert!(
            err.starts_with("t.toml:2:13: limits.processes: must be at least 1"),
            "{err}"
        );
        let err = parse("[limits]\nmemory = \"64\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("limits.memory") && err.contains("unit is required"),
            "{err}"
        );
    }

    #[test]
    fn conditional_rules_replace_a_groups_allow() {
        let text = "[syscalls]\ngroups = [\"write\"]\n[[syscalls.rule]]\nname = \"write\"\nwhen = [\"arg0 == 1\"]\n[[syscalls.rule]]\nname = \"write\"\nwhen = [\"arg0 == 2\"]\n[[syscalls.rule]]\nname = \"socket\"\nwhen = [\"arg0 == AF_INET\"]\nerrno = \"EACCES\"\n";
        let p = parse(text).unwrap();
        let writes: Vec<_> = p.rules.iter().filter(|r| r.name == "write").collect();
        assert_eq!(writes.len(), 2);
        assert!(writes
            .iter()
            .all(|r| r.conditions.len() == 1 && r.action == Action::Allow));
        let socket = p.rules.iter().find(|r| r.name == "socket").unwrap();
        assert_eq!(socket.action, Action::Errno(libc::EACCES));
        let err =
            parse("[[syscalls.rule]]\nname = \"write\"\nwhen = [\"arg0 > 0\", \"arg0 < 3\"]\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with("t.toml:3:21: syscalls.rule.when: arg0 is compared twice"),
            "{err}"
        );
        let err = parse("[[syscalls.rule]]\nname = \"ptrace\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("always-denied core"), "{err}");
        let err = parse("[[syscalls.rule]]\nname = \"write\"\nwhen = [\"fd == 1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml:3:9: syscalls.rule.when:"), "{err}");
    }

    #[test]
    fn extending_adds_removes_and_overrides() {
        let dir = std::env::temp_dir().join(format!("moat-policy-extends-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = dir.join("child.toml");
        std::fs::write(
            &child,
            "extends = \"default\"\n[process]\nhostname = \"judge\"\nenv = { LANG = \"C\" }\n[limits]\nmemory = \"64MiB\"\n[syscalls]\nremove = [\"ioctl\"]\ngroups = [\"pipes\"]\n[syscalls.errno]\nsocket = \"EACCES\"\n",
        )
        .unwrap();
        let p = Policy::load(child.to_str().unwrap(), &Overrides::default()).unwrap();
        assert_eq!(
            p.profile,
            format!("built-in:default <- {}", child.display())
        );
        assert_eq!(p.hostname, "judge");
        assert_eq!(p.env_value("LANG"), Some("C"));
        assert_eq!(p.env_value("PATH"), Some("/usr/local/bin:/usr/bin:/bin"));
        assert_eq!(
            (p.limits.memory, p.limits.wall_time),
            (Some(64 << 20), Some(Duration::from_secs(60)))
        );
        let rule = |n: &str| p.rules.iter().find(|r| r.name == n);
        assert!(rule("ioctl").is_none());
        assert_eq!(rule("socket").unwrap().action, Action::Errno(libc::EACCES));
        assert!(rule("pipe2").unwrap().origin.starts_with("group pipes in "));
        assert_eq!(
            rule("exit_group").unwrap().origin,
            "group exit in built-in:default"
        );
        // A mistake in a layer is reported in that layer's file.
        std::fs::write(dir.join("base.toml"), "[limits]\nmemory = \"lots\"\n").unwrap();
        std::fs::write(&child, "extends = \"base.toml\"\n").unwrap();
        let err = Policy::load(child.to_str().unwrap(), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("base.toml:2:10: limits.memory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_extending_profile_appends_args_or_replaces_them_when_it_says_so() {
        let dir = std::env::temp_dir().join(format!("moat-policy-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = dir.join("child.toml");
        let java = Policy::load("java", &Overrides::default()).unwrap();
        assert!(java.args.iter().any(|a| a == "-XX:+ExitOnOutOfMemoryError"));
        assert_eq!(java.out_of_memory_exit_code, Some(3));
        std::fs::write(
            &child,
            "extends = \"java\"\n[process]\nargs = [\"-Dx=1\"]\n",
        )
        .unwrap();
        let p = Policy::load(child.to_str().unwrap(), &Overrides::default()).unwrap();
        let mut appended = java.args.clone();
        appended.push("-Dx=1".into());
        assert_eq!(p.args, appended);
        std::fs::write(
            &child,
            "extends = \"java\"\n[process]\nreplace_args = true\nargs = [\"-Dx=1\"]\n",
        )
        .unwrap();
        let p = Policy::load(child.to_str().unwrap(), &Overrides::default()).unwrap();
        assert_eq!(p.args, ["-Dx=1"]);
        // The base's out-of-memory code is kept unless the layer says otherwise.
        assert_eq!(p.out_of_memory_exit_code, Some(3));
        std::fs::write(
            &child,
            "extends = \"java\"\n[process]\nreplace_args = true\n",
        )
        .unwrap();
        assert!(Policy::load(child.to_str().unwrap(), &Overrides::default())
            .unwrap()
            .args
            .is_empty());
        // The shipped javac profile gives javac the JVM flags in javac's -J form.
        let javac = Policy::load("javac", &Overrides::default()).unwrap();
        assert!(
            javac.args.iter().all(|a| a.starts_with("-J-")),
            "{:?}",
            javac.args
        );
        assert!(javac
            .args
            .iter()
            .any(|a| a == "-J-XX:+ExitOnOutOfMemoryError"));
        for bad in ["0", "126", "-1", "300"] {
            std::fs::write(
                &child,
                format!("[process]\nout_of_memory_exit_code = {bad}\n"),
            )
            .unwrap();
            let err = Policy::load(child.to_str().unwrap(), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("process.out_of_memory_exit_code: use the exit code"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn overrides_apply() {
        let cwd = std::env::current_dir().unwrap();
        let o = Overrides {
            binds: vec![Bind::parse(".", false, &cwd).unwrap()],
            cwd: Some(cwd.clone()),
            env: vec![("LANG".into(), "C".into())],
            learn: false,
            workdir: None,
            limits: Limits {
                wall_time: Some(Duration::from_secs(2)),
                memory: Some(1 << 20),
                ..Default::default()
            },
        };
        let p = Policy::load("default", &o).unwrap();
        assert_eq!(p.cwd, cwd);
        assert_eq!(p.binds.last().unwrap().dst, cwd);
        assert_eq!(p.env_value("LANG"), Some("C"));
        assert_eq!(p.limits.wall_time, Some(Duration::from_secs(2)));
        assert_eq!(p.limits.memory, Some(1 << 20));
    }

    #[test]
    fn bind_specs() {
        let cwd = Path::new("/");
        let b = Bind::parse("/usr:/opt/u", true, cwd).unwrap();
        assert_eq!(
            (b.src.as_path(), b.dst.as_path(), b.rw),
            (Path::new("/usr"), Path::new("/opt/u"), true)
        );
        assert!(Bind::parse("/usr:rel", false, cwd).is_err());
        assert!(Bind::parse("/no/such", false, cwd).is_err());
        assert!(Bind::parse("/usr:/", false, cwd).is_err());
        assert_eq!(normalize(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
    }
}
