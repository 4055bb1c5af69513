//! Plan: everything the child will need, computed in the parent from a Policy and the
//! command: the program's path, its libraries (from its ELF), the file tree, the id
//! maps, the compiled BPF filter, argv and envp. Building a plan changes nothing on the
//! host, so `moat plan` can print it and tests can check it without privileges.

pub mod cache;
pub mod ids;
pub mod ldso;
pub mod rootfs;

use crate::config::policy::{normalize, Policy};
use crate::config::templates;
use crate::plan::ids::IdMaps;
use crate::plan::ldso::cache::LdCache;
use crate::plan::ldso::ElfError;
use crate::plan::rootfs::{RootfsError, Tree, Wants};
use crate::seccomp::{self, SeccompError};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The namespaces every jail gets. A cgroup namespace is added where the kernel has it.
pub const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("pid", libc::CLONE_NEWPID),
    ("mount", libc::CLONE_NEWNS),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

/// Everything one run of a program in the jail needs, computed from a [`Policy`] and
/// the command. Only [`Plan::build`] makes one, from a validated Policy, so every plan
/// carries moat's core in its filter. A plan can be run many times.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) policy: Policy,
    /// The program's path inside the jail: its path on the host too, unless it is one
    /// of the files put into the work dir.
    pub(crate) program: PathBuf,
    pub(crate) argv: Vec<CString>,
    pub(crate) envp: Vec<CString>,
    pub(crate) dependencies: ldso::Dependencies,
    pub(crate) tree: Tree,
    pub(crate) ids: IdMaps,
    pub(crate) filter: seccomp::Filter,
    /// (resource, soft, hard) set in the sandboxee before exec.
    pub(crate) rlimits: Vec<(crate::config::limits::Resource, u64, u64)>,
    /// Whether init brings the loopback up: only when the program may open a socket
    /// (or is learning what it calls). Without `socket` the interface is of no use to
    /// it, and bringing it up costs the kernel some 50-100 us of address setup.
    pub(crate) loopback: bool,
    /// Whether the plan came from the plan cache.
    pub(crate) from_cache: bool,
    /// Whether the filter makes every call that could set a set-user-ID or
    /// set-group-ID bit fail (see [`setid_guard`]): a root caller's plan with writable
    /// binds, which may be bound id-mapped (`jail::idmap`).
    pub(crate) setid_guard: bool,
}

/// What a plan is made of before its filter is compiled and its id maps are read from
/// the caller: everything the plan cache keeps. The filter and the ids are always made
/// afresh, so no cache file can lift the core or map the program to another outside
/// id than the running moat's.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Parts {
    pub policy: Policy,
    pub program: PathBuf,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub dependencies: ldso::Dependencies,
    pub tree: Tree,
    pub rlimits: Vec<(crate::config::limits::Resource, u64, u64)>,
    pub loopback: bool,
}

/// Why a plan could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The program is not where it was named, or not in the profile's PATH.
    #[error("program `{name}` not found (searched {searched})")]
    ProgramNotFound {
        /// The name as given.
        name: String,
        /// Where it was looked for.
        searched: String,
    },
    /// The program exists but cannot be executed.
    #[error("program {path} is not executable: {why}")]
    NotExecutable {
        /// The program found.
        path: PathBuf,
        /// Why it cannot be run, and the fix.
        why: String,
    },
    /// The command is empty.
    #[error("no program given: put it after `--`, e.g. `moat run -- /bin/echo hello`")]
    NoProgram,
    /// An argument or environment entry holds a NUL byte.
    #[error("argument or environment entry {0:?} contains a NUL byte")]
    Nul(String),
    /// The program's ELF or its libraries (a missing library names the binary that
    /// needs it).
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// A limit needs an rlimit above the one this process may give (no one can raise a
    /// hard rlimit without privileges over the whole machine).
    #[error("limit {limit} = {value} needs {rlimit} {needed}, above this process's hard limit of {hard}: lower the limit, or raise the hard limit before starting moat (ulimit -H, or LimitNOFILE=/LimitNPROC= in a systemd unit)")]
    AboveHardLimit {
        /// The limit's key.
        limit: &'static str,
        /// Its value, as a person writes it.
        value: String,
        /// The rlimit it sets.
        rlimit: &'static str,
        /// The hard value it needs.
        needed: u64,
        /// The hard value this process has.
        hard: u64,
    },
    /// The jail's file tree cannot be laid out as asked.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The filter could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

