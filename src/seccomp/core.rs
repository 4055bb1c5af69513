//! The always-denied core: what no profile can allow, compiled into every filter moat
//! loads, in front of whatever rules it is given. A profile may only make
//! a core syscall fail with an errno; any other rule for one is overruled here, in the
//! filter itself, so no caller of the library can lift the core by building rules by
//! hand.

use super::bpf::{self, Asm, Label};
use super::names::syscall_nr;
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
    "open_tree_attr",
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
    ("prlimit64", "only on the calling process itself (pid 0)"),
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
#[derive(Debug)]
pub struct ArgCheck {
    pub(crate) name: &'static str,
    pub(crate) arg: u32,
    pub(crate) test: ArgTest,
}

#[derive(Debug)]
pub(crate) enum ArgTest {
    /// Denied if any of these bits is set.
    AnyBit(u32),
    /// Denied if equal to one of these values.
    OneOf(&'static [u32]),
    /// Denied unless equal to this value.
    Not(u32),
}

pub(crate) const ARG_CHECKS: &[ArgCheck] = &[
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
    // moat's init runs with the program's ids, so the kernel would let the program
    // change init's limits (and any other process's of the jail). Only its own, named
    // as pid 0, as glibc's getrlimit and setrlimit do.
    ArgCheck {
        name: "prlimit64",
        arg: 0,
        test: ArgTest::Not(0),
    },
];

/// What the core says about one syscall, placed ahead of the rules for it.
#[derive(Debug, Clone, Copy)]
pub enum Leaf {
    /// A violation, always.
    Deny,
    /// Fails with ENOSYS (clone3: libc falls back to clone, whose flags the filter can
    /// inspect; clone3's are behind a pointer it cannot read).
    Enosys,
    /// A violation when the argument check matches; otherwise the rules decide.
    Check(&'static ArgCheck),
}

/// Whether the rules give `name` only errno actions: the one thing a profile may do
/// with a core syscall. Such a call never reaches the kernel, whatever its arguments,
/// so the core leaves it to the rules; any allow among them overrules that.
fn errno_only(rules: &[Rule], name: &str) -> bool {
    let mut of = rules.iter().filter(|r| r.name == name).peekable();
    of.peek().is_some() && of.all(|r| matches!(r.action, Action::Errno(_)))
}

/// What the core puts in front of the rules, by syscall number.
pub fn leaves(rules: &[Rule]) -> Vec<(u32, Leaf)> {
    let mut out = Vec::new();
    for name in CORE_DENIED {
        if errno_only(rules, name) {
            continue;
        }
        let leaf = if *name == "clone3" {
            Leaf::Enosys
        } else {
            Leaf::Deny
        };
        out.extend(nr_of(name).map(|nr| (nr, leaf)));
    }
    for check in ARG_CHECKS {
        if !errno_only(rules, check.name) {
            out.extend(nr_of(check.name).map(|nr| (nr, Leaf::Check(check))));
        }
    }
    out
}

fn nr_of(name: &str) -> Option<u32> {
    // Every core name exists on x86-64 (a unit test holds this).
    syscall_nr(name).and_then(|n| u32::try_from(n).ok())
}

/// Emits an argument check: a match jumps to `deny`, anything else falls through.
/// The kernel reads these arguments as 32 bits, so only the low word is compared and
/// junk in the high half cannot hide a match.
pub fn emit_check(asm: &mut Asm, check: &ArgCheck, deny: Label) {
    asm.load(bpf::ARGS + 8 * check.arg);
    match check.test {
        ArgTest::AnyBit(mask) => asm.goto_if(bpf::JSET_K, mask, deny),
        ArgTest::OneOf(values) => {
            for v in values {
                asm.goto_if(bpf::JEQ_K, *v, deny);
            }
        }
        ArgTest::Not(v) => asm.goto_unless(bpf::JEQ_K, v, deny),
    }
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
