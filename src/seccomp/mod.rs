//! The syscall filter: the profile's rules plus moat's always-denied core, compiled by
//! libseccomp into classic BPF in the parent. The child only hands the finished bytes
//! to the kernel, so nothing is compiled (or allocated) after the clone.
//!
//! Everything the profile does not allow returns `SECCOMP_RET_TRACE`: the monitor stops
//! the sandbox and reports the call. A filter that killed instead would leave us only a
//! SIGSYS and no name, number or arguments.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use std::io::{Read, Seek};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

/// `SECCOMP_RET_TRACE` data for a syscall outside the policy.
pub const TRACE_DENIED: u16 = 1;
/// `SECCOMP_RET_TRACE` data for a syscall of a foreign architecture (i386 `int 0x80`, x32).
pub const TRACE_BAD_ARCH: u16 = 2;
/// `SECCOMP_RET_TRACE` data for a call the core's argument checks refuse.
pub const TRACE_CORE: u16 = 3;
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

pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// Syscalls no profile may allow; a profile may only make them fail with an errno.
/// Each one either breaks out of the jail's namespaces and mounts (mount family,
/// unshare, setns, pivot_root, open_by_handle_at), reaches the kernel's most exposed
/// surfaces (bpf, io_uring, perf_event_open, userfaultfd, keyrings), or acts on the
/// whole machine (kexec, modules, reboot, swap).
pub const CORE_DENIED: &[&str] = &[
    "ptrace",
    "bpf",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "open_tree",
    "mount_setattr",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "perf_event_open",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "clone3",
    "iopl",
    "ioperm",
];

/// Syscalls a profile may allow, but only with the core's argument conditions attached.
pub const CORE_CONDITIONAL: &[(&str, &str)] = &[
    ("clone", "only without namespace flags or CLONE_UNTRACED"),
    ("ioctl", "never TIOCSTI or TIOCLINUX"),
    ("personality", "only the query personality(0xffffffff)"),
    ("seccomp", "never SECCOMP_FILTER_FLAG_NEW_LISTENER"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(i32),
}

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`
    MaskedEq(u64),
}

/// One argument condition of a rule: `arg{arg} {op} {value}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    pub arg: u32,
    pub op: CmpOp,
    pub value: u64,
}

/// Constants a condition may name instead of a number (`|` combines them).
const CONSTANTS: &[(&str, u64)] = &[
    ("O_RDONLY", libc::O_RDONLY as u64),
    ("O_WRONLY", libc::O_WRONLY as u64),
    ("O_RDWR", libc::O_RDWR as u64),
    ("O_ACCMODE", libc::O_ACCMODE as u64),
    ("O_CREAT", libc::O_CREAT as u64),
    ("O_TRUNC", libc::O_TRUNC as u64),
    ("O_APPEND", libc::O_APPEND as u64),
    ("O_EXCL", libc::O_EXCL as u64),
    ("O_TMPFILE", libc::O_TMPFILE as u64),
    ("CLONE_VM", libc::CLONE_VM as u64),
    ("CLONE_FS", libc::CLONE_FS as u64),
    ("CLONE_FILES", libc::CLONE_FILES as u64),
    ("CLONE_SIGHAND", libc::CLONE_SIGHAND as u64),
    ("CLONE_THREAD", libc::CLONE_THREAD as u64),
    ("CLONE_VFORK", libc::CLONE_VFORK as u64),
    ("AF_UNIX", libc::AF_UNIX as u64),
    ("AF_INET", libc::AF_INET as u64),
    ("AF_INET6", libc::AF_INET6 as u64),
    ("AF_NETLINK", libc::AF_NETLINK as u64),
    ("PROT_READ", libc::PROT_READ as u64),
    ("PROT_WRITE", libc::PROT_WRITE as u64),
    ("PROT_EXEC", libc::PROT_EXEC as u64),
    ("MAP_SHARED", libc::MAP_SHARED as u64),
    ("MAP_PRIVATE", libc::MAP_PRIVATE as u64),
    ("MAP_ANONYMOUS", libc::MAP_ANONYMOUS as u64),
    ("SIGKILL", libc::SIGKILL as u64),
];