fn cstring(bytes: &[u8]) -> Result<CString, PlanError> {
    CString::new(bytes).map_err(|_| PlanError::Nul(String::from_utf8_lossy(bytes).into_owned()))
}

impl Plan {
    /// Builds the plan for running `command` (program and arguments) under `policy`.
    pub fn build(policy: Policy, command: &[OsString]) -> Result<Plan, PlanError> {
        // glibc ignores a cache it cannot read; so do we (libraries are then looked
        // up in the default directories, as the loader would).
        let cache = LdCache::load().unwrap_or_default();
        Self::build_with(policy, command, &cache)
    }

    /// As `build`, with an ld.so.cache already loaded (a caller running many plans
    /// reads it once).
    pub(crate) fn build_with(
        policy: Policy,
        command: &[OsString],
        cache: &LdCache,
    ) -> Result<Plan, PlanError> {
        let name = command.first().ok_or(PlanError::NoProgram)?;
        let (program, dependencies) = match in_workdir(name, &policy)? {
            Some((inside, file)) => {
                let deps = ldso::resolve_inside(&inside, file, &policy.library_path, cache)?;
                (inside, deps)
            }
            None => {
                let program = find_program(name, &policy)?;
                let deps = ldso::resolve(&program, &policy.library_path, cache)?;
                (program, deps)
            }
        };
        let mut files = dependencies.files.clone();
        // The loader inside finds libraries outside its default directories (e.g.
        // /usr/local/lib) only through the cache; it is an index of paths, read-only.
        let ld_cache = Path::new(crate::plan::ldso::cache::DEFAULT_PATH);
        if dependencies.interpreter.is_some() && ld_cache.is_file() {
            files.push(ld_cache.to_path_buf());
        }
        // The template's files, with the jail's own ids and hostname filled in.
        let template_files: Vec<(PathBuf, Vec<u8>)> = policy
            .template
            .iter()
            .flat_map(|t| templates::files(t))
            .map(|(path, contents)| {
                (
                    Path::new("/").join(path),
                    templates::fill(contents, policy.uid, policy.gid, &policy.hostname),
                )
            })
            .collect();
        let tree = rootfs::plan(&Wants {
            binds: &policy.binds,
            tmpfs: &policy.tmpfs,
            program_files: &files,
            files: &template_files,
            proc: policy.proc,
            dev: policy.dev,
            cwd: &policy.cwd,
            workdir: policy.workdir.as_ref(),
        })?;
        // argv[0], then the profile's arguments (those whose limits are set), then
        // the caller's.
        let profile_args = policy
            .args
            .iter()
            .filter_map(|t| crate::config::args::expand(t, &policy.limits))
            .map(OsString::from);
        let argv = command[..1]
            .iter()
            .cloned()
            .chain(profile_args)
            .chain(command[1..].iter().cloned())
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = policy.env.clone();
        // Without /proc the loader cannot find the program's own directory for
        // `$ORIGIN` in its RPATH/RUNPATH; LD_ORIGIN_PATH is its documented fallback.
        if let Some(origin) = &dependencies.main_origin {
            if !policy.proc && policy.env_value("LD_ORIGIN_PATH").is_none() {
                env.push(("LD_ORIGIN_PATH".into(), origin.display().to_string()));
                env.sort();
            }
        }
        let envp = env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let rlimits = policy.limits.rlimits();
        let loopback = policy.learn
            || policy
                .rules
                .iter()
                .any(|r| r.name == "socket" && r.action == seccomp::Action::Allow);
        Plan::finish(
            Parts {
                policy,
                program,
                argv,
                envp,
                dependencies,
                tree,
                rlimits,
                loopback,
            },
            false,
        )
    }

