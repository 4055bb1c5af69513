//! Compiling a rule set into the BPF program the jail loads, with moat's own compiler:
//! one dispatch on the syscall number (a binary search), then for each syscall the
//! core's check and its rules in the order given, the first that holds deciding. What
//! no rule allows is a violation. Nothing is delegated to a library, so the program
//! does exactly what the rules say, and the core is in it by construction.

use super::bpf::{self, Asm, AsmError, Label};
use super::core::{self, is_denied, Leaf, TRACE_CORE};
use super::names::{syscall_nr, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use super::rules::{Action, CmpOp, Condition, Rule};
use std::collections::BTreeMap;

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

/// A compiled filter. Only [`compile`] makes one, so every filter moat loads carries
/// the core.
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
    #[error("the filter cannot be laid out: {0}")]
    Layout(#[from] AsmError),
    #[error("the filter has {len} instructions, more than the kernel's {MAX_INSNS}: use fewer rule alternatives")]
    TooLong { len: usize },
    #[error("`{0}` is not a syscall on x86_64")]
    Unknown(String),
}

/// What one syscall's part of the filter holds, in order.
#[derive(Default)]
struct Entry<'a> {
    core: Option<Leaf>,
    /// (conditions, return value), tried in order.
    rules: Vec<(&'a [Condition], u32)>,
}

fn ret_trace(data: u16) -> u32 {
    libc::SECCOMP_RET_TRACE | u32::from(data)
}

fn ret_errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Compiles `rules` into the program the child loads.
///
/// For each syscall the core's leaf comes first and overrules the rules (see
/// [`core::leaves`]): an allow of an always-denied call is dropped here, not merely
/// refused by profile validation. `learn`: calls that open files are traced rather
/// than allowed, so `moat learn` can list the files the program needed.
pub fn compile(rules: &[Rule], exec: Exec, learn: bool) -> Result<Filter, SeccompError> {
    let mut entries: BTreeMap<u32, Entry> = BTreeMap::new();
    for (nr, leaf) in core::leaves(rules) {
        entries.entry(nr).or_default().core = Some(leaf);
    }
    let traced = |name: &str| learn && FILE_CALLS.iter().any(|(n, _)| *n == name);
    let allow = |name: &str| {
        if traced(name) {
            ret_trace(TRACE_FILE)
        } else {
            libc::SECCOMP_RET_ALLOW
        }
    };
    for rule in rules {
        if is_denied(&rule.name) && rule.action == Action::Allow {
            continue;
        }
        let ret = match rule.action {
            Action::Allow => allow(&rule.name),
            Action::Errno(e) => ret_errno(e),
        };
        let nr = u32::try_from(rule.nr).map_err(|_| SeccompError::Unknown(rule.name.clone()))?;
        entries
            .entry(nr)
            .or_default()
            .rules
            .push((&rule.conditions, ret));
    }
    if exec == Exec::Allowed {
        for name in ["execve", "execveat"] {
            let nr = syscall_nr(name).ok_or_else(|| SeccompError::Unknown(name.into()))?;
            entries
                .entry(nr as u32)
                .or_default()
                .rules
                .push((&[], allow(name)));
        }
    }

    let mut asm = Asm::default();
    let (denied, bad_arch, core_deny, enosys) =
        (asm.label(), asm.label(), asm.label(), asm.label());
    asm.load(bpf::ARCH);
    asm.goto_unless(bpf::JEQ_K, AUDIT_ARCH_X86_64, bad_arch);
    asm.load(bpf::NR);
    // x32 calls are x86-64 calls with a high bit in the number; the x86-64 rules must
    // not match them, and the monitor reports them as a foreign architecture.
    asm.goto_if(bpf::JGE_K, X32_SYSCALL_BIT as u32, bad_arch);
    // Calls whose whole answer is one return value are answered in the search itself,
    // and a run of consecutive numbers with the same answer (or with none: a gap in
    // the table is a violation) is one interval of it. Only calls with conditions or
    // a core check get a block of their own. Every instruction left out is one the
    // kernel need not check and JIT when the filter is loaded.
    let mut bodies: Vec<(&Entry, Label)> = Vec::new();
    let mut segments: Vec<Segment> = Vec::new();
    let mut push = |lo: u32, leaf: Leaf2| match segments.last() {
        Some(last) if last.leaf == leaf && matches!(leaf, Leaf2::Ret(_)) => {}
        _ => segments.push(Segment { lo, leaf }),
    };
    let mut expect = 0u32;
    for (&nr, entry) in &entries {
        if nr > expect {
            push(expect, Leaf2::Ret(ret_trace(TRACE_DENIED)));
        }
        match answer(entry) {
            Some(ret) => push(nr, Leaf2::Ret(ret)),
            None => {
                let label = asm.label();
                bodies.push((entry, label));
                push(nr, Leaf2::Body(label));
            }
        }
        expect = nr + 1;
    }
    if expect < X32_SYSCALL_BIT as u32 {
        push(expect, Leaf2::Ret(ret_trace(TRACE_DENIED)));
    }
    search(&mut asm, &segments);
    for (entry, target) in &bodies {
        asm.place(*target);
        match entry.core {
            Some(Leaf::Deny) => asm.goto(core_deny),
            Some(Leaf::Enosys) => asm.goto(enosys),
            Some(Leaf::Check(check)) => core::emit_check(&mut asm, check, core_deny),
            None => {}
        }
        let mut falls_through = !matches!(entry.core, Some(Leaf::Deny | Leaf::Enosys));
        for (conditions, ret) in &entry.rules {
            if !falls_through {
                break;
            }
            let next = asm.label();
            for c in conditions.iter() {
                emit_condition(&mut asm, c, next);
            }
            asm.ret(*ret);
            asm.place(next);
            // A rule without conditions always returns: what follows it is dead code.
            falls_through = !conditions.is_empty();
        }
        if falls_through {
            asm.goto(denied);
        }
    }
    asm.place(denied);
    asm.ret(ret_trace(TRACE_DENIED));
    asm.place(bad_arch);
    asm.ret(ret_trace(TRACE_BAD_ARCH));
    asm.place(core_deny);
    asm.ret(ret_trace(TRACE_CORE));
    asm.place(enosys);
    asm.ret(ret_errno(libc::ENOSYS));
    let insns = asm.finish()?;
    if insns.len() > MAX_INSNS {
        return Err(SeccompError::TooLong { len: insns.len() });
    }
    Ok(Filter { insns })
}

/// What the filter answers for one call number when that is a single return value
/// whatever the arguments: a core denial, ENOSYS, or a first rule without conditions.
fn answer(entry: &Entry) -> Option<u32> {
    match entry.core {
        Some(Leaf::Deny) => Some(ret_trace(TRACE_CORE)),
        Some(Leaf::Enosys) => Some(ret_errno(libc::ENOSYS)),
        Some(Leaf::Check(_)) => None,
        None => match entry.rules.first() {
            Some(([], ret)) => Some(*ret),
            Some(_) => None,
            None => Some(ret_trace(TRACE_DENIED)),
        },
    }
}

/// Where the search sends one interval of call numbers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leaf2 {
    /// Returns this value at once.
    Ret(u32),
    /// Goes on in the call's own block.
    Body(Label),
}

