//! Compiling a rule set into the BPF program the jail loads: moat's core head first,
//! then libseccomp's program for the rules, whose default is a violation.

use super::bpf::AsmError;
use super::core::{self, is_denied};
use super::names::syscall_nr;
use super::rules::{Action, Rule};
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpFilterContext};
use std::io::{Read, Seek};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// `SECCOMP_RET_TRACE` data for a syscall outside the policy.
pub const TRACE_DENIED: u16 = 1;
/// `SECCOMP_RET_TRACE` data for a syscall of a foreign architecture (i386 `int 0x80`, x32).
pub const TRACE_BAD_ARCH: u16 = 2;
/// `SECCOMP_RET_TRACE` data, in learning mode only, for an allowed call that opens a
/// file: the monitor notes the path and lets it go on.
pub const TRACE_FILE: u16 = 4;

/// Calls that name a file, with the index of the path argument: traced when learning.
pub const FILE_CALLS: &[(&str, usize)] = &[
    ("open", 0),
    ("openat", 1),
    ("openat2", 1),
    ("execve", 0),
    ("execveat", 1),
];

/// The longest program the kernel loads (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// A compiled filter: the core's head followed by the rules' program. Only
/// [`compile`] makes one, so every filter moat loads carries the core.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    insns: Vec<libc::sock_filter>,
}

impl Filter {
    /// The instructions, as the kernel is given them.
    pub fn insns(&self) -> &[libc::sock_filter] {
        &self.insns
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }
}