    /// Completes a plan from its parts: the filter compiled from the policy's rules
    /// (moat's core in it by construction), the id maps from the running caller, and
    /// the rlimits checked against this process's hard limits.
    pub(crate) fn finish(parts: Parts, from_cache: bool) -> Result<Plan, PlanError> {
        let Parts {
            policy,
            program,
            argv,
            envp,
            dependencies,
            tree,
            rlimits,
            loopback,
        } = parts;
        let ids = IdMaps::for_current_caller(policy.uid, policy.gid);
        let guard = ids.privileged && tree.writable_binds().next().is_some();
        let guarded: Vec<seccomp::Rule>;
        let rules = if guard {
            guarded = setid_guard().chain(policy.rules.iter().cloned()).collect();
            &guarded
        } else {
            &policy.rules
        };
        let filter = seccomp::compile(
            rules,
            if policy.allow_exec {
                seccomp::Exec::Allowed
            } else {
                seccomp::Exec::Initial
            },
            policy.learn,
        )?;
        check_hard_limits(&policy.limits)?;
        Ok(Plan {
            policy,
            program,
            argv,
            envp,
            dependencies,
            tree,
            ids,
            filter,
            rlimits,
            loopback,
            from_cache,
            setid_guard: guard,
        })
    }

    /// The parts the plan cache keeps of this plan.
    pub(crate) fn parts(&self) -> Parts {
        Parts {
            policy: self.policy.clone(),
            program: self.program.clone(),
            argv: self.argv.clone(),
            envp: self.envp.clone(),
            dependencies: self.dependencies.clone(),
            tree: self.tree.clone(),
            rlimits: self.rlimits.clone(),
            loopback: self.loopback,
        }
    }

    /// Whether this plan came from the plan cache (see [`PlanCache`](cache::PlanCache)).
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// The policy the plan was built from.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The program's path inside the jail (the same on the host, unless it is one of
    /// the files put into the work dir).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The program's arguments as it gets them, `argv[0]` first.
    pub fn argv(&self) -> impl Iterator<Item = &OsStr> {
        self.argv.iter().map(|a| OsStr::from_bytes(a.as_bytes()))
    }
}

/// The calls that create a file with a mode or change one, with the index of the mode
/// argument (x86-64): the only ways to a set-user-ID or set-group-ID file (the
/// kernel clears both bits when a file is written without CAP_FSETID, and links and
/// renames cannot cross into another mount).
const MODE_CALLS: &[(&str, u32)] = &[
    ("chmod", 1),
    ("fchmod", 1),
    ("fchmodat", 2),
    ("fchmodat2", 2),
    ("creat", 1),
    ("open", 2),
    ("openat", 3),
    ("mknod", 1),
    ("mknodat", 2),
];

/// Rules put in front of a plan's own when a root caller's jail may write through an
/// id-mapped mount (`jail::idmap`), where what it creates is owned by the directory's
/// owner on the host, root among them: a set-user-ID (or set-group-ID) file it left
/// there would run as that owner for anyone on the host. Each call that gives a file a
/// mode fails with EPERM when the mode holds either bit, before any rule of the
/// profile is looked at (the first rule that holds decides); `openat2`, whose mode is
/// behind a pointer the filter cannot read, fails with ENOSYS, as on kernels before
/// 5.6, and C libraries then use `openat`. Nothing else changes: a mode without those
/// bits goes on to the profile's rules, allowed or not as before.
fn setid_guard() -> impl Iterator<Item = seccomp::Rule> {
    let rule = |name: &str, action, conditions| {
        seccomp::names::syscall_nr(name).map(|nr| seccomp::Rule {
            name: name.to_string(),
            nr,
            action,
            conditions,
            origin: "core: no set-user-ID files in an id-mapped writable bind".to_string(),
        })
    };
    let bit = |arg: u32, bit: u32| seccomp::Condition {
        arg,
        op: seccomp::rules::CmpOp::MaskedEq(u64::from(bit)),
        value: u64::from(bit),
    };
    let eperm = seccomp::Action::Errno(libc::EPERM);
    MODE_CALLS
        .iter()
        .flat_map(move |&(name, arg)| {
            [libc::S_ISUID, libc::S_ISGID]
                .into_iter()
                .filter_map(move |b| rule(name, eperm, vec![bit(arg, b)]))
        })
        .chain(rule(
            "openat2",
            seccomp::Action::Errno(libc::ENOSYS),
            Vec::new(),
        ))
}