/// The call numbers from `lo` up to the next segment's `lo` (or the x32 bit).
struct Segment {
    lo: u32,
    leaf: Leaf2,
}

/// A binary search over `segments` (sorted, covering every number below the x32 bit)
/// with the accumulator holding the call number: each leaf returns or goes to its
/// call's block. A node jumps over its lower half directly where the half is short
/// enough for the 8-bit offset of a conditional jump, and through a `ja` where not.
fn search(asm: &mut Asm, segments: &[Segment]) {
    if let [only] = segments {
        match only.leaf {
            Leaf2::Ret(v) => asm.ret(v),
            Leaf2::Body(label) => asm.goto(label),
        }
        return;
    }
    let mid = segments.len() / 2;
    let upper = asm.label();
    if search_len(&segments[..mid]) <= usize::from(u8::MAX) {
        asm.jump(bpf::JGE_K, segments[mid].lo, Some(upper), None);
    } else {
        asm.goto_if(bpf::JGE_K, segments[mid].lo, upper);
    }
    search(asm, &segments[..mid]);
    asm.place(upper);
    search(asm, &segments[mid..]);
}

/// How many instructions `search` emits for `segments`.
fn search_len(segments: &[Segment]) -> usize {
    if segments.len() <= 1 {
        return 1;
    }
    let mid = segments.len() / 2;
    let lower = search_len(&segments[..mid]);
    let node = if lower <= usize::from(u8::MAX) { 1 } else { 2 };
    node + lower + search_len(&segments[mid..])
}

