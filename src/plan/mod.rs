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
        let filter = seccomp::compile(
            &policy.rules,
            if policy.allow_exec {
                seccomp::Exec::Allowed
            } else {
                seccomp::Exec::Initial
            },
            policy.learn,
        )?;
        let ids = IdMaps::for_current_caller(policy.uid, policy.gid);
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

/// Finds the program as a shell would: a name with a `/` is a path (relative to the
/// caller's directory), a bare name is searched in the profile's PATH. The program is
/// mounted at the same path inside, so its path on the host is its path in the jail.
fn find_program(name: &OsStr, policy: &Policy) -> Result<PathBuf, PlanError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(PlanError::NoProgram);
    }
    if bytes.contains(&b'/') {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let path = normalize(&cwd.join(Path::new(name)));
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