/// Refuses, before anything runs, a limit whose rlimit the child could not set: the
/// jail's user namespace gives no power over rlimits, which belong to the whole
/// machine, so a hard limit above the caller's fails with EPERM.
fn check_hard_limits(limits: &crate::config::limits::Limits) -> Result<(), PlanError> {
    for (spec, value) in limits.set_ones() {
        let Some(r) = &spec.rlimit else { continue };
        let (_, needed) = (r.values)(value);
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct we own.
        if unsafe { libc::getrlimit(r.resource, &mut cur) } != 0 {
            continue;
        }
        if cur.rlim_max != libc::RLIM_INFINITY && needed > cur.rlim_max {
            return Err(PlanError::AboveHardLimit {
                limit: spec.key,
                value: spec.format(value),
                rlimit: r.name,
                needed,
                hard: cur.rlim_max,
            });
        }
    }
    Ok(())
}

/// The program when it is one of the files put into the work dir: a path with a `/`
/// that, taken from the jail's working directory, lands in the work dir (`./a` run in
/// `/w`). Its bytes come from memory (a sealed memory file for the ELF reader), as
/// they never were a host file.
fn in_workdir(
    name: &OsStr,
    policy: &Policy,
) -> Result<Option<(PathBuf, std::fs::File)>, PlanError> {
    let Some(w) = &policy.workdir else {
        return Ok(None);
    };
    if !name.as_bytes().contains(&b'/') {
        return Ok(None);
    }
    let inside = normalize(&policy.cwd.join(Path::new(name)));
    let Ok(rel) = inside.strip_prefix(&w.path) else {
        return Ok(None);
    };
    let Some(f) = w.files_in.iter().find(|f| f.name == rel) else {
        return Err(PlanError::ProgramNotFound {
            name: name.to_string_lossy().into_owned(),
            searched: format!("the files put in the work dir {}", w.path.display()),
        });
    };
    if f.mode & 0o111 == 0 {
        return Err(PlanError::NotExecutable {
            path: inside,
            why: format!(
                "it was put in with mode {:o}; give it an executable mode (e.g. 755)",
                f.mode
            ),
        });
    }
    let file = memory_file(&f.contents).map_err(|source| {
        PlanError::Elf(ElfError::Io {
            path: inside.clone(),
            source,
        })
    })?;
    Ok(Some((inside, file)))
}