/// What the filter does with `execve`/`execveat` after the program's own exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exec {
    /// A violation (the monitor lets the one exec that starts the program through,
    /// because no untrusted code has run yet when it happens).
    Initial,
    /// Allowed: shells and compilers start other programs.
    Allowed,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("libseccomp could not build the filter ({what}): {source}")]
    Build {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("could not export the compiled filter: {0}")]
    Export(#[from] std::io::Error),
    #[error("could not lay out the core's filter head: {0}")]
    Head(#[from] AsmError),
    #[error("the filter has {len} instructions, more than the kernel's {MAX_INSNS}: use fewer rule alternatives")]
    TooLong { len: usize },
}

fn build_err(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Build { what, source }
}

/// Compiles `rules` into the program the child loads.
///
/// The core's head comes first and overrules the rules for every core syscall (see
/// [`core::head`]). `learn`: calls that open files are traced rather than allowed, so
/// `moat learn` can list the files the program needed.
pub fn compile(rules: &[Rule], exec: Exec, learn: bool) -> Result<Filter, SeccompError> {
    let mut ctx = ScmpFilterContext::new(ScmpAction::Trace(TRACE_DENIED))
        .map_err(build_err("create context"))?;
    // i386 and x32 calls reach different kernel entry points with different numbers;
    // the native-only filter hands both to the monitor as an arch violation.
    ctx.set_act_badarch(ScmpAction::Trace(TRACE_BAD_ARCH))
        .map_err(build_err("bad-arch action"))?;
    // moat sets no_new_privs itself, right before loading; libseccomp must not.
    ctx.set_ctl_nnp(false).map_err(build_err("nnp attribute"))?;
    // A binary tree keeps the cost of an allowed call flat as profiles grow.
    let _ = ctx.set_ctl_optimize(2);

    for rule in rules {
        // The head decides every core syscall but the errno ones a profile may set;
        // an allow for one must not even reach libseccomp's program.
        if is_denied(&rule.name) && rule.action == Action::Allow {
            continue;
        }
        let traced = learn && FILE_CALLS.iter().any(|(n, _)| *n == rule.name);
        let action = match rule.action {
            Action::Allow if traced => ScmpAction::Trace(TRACE_FILE),
            Action::Allow => ScmpAction::Allow,
            Action::Errno(e) => ScmpAction::Errno(e),
        };
        let conditions: Vec<ScmpArgCompare> = rule.conditions.iter().map(|c| c.to_scmp()).collect();
        ctx.add_rule_conditional(action, rule.nr, &conditions)
            .map_err(build_err(format!("rule for {}", rule.name)))?;
    }
    if exec == Exec::Allowed {
        for name in ["execve", "execveat"] {
            let nr = syscall_nr(name).ok_or_else(|| {
                SeccompError::Export(std::io::Error::other(format!("{name} has no number")))
            })?;
            let action = if learn {
                ScmpAction::Trace(TRACE_FILE)
            } else {
                ScmpAction::Allow
            };
            ctx.add_rule(action, nr).map_err(build_err(name))?;
        }
    }
    let mut insns = core::head(rules)?;
    insns.extend(export(&ctx)?);
    if insns.len() > MAX_INSNS {
        return Err(SeccompError::TooLong { len: insns.len() });
    }
    Ok(Filter { insns })
}

/// libseccomp 2.5 (Debian 12) can only export to a file descriptor; a memfd keeps the
/// bytes off the file system.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    // SAFETY: memfd_create with a static NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"moat-bpf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ctx.export_bpf(fd.as_fd()).map_err(build_err("export"))?;
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % INSN != 0 {
        return Err(std::io::Error::other(format!(
            "libseccomp exported {} bytes, not a whole BPF program",
            bytes.len()
        ))
        .into());
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::bpf::{self, SeccompData};
    use crate::seccomp::core::TRACE_CORE;
    use crate::seccomp::names::{AUDIT_ARCH_I386, AUDIT_ARCH_X86_64};
    use crate::seccomp::rules::Condition;

    fn rule(name: &str, action: Action) -> Rule {
        Rule {
            name: name.into(),
            nr: syscall_nr(name).unwrap(),
            action,
            conditions: Vec::new(),
            origin: "test".into(),
        }
    }

    fn run(f: &Filter, arch: u32, nr: u32, args: [u64; 6]) -> (u32, u32) {
        let ret = bpf::run(
            f.insns(),
            &SeccompData {
                nr,
                arch,
                instruction_pointer: 0,
                args,
            },
        )
        .expect("the filter runs to a return");
        (
            ret & libc::SECCOMP_RET_ACTION_FULL,
            ret & libc::SECCOMP_RET_DATA,
        )
    }

    fn call(f: &Filter, name: &str, args: [u64; 6]) -> (u32, u32) {
        run(f, AUDIT_ARCH_X86_64, syscall_nr(name).unwrap() as u32, args)
    }

    const ALLOW: (u32, u32) = (libc::SECCOMP_RET_ALLOW, 0);
    const DENIED: (u32, u32) = (libc::SECCOMP_RET_TRACE, TRACE_DENIED as u32);
    const CORE: (u32, u32) = (libc::SECCOMP_RET_TRACE, TRACE_CORE as u32);

    #[test]
    fn compiles_conditional_and_errno_rules() {
        let rules = vec![
            rule("read", Action::Allow),
            rule("ioctl", Action::Allow),
            rule("clone", Action::Allow),
            rule("socket", Action::Errno(libc::EACCES)),
        ];
        let prog = compile(&rules, Exec::Initial, false).unwrap();
        assert!(prog.len() > 10);
        // The program starts by loading the arch word.
        assert_eq!(prog.insns()[0].code, bpf::LD_W_ABS);
        assert_eq!(prog.insns()[0].k, bpf::ARCH);
        assert_eq!(call(&prog, "read", [0; 6]), ALLOW);
    }

    #[test]
    fn core_checks_override_profile_allows() {
        let rules = vec![
            rule("ioctl", Action::Allow),
            rule("clone", Action::Allow),
            rule("personality", Action::Allow),
            rule("seccomp", Action::Allow),
            rule("socket", Action::Errno(libc::EACCES)),
        ];
        let prog = compile(&rules, Exec::Initial, false).unwrap();
        let tcgets = libc::TCGETS;
        assert_eq!(call(&prog, "ioctl", [1, tcgets, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(&prog, "ioctl", [1, libc::TIOCSTI, 0, 0, 0, 0]), CORE);
        assert_eq!(
            call(&prog, "ioctl", [1, (1 << 32) | libc::TIOCSTI, 0, 0, 0, 0]),
            CORE
        );
        assert_eq!(call(&prog, "ioctl", [1, libc::TIOCLINUX, 0, 0, 0, 0]), CORE);
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(call(&prog, "clone", [thread, 0, 0, 0, 0, 0]), ALLOW);
        let newns = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(call(&prog, "clone", [newns, 0, 0, 0, 0, 0]), CORE);
        let untraced = (libc::CLONE_UNTRACED | libc::SIGCHLD) as u64;
        assert_eq!(call(&prog, "clone", [untraced, 0, 0, 0, 0, 0]), CORE);
        assert_eq!(
            call(&prog, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            call(&prog, "personality", [0x0040_0000, 0, 0, 0, 0, 0]),
            CORE
        );
        let listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        assert_eq!(call(&prog, "seccomp", [1, listener, 0, 0, 0, 0]), CORE);
        assert_eq!(call(&prog, "seccomp", [1, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(
            call(&prog, "socket", [2, 1, 0, 0, 0, 0]),
            (libc::SECCOMP_RET_ERRNO, libc::EACCES as u32)
        );
        assert_eq!(
            call(&prog, "clone3", [0; 6]),
            (libc::SECCOMP_RET_ERRNO, libc::ENOSYS as u32)
        );
        // Not in the profile: traced as a violation; execve without allow_exec too.
        assert_eq!(call(&prog, "getpid", [0; 6]), DENIED);
        assert_eq!(call(&prog, "execve", [0; 6]), DENIED);
        // Foreign architectures and x32 numbers are handed over as arch violations.
        let bad_arch = (libc::SECCOMP_RET_TRACE, u32::from(TRACE_BAD_ARCH));
        assert_eq!(run(&prog, AUDIT_ARCH_I386, 20, [0; 6]), bad_arch);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 0x4000_0027, [0; 6]), bad_arch);
    }

    #[test]
    fn the_core_holds_against_rules_that_allow_it() {
        // Rules built by hand, as no profile could write them: the head still refuses.
        let mut rules: Vec<Rule> = crate::seccomp::core::CORE_DENIED
            .iter()
            .map(|n| rule(n, Action::Allow))
            .collect();
        let mut clone = rule("clone", Action::Allow);
        clone.conditions = vec![Condition::parse("arg0 & CLONE_THREAD == 0").unwrap()];
        rules.push(clone);
        for learn in [false, true] {
            let prog = compile(&rules, Exec::Allowed, learn).unwrap();
            for name in crate::seccomp::core::CORE_DENIED {
                let want = if *name == "clone3" {
                    (libc::SECCOMP_RET_ERRNO, libc::ENOSYS as u32)
                } else {
                    CORE
                };
                assert_eq!(call(&prog, name, [0; 6]), want, "{name} (learn {learn})");
            }
            let newuser = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
            assert_eq!(call(&prog, "clone", [newuser, 0, 0, 0, 0, 0]), CORE);
            assert_eq!(
                call(&prog, "clone", [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
                ALLOW
            );
        }
        // An errno is the one thing a profile may give a core syscall.
        let prog = compile(
            &[rule("ptrace", Action::Errno(libc::EPERM))],
            Exec::Initial,
            false,
        )
        .unwrap();
        assert_eq!(
            call(&prog, "ptrace", [0; 6]),
            (libc::SECCOMP_RET_ERRNO, libc::EPERM as u32)
        );
        // ...but not beside an allow.
        let prog = compile(
            &[
                rule("bpf", Action::Errno(libc::EPERM)),
                rule("bpf", Action::Allow),
            ],
            Exec::Initial,
            false,
        )
        .unwrap();
        assert_eq!(call(&prog, "bpf", [0; 6]), CORE);
    }

    #[test]
    fn conditions_filter() {
        let mut write = rule("write", Action::Allow);
        write.conditions = vec![Condition::parse("arg0 <= 2").unwrap()];
        let mut open = rule("openat", Action::Allow);
        open.conditions = vec![Condition::parse("arg2 & O_ACCMODE|O_CREAT == 0").unwrap()];
        let prog = compile(&[write, open], Exec::Initial, false).unwrap();
        assert_eq!(call(&prog, "write", [1, 0, 5, 0, 0, 0]), ALLOW);
        assert_eq!(call(&prog, "write", [3, 0, 5, 0, 0, 0]), DENIED);
        let rdonly = libc::O_RDONLY as u64;
        let creat = (libc::O_WRONLY | libc::O_CREAT) as u64;
        assert_eq!(call(&prog, "openat", [0, 0, rdonly, 0, 0, 0]), ALLOW);
        assert_eq!(call(&prog, "openat", [0, 0, creat, 0, 0, 0]), DENIED);
    }

    #[test]
    fn exec_allowed_only_on_request() {
        let prog = compile(&[], Exec::Allowed, false).unwrap();
        assert_eq!(call(&prog, "execve", [0; 6]), ALLOW);
    }
}