fn parse_value(text: &str) -> Result<u64, String> {
    let mut total = 0u64;
    for part in text.split('|') {
        let part = part.trim();
        let v = if let Some(hex) = part.strip_prefix("0x") {
            u64::from_str_radix(hex, 16).ok()
        } else if let Some(oct) = part.strip_prefix("0o") {
            u64::from_str_radix(oct, 8).ok()
        } else if part.starts_with(|c: char| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            CONSTANTS.iter().find(|(n, _)| *n == part).map(|(_, v)| *v)
        };
        total |= v.ok_or_else(|| {
            format!(
                "`{part}` is neither a number nor a known constant ({})",
                CONSTANTS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    }
    Ok(total)
}

impl Condition {
    /// Parses `argN OP VALUE` (OP one of == != < <= > >=) or `argN & MASK == VALUE`.
    /// Values are decimal, 0x hex, 0o octal or constants such as `O_WRONLY|O_RDWR`.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let syntax =
            || format!("`{text}`: expected `argN OP VALUE` or `argN & MASK == VALUE` (N 0 to 5)");
        let arg = words
            .first()
            .and_then(|w| w.strip_prefix("arg"))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n < 6)
            .ok_or_else(syntax)?;
        match words.as_slice() {
            [_, "&", mask, "==", value] => Ok(Condition {
                arg,
                op: CmpOp::MaskedEq(parse_value(mask)?),
                value: parse_value(value)?,
            }),
            [_, op, value] => {
                let op = match *op {
                    "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    ">=" => CmpOp::Ge,
                    _ => return Err(syntax()),
                };
                Ok(Condition {
                    arg,
                    op,
                    value: parse_value(value)?,
                })
            }
            _ => Err(syntax()),
        }
    }

    fn to_scmp(self) -> ScmpArgCompare {
        let op = match self.op {
            CmpOp::Eq => ScmpCompareOp::Equal,
            CmpOp::Ne => ScmpCompareOp::NotEqual,
            CmpOp::Lt => ScmpCompareOp::Less,
            CmpOp::Le => ScmpCompareOp::LessOrEqual,
            CmpOp::Gt => ScmpCompareOp::Greater,
            CmpOp::Ge => ScmpCompareOp::GreaterEqual,
            CmpOp::MaskedEq(m) => ScmpCompareOp::MaskedEqual(m),
        };
        ScmpArgCompare::new(self.arg, op, self.value)
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::MaskedEq(m) => {
                return write!(f, "arg{} & {m:#x} == {:#x}", self.arg, self.value)
            }
        };
        write!(f, "arg{} {op} {:#x}", self.arg, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub nr: i32,
    pub action: Action,
    /// All must hold (at most one per argument); none: the rule always applies.
    pub conditions: Vec<Condition>,
    /// Where the rule came from (`group startup`, `allow`, `errno`, `core`), for `moat plan`.
    pub origin: String,
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
}

/// The native x86-64 number of a syscall name, or None for names this architecture
/// lacks (libseccomp reports those as negative pseudo-numbers).
pub fn syscall_nr(name: &str) -> Option<i32> {
    let nr = ScmpSyscall::from_name_by_arch(name, ScmpArch::X8664).ok()?;
    let raw = nr.as_raw_syscall();
    (raw >= 0).then_some(raw)
}

/// The name of syscall `nr` as the architecture `arch` (an AUDIT_ARCH value) numbers it.
pub fn syscall_name(arch: u32, nr: u64) -> String {
    let scmp_arch = match (arch, nr & X32_SYSCALL_BIT != 0) {
        (AUDIT_ARCH_X86_64, false) => ScmpArch::X8664,
        (AUDIT_ARCH_X86_64, true) => ScmpArch::X32,
        (AUDIT_ARCH_I386, _) => ScmpArch::X86,
        _ => return format!("unknown({nr})"),
    };
    i32::try_from(nr)
        .ok()
        .and_then(|n| ScmpSyscall::from(n).get_name_by_arch(scmp_arch).ok())
        .unwrap_or_else(|| format!("unknown({nr})"))
}

/// A readable name for the architecture a syscall was made in.
pub fn arch_name(arch: u32, nr: u64) -> &'static str {
    match arch {
        AUDIT_ARCH_X86_64 if nr & X32_SYSCALL_BIT != 0 => "x32",
        AUDIT_ARCH_X86_64 => "x86_64",
        AUDIT_ARCH_I386 => "i386",
        _ => "unknown",
    }
}

fn build_err(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Build { what, source }
}

const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u32;

/// One argument check of the core: if syscall `nr` is called with argument `arg`
/// (its low 32 bits, which is all the kernel reads for these calls) matching `test`,
/// the call is a violation, whatever the profile says.
struct CoreCheck {
    name: &'static str,
    arg: u32,
    test: ArgTest,
}

enum ArgTest {
    /// Denied if any of these bits is set.
    AnyBit(u32),
    /// Denied if equal to one of these values.
    OneOf(&'static [u32]),
    /// Denied unless equal to this value.
    Not(u32),
}

const CORE_CHECKS: &[CoreCheck] = &[
    // CLONE_UNTRACED would let a child escape PTRACE_O_TRACECLONE, and so the
    // monitor; namespace flags would undo the jail from inside. Legacy clone uses
    // only the low 32 bits of its flags.
    CoreCheck {
        name: "clone",
        arg: 0,
        test: ArgTest::AnyBit(NAMESPACE_FLAGS | libc::CLONE_UNTRACED as u32),
    },
    // TIOCSTI pushes input into a terminal (CVE-2017-5226 in bubblewrap); TIOCLINUX can
    // do the same on a virtual console. The kernel reads the request as 32 bits, so
    // junk in the high half cannot hide it.
    CoreCheck {
        name: "ioctl",
        arg: 1,
        test: ArgTest::OneOf(&[libc::TIOCSTI as u32, libc::TIOCLINUX as u32]),
    },
    // Only the query: other personalities change the address-space layout and
    // READ_IMPLIES_EXEC.
    CoreCheck {
        name: "personality",
        arg: 0,
        test: ArgTest::Not(0xffff_ffff),
    },
    // A listener would let the sandboxee supervise (and answer for) its children's
    // syscalls.
    CoreCheck {
        name: "seccomp",
        arg: 1,
        test: ArgTest::AnyBit(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32),
    },
];

/// The hand-written head of the filter: the core's argument checks, which libseccomp
/// 2.5 cannot express next to an unconditional allow of the same syscall (it keeps
/// only the allow, and refuses two comparisons on one argument). Each check jumps to
/// DENY; everything else falls through to libseccomp's program, whose jumps are all
/// relative and so unaffected by the prefix.
fn core_prefix() -> Vec<libc::sock_filter> {
    const LD_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const ARGS: u32 = 16;
    // Jump targets are resolved after layout: DENY is the `ret` at the end of the
    // prefix, END the first instruction after it.
    #[derive(Clone, Copy)]
    enum To {
        Next,
        Deny,
        End,
        SkipBlock,
    }
    let ins = |code, k, jt, jf| (code, k, jt, jf);
    let mut blocks: Vec<Vec<(u16, u32, To, To)>> = Vec::new();
    for check in CORE_CHECKS {
        let nr = syscall_nr(check.name).expect("core syscalls exist on x86_64") as u32;
        let mut b = vec![
            ins(LD_W, NR, To::Next, To::Next),
            ins(JEQ, nr, To::Next, To::SkipBlock),
            ins(LD_W, ARGS + 8 * check.arg, To::Next, To::Next),
        ];
        match check.test {
            ArgTest::AnyBit(mask) => b.push(ins(JSET, mask, To::Deny, To::End)),
            ArgTest::OneOf(values) => {
                for (i, v) in values.iter().enumerate() {
                    let miss = if i + 1 == values.len() {
                        To::End
                    } else {
                        To::Next
                    };
                    b.push(ins(JEQ, *v, To::Deny, miss));
                }
            }
            ArgTest::Not(v) => b.push(ins(JEQ, v, To::End, To::Deny)),
        }
        blocks.push(b);
    }
    let body_len: usize = blocks.iter().map(Vec::len).sum();
    // arch check (2) + blocks + `ja END` + DENY
    let deny_at = 2 + body_len + 1;
    let end_at = deny_at + 1;
    let mut out = Vec::with_capacity(end_at);
    let mut emit = |at: usize, code: u16, k: u32, jt: u8, jf: u8| {
        debug_assert_eq!(at, out.len());
        out.push(libc::sock_filter { code, jt, jf, k });
    };
    let off = |from: usize, to: usize| -> u8 {
        u8::try_from(to - from - 1).expect("core prefix jumps fit in 8 bits")
    };
    // Foreign architectures skip the prefix: libseccomp's bad-arch action reports them.
    emit(0, LD_W, ARCH, 0, 0);
    emit(1, JEQ, AUDIT_ARCH_X86_64, 0, off(1, end_at));
    let mut at = 2;
    for block in &blocks {
        let block_end = at + block.len();
        for &(code, k, jt, jf) in block {
            let resolve = |t: To| match t {
                To::Next => 0,
                To::Deny => off(at, deny_at),
                To::End => off(at, end_at),
                To::SkipBlock => off(at, block_end),
            };
            let (jt, jf) = (resolve(jt), resolve(jf));
            emit(at, code, k, jt, jf);
            at += 1;
        }
    }
    emit(at, JA, 1, 0, 0);
    emit(
        deny_at,
        RET,
        libc::SECCOMP_RET_TRACE | u32::from(TRACE_CORE),
        0,
        0,
    );
    out
}

/// Compiles the rules into the BPF program the child loads.
///
/// `allow_exec`: whether execve/execveat are allowed after the initial exec. Without it
/// they fall to the default action; the monitor lets the one exec that starts the
/// program through because no untrusted code has run yet when it happens.
///
/// `learn`: calls that open files are traced rather than allowed, so `moat learn` can
/// list the files the program needed.
pub fn compile(
    rules: &[Rule],
    allow_exec: bool,
    learn: bool,
) -> Result<Vec<libc::sock_filter>, SeccompError> {
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

    let mut clone3_errno = false;
    for rule in rules {
        let traced = learn && FILE_CALLS.iter().any(|(n, _)| *n == rule.name);
        let action = match rule.action {
            Action::Allow if traced => ScmpAction::Trace(TRACE_FILE),
            Action::Allow => ScmpAction::Allow,
            Action::Errno(e) => ScmpAction::Errno(e),
        };
        if rule.name == "clone3" {
            clone3_errno = true;
        }
        let conditions: Vec<ScmpArgCompare> = rule.conditions.iter().map(|c| c.to_scmp()).collect();
        ctx.add_rule_conditional(action, rule.nr, &conditions)
            .map_err(build_err(format!("rule for {}", rule.name)))?;
    }
    // glibc tries clone3 first and falls back to clone on ENOSYS; clone's flags are in
    // a register the filter can inspect, clone3's are behind a pointer it cannot.
    if !clone3_errno {
        let nr = syscall_nr("clone3").expect("clone3 exists on x86_64");
        ctx.add_rule(ScmpAction::Errno(libc::ENOSYS), nr)
            .map_err(build_err("clone3 -> ENOSYS"))?;
    }
    if allow_exec {
        for name in ["execve", "execveat"] {
            let nr = syscall_nr(name).expect("exec exists on x86_64");
            let action = if learn {
                ScmpAction::Trace(TRACE_FILE)
            } else {
                ScmpAction::Allow
            };
            ctx.add_rule(action, nr).map_err(build_err(name))?;
        }
    }
    let mut program = core_prefix();
    program.extend(export(&ctx)?);
    if program.len() > usize::from(u16::MAX) {
        return Err(std::io::Error::other("the filter is longer than the kernel accepts").into());
    }
    Ok(program)
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
    if bytes.is_empty() || bytes.len() % INSN != 0 || bytes.len() / INSN > u16::MAX as usize {
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

    fn rule(name: &str, action: Action) -> Rule {
        Rule {
            name: name.into(),
            nr: syscall_nr(name).unwrap(),
            action,
            conditions: Vec::new(),
            origin: "test".into(),
        }
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(syscall_nr("read"), Some(0));
        assert_eq!(syscall_nr("openat"), Some(257));
        assert_eq!(syscall_nr("no_such_call"), None);
        // socketcall exists on i386 only
        assert_eq!(syscall_nr("socketcall"), None);
        assert_eq!(syscall_name(AUDIT_ARCH_X86_64, 39), "getpid");
        assert_eq!(syscall_name(AUDIT_ARCH_I386, 20), "getpid");
        assert_eq!(arch_name(AUDIT_ARCH_X86_64, 0x4000_0027), "x32");
        assert_eq!(arch_name(AUDIT_ARCH_I386, 1), "i386");
        assert_eq!(syscall_name(AUDIT_ARCH_X86_64, 99_999), "unknown(99999)");
    }

    #[test]
    fn core_names_exist() {
        for name in CORE_DENIED
            .iter()
            .chain(CORE_CONDITIONAL.iter().map(|(n, _)| n))
        {
            assert!(
                syscall_nr(name).is_some(),
                "{name} is not an x86_64 syscall"
            );
        }
    }

    #[test]
    fn compiles_conditional_and_errno_rules() {
        let rules = vec![
            rule("read", Action::Allow),
            rule("ioctl", Action::Allow),
            rule("clone", Action::Allow),
            rule("socket", Action::Errno(libc::EACCES)),
        ];
        let prog = compile(&rules, false, false).unwrap();
        assert!(prog.len() > 10);
        // The program starts by loading the arch word.
        assert_eq!(
            prog[0].code,
            (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16
        );
        assert_eq!(prog[0].k, 4);
        assert_eq!(
            interpret(&prog, AUDIT_ARCH_X86_64, "read", [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
    }

    /// A small classic-BPF interpreter, enough to run the filter on seccomp_data.
    fn interpret(prog: &[libc::sock_filter], arch: u32, name: &str, args: [u64; 6]) -> u32 {
        let nr = syscall_nr(name).unwrap() as u32;
        run(prog, arch, nr, args)
    }

    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend(nr.to_ne_bytes());
        data.extend(arch.to_ne_bytes());
        data.extend(0u64.to_ne_bytes());
        for a in args {
            data.extend(a.to_ne_bytes());
        }
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            let class = u32::from(i.code) & 0x07;
            let op = u32::from(i.code) & 0xf0;
            match class {
                c if c == libc::BPF_LD => {
                    let k = i.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_ALU && op == libc::BPF_AND => {
                    acc &= i.k;
                    pc += 1;
                }
                c if c == libc::BPF_RET => return i.k,
                c if c == libc::BPF_JMP => {
                    let taken = match op {
                        o if o == libc::BPF_JA => {
                            pc += 1 + i.k as usize;
                            continue;
                        }
                        o if o == libc::BPF_JEQ => acc == i.k,
                        o if o == libc::BPF_JGT => acc > i.k,
                        o if o == libc::BPF_JGE => acc >= i.k,
                        o if o == libc::BPF_JSET => acc & i.k != 0,
                        _ => panic!("unexpected jump {:#x}", i.code),
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
                c if c == libc::BPF_MISC => {
                    // tax / txa are not used by libseccomp for x86_64 filters
                    panic!("unexpected misc op {:#x}", i.code)
                }
                _ => panic!("unexpected op {:#x}", i.code),
            }
        }
    }

    fn action(ret: u32) -> (u32, u32) {
        (
            ret & libc::SECCOMP_RET_ACTION_FULL,
            ret & libc::SECCOMP_RET_DATA,
        )
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
        let prog = compile(&rules, false, false).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let denied = (libc::SECCOMP_RET_TRACE, u32::from(TRACE_DENIED));
        let core = (libc::SECCOMP_RET_TRACE, u32::from(TRACE_CORE));
        let allow = (libc::SECCOMP_RET_ALLOW, 0);
        let tcgets = libc::TCGETS;
        assert_eq!(
            action(interpret(&prog, x86, "ioctl", [1, tcgets, 0, 0, 0, 0])),
            allow
        );
        assert_eq!(
            action(interpret(
                &prog,
                x86,
                "ioctl",
                [1, libc::TIOCSTI, 0, 0, 0, 0]
            )),
            core
        );
        assert_eq!(
            action(interpret(
                &prog,
                x86,
                "ioctl",
                [1, (1 << 32) | libc::TIOCSTI, 0, 0, 0, 0]
            )),
            core
        );
        assert_eq!(
            action(interpret(
                &prog,
                x86,
                "ioctl",
                [1, libc::TIOCLINUX, 0, 0, 0, 0]
            )),
            core
        );
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(
            action(interpret(&prog, x86, "clone", [thread, 0, 0, 0, 0, 0])),
            allow
        );
        let newns = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(
            action(interpret(&prog, x86, "clone", [newns, 0, 0, 0, 0, 0])),
            core
        );
        let untraced = (libc::CLONE_UNTRACED | libc::SIGCHLD) as u64;
        assert_eq!(
            action(interpret(&prog, x86, "clone", [untraced, 0, 0, 0, 0, 0])),
            core
        );
        assert_eq!(
            action(interpret(
                &prog,
                x86,
                "personality",
                [0xffff_ffff, 0, 0, 0, 0, 0]
            )),
            allow
        );
        assert_eq!(
            action(interpret(
                &prog,
                x86,
                "personality",
                [0x0040_0000, 0, 0, 0, 0, 0]
            )),
            core
        );
        let listener = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        assert_eq!(
            action(interpret(&prog, x86, "seccomp", [1, listener, 0, 0, 0, 0])),
            core
        );
        assert_eq!(
            action(interpret(&prog, x86, "seccomp", [1, 0, 0, 0, 0, 0])),
            allow
        );
        assert_eq!(
            action(interpret(&prog, x86, "socket", [2, 1, 0, 0, 0, 0])),
            (libc::SECCOMP_RET_ERRNO, libc::EACCES as u32)
        );
        assert_eq!(
            action(interpret(&prog, x86, "clone3", [0; 6])),
            (libc::SECCOMP_RET_ERRNO, libc::ENOSYS as u32)
        );
        // Not in the profile: traced as a violation; execve without allow_exec too.
        assert_eq!(action(interpret(&prog, x86, "getpid", [0; 6])), denied);
        assert_eq!(action(interpret(&prog, x86, "execve", [0; 6])), denied);
        // Foreign architectures and x32 numbers are handed over as arch violations.
        let bad_arch = (libc::SECCOMP_RET_TRACE, u32::from(TRACE_BAD_ARCH));
        assert_eq!(action(run(&prog, AUDIT_ARCH_I386, 20, [0; 6])), bad_arch);
        assert_eq!(action(run(&prog, x86, 0x4000_0027, [0; 6])), bad_arch);
    }

    #[test]
    fn conditions_parse_and_filter() {
        let c = Condition::parse("arg0 <= 2").unwrap();
        assert_eq!((c.arg, c.op, c.value), (0, CmpOp::Le, 2));
        let c = Condition::parse("arg2 & O_WRONLY|O_RDWR|O_CREAT == 0").unwrap();
        assert_eq!(
            c.op,
            CmpOp::MaskedEq((libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT) as u64)
        );
        assert_eq!(c.to_string(), "arg2 & 0x43 == 0x0");
        assert!(Condition::parse("arg6 == 1").is_err());
        assert!(Condition::parse("arg0 =~ 1").is_err());
        assert!(Condition::parse("arg0 == O_NOPE")
            .unwrap_err()
            .contains("O_NOPE"));
        let mut write = rule("write", Action::Allow);
        write.conditions = vec![Condition::parse("arg0 <= 2").unwrap()];
        let mut open = rule("openat", Action::Allow);
        open.conditions = vec![Condition::parse("arg2 & O_ACCMODE|O_CREAT == 0").unwrap()];
        let prog = compile(&[write, open], false, false).unwrap();
        let x86 = AUDIT_ARCH_X86_64;
        let allow = (libc::SECCOMP_RET_ALLOW, 0);
        let denied = (libc::SECCOMP_RET_TRACE, u32::from(TRACE_DENIED));
        assert_eq!(
            action(interpret(&prog, x86, "write", [1, 0, 5, 0, 0, 0])),
            allow
        );
        assert_eq!(
            action(interpret(&prog, x86, "write", [3, 0, 5, 0, 0, 0])),
            denied
        );
        let rdonly = libc::O_RDONLY as u64;
        let creat = (libc::O_WRONLY | libc::O_CREAT) as u64;
        assert_eq!(
            action(interpret(&prog, x86, "openat", [0, 0, rdonly, 0, 0, 0])),
            allow
        );
        assert_eq!(
            action(interpret(&prog, x86, "openat", [0, 0, creat, 0, 0, 0])),
            denied
        );
    }

    #[test]
    fn exec_allowed_only_on_request() {
        let prog = compile(&[], true, false).unwrap();
        assert_eq!(
            action(interpret(&prog, AUDIT_ARCH_X86_64, "execve", [0; 6])).0,
            libc::SECCOMP_RET_ALLOW
        );
    }
}