/// A memory file holding `bytes`.
fn memory_file(bytes: &[u8]) -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create with a NUL-terminated name and a flags word.
    let fd = unsafe { libc::memfd_create(c"moat-program".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned by no one else.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::io::Write::write_all(&mut &file, bytes)?;
    Ok(file)
}

/// Finds the program as a shell would: a bare name is searched in the profile's PATH;
/// a name with a `/` is a path, and a relative one is taken from the jail's working
/// directory, as `cd CWD && ./sol` would inside: where a bind shows that directory, the
/// program is the host file the bind shows (`--bind-rw /tmp/x:/w --cwd /w -- ./sol` is
/// /tmp/x/sol, and `--bind . --cwd "$PWD" -- ./sol` the sol in the caller's
/// directory). A cwd that no bind shows has no host files of its own (`/` of a fresh
/// root), so the name is taken from the calling process's directory there, as the
/// shell that started moat sees it (`moat run -- ./hello`). The library and the
/// command line resolve alike; nothing depends on which thread or process asks. The
/// program is mounted at its host path inside, so its path on the host is its path in
/// the jail.
fn find_program(name: &OsStr, policy: &Policy) -> Result<PathBuf, PlanError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(PlanError::NoProgram);
    }
    if bytes.contains(&b'/') {
        let inside = normalize(&policy.cwd.join(Path::new(name)));
        let binds = &policy.binds;
        let shows_cwd = crate::config::policy::bind_showing(binds, &policy.cwd).is_some();
        let path = if shows_cwd && !Path::new(name).is_absolute() {
            let Some((b, rest)) = crate::config::policy::bind_showing(binds, &inside) else {
                return Err(PlanError::ProgramNotFound {
                    name: name.to_string_lossy().into_owned(),
                    searched: format!(
                        "{} in the jail (from the working directory {}), which no bind shows",
                        inside.display(),
                        policy.cwd.display()
                    ),
                });
            };
            normalize(&b.src.join(rest))
        } else {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
            normalize(&cwd.join(Path::new(name)))
        };
        return match check_executable(&path) {
            Ok(()) => Ok(path),
            Err(Missing) => Err(PlanError::ProgramNotFound {
                name: name.to_string_lossy().into_owned(),
                searched: path.display().to_string(),
            }),
            Err(NotExec(why)) => Err(PlanError::NotExecutable { path, why }),
        };
    }
    let search = policy
        .env_value("PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin");
    let mut first_not_exec = None;
    for dir in search.split(':').filter(|d| d.starts_with('/')) {
        let path = Path::new(dir).join(name);
        match check_executable(&path) {
            Ok(()) => return Ok(path),
            Err(NotExec(why)) if first_not_exec.is_none() => first_not_exec = Some((path, why)),
            Err(_) => {}
        }
    }
    match first_not_exec {
        Some((path, why)) => Err(PlanError::NotExecutable { path, why }),
        None => Err(PlanError::ProgramNotFound {
            name: name.to_string_lossy().into_owned(),
            searched: format!("PATH={search}"),
        }),
    }
}

enum Unusable {
    Missing,
    NotExec(String),
}
use Unusable::{Missing, NotExec};