/// Emits one 64-bit comparison of an argument: it falls through when the condition
/// holds and jumps to `fail` when not. Classic BPF sees 32-bit words, so the high word
/// decides unless it is equal, as in libseccomp's programs.
fn emit_condition(asm: &mut Asm, c: &Condition, fail: Label) {
    let (lo, hi) = (bpf::ARGS + 8 * c.arg, bpf::ARGS + 8 * c.arg + 4);
    let (v_lo, v_hi) = (c.value as u32, (c.value >> 32) as u32);
    let pass = asm.label();
    match c.op {
        CmpOp::Eq => {
            asm.load(hi);
            asm.jump(bpf::JEQ_K, v_hi, None, Some(fail));
            asm.load(lo);
            asm.jump(bpf::JEQ_K, v_lo, None, Some(fail));
        }
        CmpOp::Ne => {
            asm.load(hi);
            asm.jump(bpf::JEQ_K, v_hi, None, Some(pass));
            asm.load(lo);
            asm.jump(bpf::JEQ_K, v_lo, Some(fail), None);
        }
        CmpOp::MaskedEq(mask) => {
            asm.load(hi);
            asm.and((mask >> 32) as u32);
            asm.jump(bpf::JEQ_K, v_hi, None, Some(fail));
            asm.load(lo);
            asm.and(mask as u32);
            asm.jump(bpf::JEQ_K, v_lo, None, Some(fail));
        }
        CmpOp::Gt | CmpOp::Ge => {
            asm.load(hi);
            asm.jump(bpf::JGT_K, v_hi, Some(pass), None);
            asm.jump(bpf::JEQ_K, v_hi, None, Some(fail));
            asm.load(lo);
            let code = if c.op == CmpOp::Gt {
                bpf::JGT_K
            } else {
                bpf::JGE_K
            };
            asm.jump(code, v_lo, None, Some(fail));
        }
        CmpOp::Lt | CmpOp::Le => {
            asm.load(hi);
            asm.jump(bpf::JGT_K, v_hi, Some(fail), None);
            asm.jump(bpf::JEQ_K, v_hi, None, Some(pass));
            asm.load(lo);
            // a < v is !(a >= v); a <= v is !(a > v).
            let code = if c.op == CmpOp::Lt {
                bpf::JGE_K
            } else {
                bpf::JGT_K
            };
            asm.jump(code, v_lo, Some(fail), None);
        }
    }
    asm.place(pass);
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
    // The ioctl request constants are u64 with glibc and i32 with musl: the casts are
    // needed with one of them.
    #[allow(clippy::unnecessary_cast)]
    fn core_checks_override_profile_allows() {
        let rules = vec![
            rule("ioctl", Action::Allow),
            rule("clone", Action::Allow),
            rule("personality", Action::Allow),
            rule("seccomp", Action::Allow),
            rule("socket", Action::Errno(libc::EACCES)),
        ];
        let prog = compile(&rules, Exec::Initial, false).unwrap();
        let tcgets = libc::TCGETS as u64;
        let tiocsti = libc::TIOCSTI as u64;
        assert_eq!(call(&prog, "ioctl", [1, tcgets, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(&prog, "ioctl", [1, tiocsti, 0, 0, 0, 0]), CORE);
        assert_eq!(
            call(&prog, "ioctl", [1, (1 << 32) | tiocsti, 0, 0, 0, 0]),
            CORE
        );
        assert_eq!(
            call(&prog, "ioctl", [1, libc::TIOCLINUX as u64, 0, 0, 0, 0]),
            CORE
        );
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

    #[test]
    fn a_long_table_searches_right_at_every_edge() {
        // Every named x86-64 call, allowed on every third number, with an errno on the
        // next and a condition on the one after: some 450 intervals, so the search's
        // upper nodes are too far for a conditional jump and go through a `ja`.
        let mut rules = Vec::new();
        for nr in 0..460u64 {
            let name = crate::seccomp::names::syscall_name(AUDIT_ARCH_X86_64, nr);
            let Some(n) = syscall_nr(&name) else { continue };
            let mut r = rule(&name, Action::Allow);
            assert_eq!(u64::try_from(n).unwrap(), nr);
            match nr % 3 {
                0 => {}
                1 => r.action = Action::Errno(libc::EPERM),
                _ => r.conditions = vec![Condition::parse("arg0 == 7").unwrap()],
            }
            rules.push(r);
        }
        assert!(rules.len() > 300, "{}", rules.len());
        let prog = compile(&rules, Exec::Initial, false).unwrap();
        // The root's lower half alone is longer than a conditional jump can skip.
        assert!(prog.len() > 2 * 255 + 2, "{}", prog.len());
        for nr in 0..1100u32 {
            for arg0 in [0, 7] {
                let d = SeccompData {
                    nr,
                    arch: AUDIT_ARCH_X86_64,
                    instruction_pointer: 0,
                    args: [arg0, 0, 0, 0, 0, 0],
                };
                let got = bpf::run(prog.insns(), &d).unwrap();
                assert_eq!(
                    got,
                    reference(&rules, Exec::Initial, &d),
                    "nr {nr} arg0 {arg0}"
                );
            }
        }
    }

    /// What the filter must return, worked out from the rules directly.
    fn reference(rules: &[Rule], exec: Exec, d: &SeccompData) -> u32 {
        use crate::seccomp::core::{ArgTest, ARG_CHECKS, CORE_DENIED};
        if d.arch != AUDIT_ARCH_X86_64 || u64::from(d.nr) >= X32_SYSCALL_BIT {
            return ret_trace(TRACE_BAD_ARCH);
        }
        let of: Vec<&Rule> = rules.iter().filter(|r| r.nr as u32 == d.nr).collect();
        let errno_only = !of.is_empty() && of.iter().all(|r| matches!(r.action, Action::Errno(_)));
        let name = |n: &str| syscall_nr(n).map(|v| v as u32) == Some(d.nr);
        if !errno_only {
            if CORE_DENIED.iter().any(|n| name(n)) {
                return if name("clone3") {
                    ret_errno(libc::ENOSYS)
                } else {
                    ret_trace(TRACE_CORE)
                };
            }
            for check in ARG_CHECKS.iter().filter(|c| name(c.name)) {
                let a = d.args[check.arg as usize] as u32;
                let hit = match check.test {
                    ArgTest::AnyBit(m) => a & m != 0,
                    ArgTest::OneOf(vs) => vs.contains(&a),
                    ArgTest::Not(v) => a != v,
                };
                if hit {
                    return ret_trace(TRACE_CORE);
                }
            }
        }
        for r in of {
            if is_denied(&r.name) && r.action == Action::Allow {
                continue;
            }
            let holds = r.conditions.iter().all(|c| {
                let a = d.args[c.arg as usize];
                match c.op {
                    CmpOp::Eq => a == c.value,
                    CmpOp::Ne => a != c.value,
                    CmpOp::Lt => a < c.value,
                    CmpOp::Le => a <= c.value,
                    CmpOp::Gt => a > c.value,
                    CmpOp::Ge => a >= c.value,
                    CmpOp::MaskedEq(m) => a & m == c.value,
                }
            });
            if holds {
                return match r.action {
                    Action::Allow => libc::SECCOMP_RET_ALLOW,
                    Action::Errno(e) => ret_errno(e),
                };
            }
        }
        if exec == Exec::Allowed && (name("execve") || name("execveat")) {
            return libc::SECCOMP_RET_ALLOW;
        }
        ret_trace(TRACE_DENIED)
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const NAMES: [&str; 12] = [
            "read",
            "write",
            "clone",
            "ioctl",
            "ptrace",
            "personality",
            "openat",
            "socket",
            "prlimit64",
            "clone3",
            "execve",
            "seccomp",
        ];

        fn value() -> impl Strategy<Value = u64> {
            prop_oneof![
                Just(0u64),
                Just(1),
                Just(0x5412),
                Just(u32::MAX as u64),
                Just(1 << 32),
                Just(u64::MAX),
                0u64..8,
                any::<u64>(),
            ]
        }

        fn condition() -> impl Strategy<Value = Condition> {
            (0u32..6, 0usize..7, value(), value()).prop_map(|(arg, op, value, mask)| {
                let op = match op {
                    0 => CmpOp::Eq,
                    1 => CmpOp::Ne,
                    2 => CmpOp::Lt,
                    3 => CmpOp::Le,
                    4 => CmpOp::Gt,
                    5 => CmpOp::Ge,
                    _ => CmpOp::MaskedEq(mask),
                };
                let value = if let CmpOp::MaskedEq(m) = op {
                    value & m
                } else {
                    value
                };
                Condition { arg, op, value }
            })
        }

        fn rules() -> impl Strategy<Value = Vec<Rule>> {
            let one = (
                0..NAMES.len(),
                proptest::collection::vec(condition(), 0..3),
                prop_oneof![Just(None), (1i32..200).prop_map(Some)],
            )
                .prop_map(|(n, mut conditions, errno)| {
                    conditions.dedup_by_key(|c| c.arg);
                    Rule {
                        name: NAMES[n].into(),
                        nr: syscall_nr(NAMES[n]).unwrap(),
                        action: errno.map_or(Action::Allow, Action::Errno),
                        conditions,
                        origin: "prop".into(),
                    }
                });
            proptest::collection::vec(one, 0..12)
        }

        fn call() -> impl Strategy<Value = SeccompData> {
            (
                prop_oneof![
                    (0..NAMES.len()).prop_map(|i| syscall_nr(NAMES[i]).unwrap() as u32),
                    0u32..500,
                    Just(0x4000_0027u32),
                ],
                prop_oneof![Just(AUDIT_ARCH_X86_64), Just(AUDIT_ARCH_I386)],
                proptest::array::uniform6(value()),
            )
                .prop_map(|(nr, arch, args)| SeccompData {
                    nr,
                    arch,
                    instruction_pointer: 0,
                    args,
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn the_compiled_filter_does_what_the_rules_say(
                rules in rules(),
                allowed_exec in any::<bool>(),
                calls in proptest::collection::vec(call(), 1..24),
            ) {
                let exec = if allowed_exec { Exec::Allowed } else { Exec::Initial };
                let f = compile(&rules, exec, false).unwrap();
                for d in &calls {
                    let got = bpf::run(f.insns(), d).expect("the filter returns");
                    prop_assert_eq!(got, reference(&rules, exec, d), "call {:?} rules {:?}", d, rules);
                }
            }
        }
    }
}
