//! The always-denied core: what no profile can allow, compiled into the head of every
//! filter moat loads, in front of whatever rules it is given. A profile may only make
//! a core syscall fail with an errno; any other rule for one is overruled here, in the
//! filter itself, so no caller of the library can lift the core by building rules by
//! hand.

use super::bpf::{self, Asm, AsmError, Label};
use super::names::{syscall_nr, AUDIT_ARCH_X86_64};
use super::rules::{Action, Rule};

/// `SECCOMP_RET_TRACE` data for a call the core refuses.
pub const TRACE_CORE: u16 = 3;

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

/// Whether `name` is in the always-denied core.
pub fn is_denied(name: &str) -> bool {
    CORE_DENIED.contains(&name)
}

const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u32;

/// One argument check of the core: if the syscall is called with argument `arg` (its
/// low 32 bits, which is all the kernel reads for these calls) matching `test`, the
/// call is a violation, whatever the profile says.
struct ArgCheck {
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

const ARG_CHECKS: &[ArgCheck] = &[
    // CLONE_UNTRACED would let a child escape PTRACE_O_TRACECLONE, and so the
    // monitor; namespace flags would undo the jail from inside. Legacy clone uses
    // only the low 32 bits of its flags.
    ArgCheck {
        name: "clone",
        arg: 0,
        test: ArgTest::AnyBit(NAMESPACE_FLAGS | libc::CLONE_UNTRACED as u32),
    },
    // TIOCSTI pushes input into a terminal (CVE-2017-5226 in bubblewrap); TIOCLINUX can
    // do the same on a virtual console. The kernel reads the request as 32 bits, so
    // junk in the high half cannot hide it.
    ArgCheck {
        name: "ioctl",
        arg: 1,
        test: ArgTest::OneOf(&[libc::TIOCSTI as u32, libc::TIOCLINUX as u32]),
    },
    // Only the query: other personalities change the address-space layout and
    // READ_IMPLIES_EXEC.
    ArgCheck {
        name: "personality",
        arg: 0,
        test: ArgTest::Not(0xffff_ffff),
    },
    // A listener would let the sandboxee supervise (and answer for) its children's
    // syscalls.
    ArgCheck {
        name: "seccomp",
        arg: 1,
        test: ArgTest::AnyBit(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32),
    },
];

/// What the head does with one syscall number.
#[derive(Clone, Copy)]
enum Leaf {
    /// A violation, always.
    Deny,
    /// Fails with ENOSYS (clone3: libc falls back to clone, whose flags the filter
    /// can inspect; clone3's are behind a pointer it cannot read).
    Enosys,
    /// A violation when the argument check matches; otherwise the rules decide.
    Check(&'static ArgCheck),
}

/// Whether the rules give `name` only errno actions: the one thing a profile may do
/// with a core syscall. Such a syscall is left to the rules; any allow overrules it.
fn errno_only(rules: &[Rule], name: &str) -> bool {
    let mut of = rules.iter().filter(|r| r.name == name).peekable();
    of.peek().is_some() && of.all(|r| matches!(r.action, Action::Errno(_)))
}

/// The head of every filter, in front of the rules' program: for x86-64 calls, the
/// core's denials and argument checks, dispatched by a binary search on the syscall
/// number so that a call pays a handful of comparisons however long the core grows.
/// Everything the head does not decide falls through to the next instruction after
/// it. Calls of other architectures fall through too: the rules' program reports them
/// as architecture violations.
pub fn head(rules: &[Rule]) -> Result<Vec<libc::sock_filter>, AsmError> {
    let mut leaves: Vec<(u32, Leaf)> = Vec::new();
    for name in CORE_DENIED {
        let nr = nr_of(name);
        if *name == "clone3" {
            if !errno_only(rules, name) {
                leaves.push((nr, Leaf::Enosys));
            }
        } else if !errno_only(rules, name) {
            leaves.push((nr, Leaf::Deny));
        }
    }
    for check in ARG_CHECKS {
        leaves.push((nr_of(check.name), Leaf::Check(check)));
    }
    leaves.sort_by_key(|(nr, _)| *nr);

    let mut asm = Asm::default();
    let (end, deny, enosys) = (asm.label(), asm.label(), asm.label());
    asm.load(bpf::ARCH);
    asm.jump(bpf::JEQ_K, AUDIT_ARCH_X86_64, None, Some(end));
    asm.load(bpf::NR);
    let targets: Vec<Label> = leaves.iter().map(|_| asm.label()).collect();
    dispatch(&mut asm, &leaves, &targets, end);
    for ((_, leaf), target) in leaves.iter().zip(&targets) {
        asm.place(*target);
        match leaf {
            Leaf::Deny => asm.goto(deny),
            Leaf::Enosys => asm.goto(enosys),
            Leaf::Check(check) => {
                asm.load(bpf::ARGS + 8 * check.arg);
                match check.test {
                    ArgTest::AnyBit(mask) => asm.jump(bpf::JSET_K, mask, Some(deny), Some(end)),
                    ArgTest::OneOf(values) => {
                        for v in values {
                            asm.jump(bpf::JEQ_K, *v, Some(deny), None);
                        }
                        asm.goto(end);
                    }
                    ArgTest::Not(v) => asm.jump(bpf::JEQ_K, v, Some(end), Some(deny)),
                }
            }
        }
    }
    asm.place(deny);
    asm.ret(libc::SECCOMP_RET_TRACE | u32::from(TRACE_CORE));
    asm.place(enosys);
    asm.ret(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
    asm.place(end);
    asm.finish()
}

fn nr_of(name: &str) -> u32 {
    // Every core name exists on x86-64 (a unit test holds this); a number no call has
    // would only make the check unreachable, never open anything.
    syscall_nr(name).map_or(u32::MAX, |n| n as u32)
}

/// Emits a search over `leaves` (sorted by number) with the accumulator holding the
/// syscall number: a match jumps to its target, a miss to `miss`.
fn dispatch(asm: &mut Asm, leaves: &[(u32, Leaf)], targets: &[Label], miss: Label) {
    const LINEAR: usize = 4;
    if leaves.len() <= LINEAR {
        for ((nr, _), target) in leaves.iter().zip(targets) {
            asm.jump(bpf::JEQ_K, *nr, Some(*target), None);
        }
        asm.goto(miss);
        return;
    }
    let mid = leaves.len() / 2;
    let upper = asm.label();
    asm.jump(bpf::JGE_K, leaves[mid].0, Some(upper), None);
    dispatch(asm, &leaves[..mid], &targets[..mid], miss);
    asm.place(upper);
    dispatch(asm, &leaves[mid..], &targets[mid..], miss);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for check in ARG_CHECKS {
            assert!(CORE_CONDITIONAL.iter().any(|(n, _)| *n == check.name));
        }
    }
}