fn check_executable(path: &Path) -> Result<(), Unusable> {
    let meta = std::fs::metadata(path).map_err(|_| Missing)?;
    if meta.is_dir() {
        return Err(NotExec("it is a directory".into()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(NotExec(format!(
            "no execute permission (mode {:o}); chmod +x it",
            meta.permissions().mode() & 0o7777
        )));
    }
    Ok(())
}

impl Plan {
    /// Says what the plan holds, as `tracing` events: the profile and where the plan
    /// came from, the program and its loader (info); each library and each step of the
    /// root (debug).
    pub(crate) fn log(&self) {
        let p = &self.policy;
        tracing::info!(
            "profile {} ({})",
            p.profile,
            if self.from_cache() {
                "plan from the cache: every input as it was"
            } else {
                "plan built afresh"
            }
        );
        tracing::info!(
            "program {} (loader {}, {} files bound for it; cwd {}, uid/gid {}/{} inside)",
            self.program.display(),
            self.dependencies
                .interpreter
                .as_ref()
                .map_or_else(|| "none: static".to_string(), |i| i.display().to_string()),
            self.dependencies.files.len(),
            p.cwd.display(),
            p.uid,
            p.gid
        );
        if tracing::enabled!(tracing::Level::DEBUG) {
            for file in &self.dependencies.files {
                tracing::debug!("file for the program: {}", file.display());
            }
            for step in &self.tree.steps {
                tracing::debug!("mount step: {step}");
            }
        }
    }
}

impl fmt::Display for Plan {
    /// What `moat plan` prints: everything that would be built, nothing run.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.policy;
        writeln!(f, "profile     {}", p.profile)?;
        writeln!(f, "program     {}", self.program.display())?;
        let args: Vec<_> = self
            .argv
            .iter()
            .map(|a| format!("{:?}", a.to_string_lossy()))
            .collect();
        writeln!(f, "argv        [{}]", args.join(", "))?;
        let names: Vec<_> = NAMESPACES.iter().map(|(n, _)| *n).collect();
        writeln!(f, "namespaces  {}", names.join(", "))?;
        if self.loopback {
            writeln!(f, "network     loopback only, up")?;
        } else {
            writeln!(
                f,
                "network     loopback only, down (no socket call allowed)"
            )?;
        }
        writeln!(
            f,
            "uid_map     {} (inside {} = outside {})",
            self.ids.uid_map().trim_end(),
            self.ids.inside_uid,
            self.ids.outside_uid
        )?;
        writeln!(
            f,
            "gid_map     {} (inside {} = outside {})",
            self.ids.gid_map().trim_end(),
            self.ids.inside_gid,
            self.ids.outside_gid
        )?;
        writeln!(f, "hostname    {}", p.hostname)?;
        writeln!(f, "cwd         {}", p.cwd.display())?;
        writeln!(f, "env")?;
        for kv in &self.envp {
            writeln!(f, "  {}", kv.to_string_lossy())?;
        }
        match &self.dependencies.interpreter {
            Some(i) => writeln!(f, "loader      {}", i.display())?,
            None => writeln!(f, "loader      none (static)")?,
        }
        writeln!(f, "files       {}", self.dependencies.files.len())?;
        for file in &self.dependencies.files {
            writeln!(f, "  {}", file.display())?;
        }
        writeln!(
            f,
            "mounts      tmpfs / (size={},mode=755,nosuid,nodev), read-only at the end",
            crate::config::units::Size(self.tree.root_size)
        )?;
        for step in &self.tree.steps {
            writeln!(f, "  {step}")?;
        }
        // What a root caller's jail could not write as it is gets an id-mapped mount
        // (decided again when the jail is built: the owner may change by then).
        for (_, src, dir) in self.tree.writable_binds() {
            use std::os::unix::fs::MetadataExt;
            let Ok(m) = std::fs::metadata(src) else {
                continue;
            };
            let (uid, gid) = (self.ids.outside_uid, self.ids.outside_gid);
            if self.ids.privileged && rootfs::needs_idmap(m.mode(), m.uid(), m.gid(), uid, gid, dir)
            {
                writeln!(
                    f,
                    "  idmap    {} (its owner {}:{} is the jail's {uid}:{gid}; what the jail creates there is {}:{}'s)",
                    src.display(),
                    m.uid(),
                    m.gid(),
                    m.uid(),
                    m.gid()
                )?;
            }
        }
        writeln!(
            f,
            "privileges  setsid; all capabilities dropped, securebits locked; no_new_privs"
        )?;
        let names = |r| match r {
            libc::RLIMIT_CORE => "core",
            libc::RLIMIT_NOFILE => "nofile",
            libc::RLIMIT_FSIZE => "fsize",
            libc::RLIMIT_STACK => "stack",
            libc::RLIMIT_AS => "as",
            libc::RLIMIT_NPROC => "nproc",
            libc::RLIMIT_CPU => "cpu",
            _ => "other",
        };
        let rl: Vec<String> = self
            .rlimits
            .iter()
            .map(|(r, soft, hard)| {
                if soft == hard {
                    format!("{}={soft}", names(*r))
                } else {
                    format!("{}={soft}/{hard}", names(*r))
                }
            })
            .collect();
        writeln!(f, "rlimits     {}", rl.join(" "))?;
        let limits: Vec<String> = crate::config::limits::TABLE
            .iter()
            .map(|spec| {
                let v = p.limits.get(spec.limit);
                format!(
                    "{}={}",
                    spec.key,
                    v.map_or("none".into(), |v| spec.format(v))
                )
            })
            .collect();
        writeln!(f, "limits      {}", limits.join(" "))?;
        writeln!(
            f,
            "seccomp     default: violation (trace); {} rules; {} BPF instructions",
            p.rules.len(),
            self.filter.len()
        )?;
        writeln!(
            f,
            "  exec       {}",
            if p.allow_exec {
                "allowed"
            } else {
                "only the initial exec"
            }
        )?;
        for rule in &p.rules {
            let action = match rule.action {
                seccomp::Action::Allow => "allow".to_string(),
                seccomp::Action::Errno(e) => format!(
                    "errno {}",
                    crate::seccomp::names::errno_name(e).unwrap_or_else(|| e.to_string())
                ),
            };
            let when: Vec<String> = rule.conditions.iter().map(|c| c.to_string()).collect();
            let when = if when.is_empty() {
                String::new()
            } else {
                format!(" when {}", when.join(" && "))
            };
            writeln!(
                f,
                "  {:<22} {:<14} ({}){when}",
                rule.name, action, rule.origin
            )?;
        }
        writeln!(
            f,
            "  clone3                 errno ENOSYS   (core: libc falls back to clone)"
        )?;
        for (name, why) in seccomp::CORE_CONDITIONAL {
            writeln!(f, "  core: {name} {why}")?;
        }
        writeln!(
            f,
            "  core: always denied: {}",
            seccomp::CORE_DENIED.join(", ")
        )?;
        if self.setid_guard {
            let calls: Vec<&str> = MODE_CALLS.iter().map(|(n, _)| *n).collect();
            writeln!(
                f,
                "  core: {} with a set-user-ID or set-group-ID mode: errno EPERM; openat2: errno ENOSYS (writable binds of a root caller)",
                calls.join(", ")
            )?;
        }
        writeln!(f, "  core: foreign architectures (i386, x32): violation")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::Overrides;
    use crate::config::profile::Profile;
    use crate::plan::rootfs::Step;

    fn plan(text: &str, command: &[&str]) -> Plan {
        let profile = Profile::parse(text, "t.toml").unwrap();
        let policy = Policy::resolve(&profile, &Overrides::default()).unwrap();
        let command: Vec<OsString> = command.iter().map(OsString::from).collect();
        Plan::build(policy, &command).unwrap()
    }

    #[test]
    fn the_setid_guard_refuses_setuid_modes_and_leaves_the_rest_to_the_profile() {
        use crate::seccomp::bpf::{self, SeccompData};
        use crate::seccomp::names::{syscall_nr, AUDIT_ARCH_X86_64};
        let allow = |name: &str| seccomp::Rule {
            name: name.into(),
            nr: syscall_nr(name).unwrap(),
            action: seccomp::Action::Allow,
            conditions: Vec::new(),
            origin: "test".into(),
        };
        // A profile that allows chmod and openat outright, and not mknod.
        let rules: Vec<seccomp::Rule> = setid_guard()
            .chain([allow("chmod"), allow("openat"), allow("openat2")])
            .collect();
        let filter = seccomp::compile(&rules, seccomp::Exec::Initial, false).unwrap();
        let call = |name: &str, args: [u64; 6]| {
            let data = SeccompData {
                nr: syscall_nr(name).unwrap() as u32,
                arch: AUDIT_ARCH_X86_64,
                instruction_pointer: 0,
                args,
            };
            bpf::run(filter.insns(), &data).unwrap()
        };
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let suid = u64::from(libc::S_ISUID);
        let sgid = u64::from(libc::S_ISGID);
        assert_eq!(call("chmod", [0, 0o4755, 0, 0, 0, 0]), eperm);
        assert_eq!(call("chmod", [0, 0o2755, 0, 0, 0, 0]), eperm);
        assert_eq!(
            call("chmod", [0, 0o755, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        let creat = (libc::O_CREAT | libc::O_WRONLY) as u64;
        assert_eq!(call("openat", [0, 0, creat, suid | 0o755, 0, 0]), eperm);
        assert_eq!(
            call("openat", [0, 0, creat, 0o644, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        // Not allowed by the profile: with the bit EPERM, without it the violation it was.
        let mknod = (libc::S_IFREG as u64) | sgid | 0o755;
        assert_eq!(call("mknodat", [0, 0, mknod, 0, 0, 0]), eperm);
        let traced = call("mknodat", [0, 0, libc::S_IFREG as u64 | 0o644, 0, 0, 0]);
        assert_eq!(
            traced & libc::SECCOMP_RET_ACTION_FULL,
            libc::SECCOMP_RET_TRACE
        );
        // openat2's mode is behind a pointer: ENOSYS whatever the profile says.
        assert_eq!(
            call("openat2", [0; 6]),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        for (name, _) in MODE_CALLS {
            assert!(syscall_nr(name).is_some(), "{name}");
        }
    }

    const JUDGE: &str = "extends = \"default\"\n[process]\nhostname = \"judge\"\nuid = 1234\n\
        args = [\"--heap={memory_mib*3/4}m\", \"--stack={stack_mib}m\"]\n\
        [filesystem]\ntemplate = \"base\"\n[limits]\nmemory = \"64MiB\"\nprocesses = 4\n";

    #[test]
    fn template_files_are_filled_in() {
        let p = plan(JUDGE, &["/bin/true"]);
        let file = |want: &str| {
            p.tree.steps.iter().find_map(|s| match s {
                Step::File { path, contents, .. } if path == Path::new(want) => {
                    Some(contents.clone())
                }
                _ => None,
            })
        };
        let text = |want: &str| String::from_utf8_lossy(&file(want).unwrap()).into_owned();
        assert!(text("/etc/passwd").contains("sandbox:x:1234:1000:"));
        assert!(text("/etc/hosts").contains("127.0.1.1\tjudge"));
        assert!(file("/README.md").is_none());
        assert!(
            file("/etc/localtime").unwrap().starts_with(b"TZif"),
            "binary files are copied as they are"
        );
        let pos = |f: &dyn Fn(&Step) -> bool| p.tree.steps.iter().position(f).unwrap();
        let etc = pos(&|s| matches!(s, Step::Mkdir { path } if path == Path::new("/etc")));
        let passwd =
            pos(&|s| matches!(s, Step::File { path, .. } if path == Path::new("/etc/passwd")));
        assert!(etc < passwd);
    }

    #[test]
    fn the_plan_prints_everything_that_would_be_built() {
        let p = plan(JUDGE, &["/bin/true", "x"]);
        let text = p.to_string();
        let has = |line: &str| {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            )
        };
        has("program     /bin/true");
        // The template whose limit is unset (stack) is left out.
        has("argv        [\"/bin/true\", \"--heap=48m\", \"x\"]");
        has("namespaces  user, pid, mount, ipc, uts, net, cgroup");
        has("hostname    judge");
        has("cwd         /");
        has("  PATH=/usr/local/bin:/usr/bin:/bin");
        has("rlimits     core=0 nproc=5");
        has("limits      cpu_time=none wall_time=60s memory=64MiB processes=4 output=none file_size=none stack=none open_files=none address_space=none");
        has("  exec       only the initial exec");
        has("  clone3                 errno ENOSYS   (core: libc falls back to clone)");
        has("  core: foreign architectures (i386, x32): violation");
        assert!(
            text.contains("profile     built-in:default <- t.toml"),
            "{text}"
        );
        assert!(
            text.lines().any(
                |l| l.starts_with("uid_map     1234 ") && l.contains("(inside 1234 = outside ")
            ),
            "{text}"
        );
        assert!(
            text.contains("  core: always denied: ptrace, bpf, mount"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("loader      /") && l.contains("ld-linux")),
            "{text}"
        );
        assert!(
            text.contains(
                "mounts      tmpfs / (size=1MiB,mode=755,nosuid,nodev), read-only at the end"
            ),
            "{text}"
        );
        assert!(text.contains("  file     /etc/passwd ("), "{text}");
        assert!(
            text.lines().any(
                |l| l.starts_with("seccomp     default: violation (trace); ")
                    && l.ends_with(" BPF instructions")
            ),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with("  read ")
                && l.contains("allow")
                && l.contains("(group startup in built-in:default)")),
            "{text}"
        );
    }
}
