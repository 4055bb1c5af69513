//! Names and numbers: syscalls, architectures and errnos as a person writes them and
//! as the kernel numbers them (x86-64, with i386 and x32 recognised to be refused).

use libseccomp::{ScmpArch, ScmpSyscall};

/// `AUDIT_ARCH_X86_64`: the only architecture a jail's program may call in.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386`: `int 0x80` from a 64-bit program arrives with this.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 calls are x86-64 calls with this bit set in the number.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;

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

/// errno names a profile may use.
pub const ERRNOS: &[(&str, i32)] = &[
    ("EPERM", libc::EPERM),
    ("ENOENT", libc::ENOENT),
    ("ESRCH", libc::ESRCH),
    ("EINTR", libc::EINTR),
    ("EIO", libc::EIO),
    ("ENXIO", libc::ENXIO),
    ("E2BIG", libc::E2BIG),
    ("ENOEXEC", libc::ENOEXEC),
    ("EBADF", libc::EBADF),
    ("ECHILD", libc::ECHILD),
    ("EAGAIN", libc::EAGAIN),
    ("ENOMEM", libc::ENOMEM),
    ("EACCES", libc::EACCES),
    ("EFAULT", libc::EFAULT),
    ("EBUSY", libc::EBUSY),
    ("EEXIST", libc::EEXIST),
    ("EXDEV", libc::EXDEV),
    ("ENODEV", libc::ENODEV),
    ("ENOTDIR", libc::ENOTDIR),
    ("EISDIR", libc::EISDIR),
    ("EINVAL", libc::EINVAL),
    ("ENFILE", libc::ENFILE),
    ("EMFILE", libc::EMFILE),
    ("ENOTTY", libc::ENOTTY),
    ("EFBIG", libc::EFBIG),
    ("ENOSPC", libc::ENOSPC),
    ("ESPIPE", libc::ESPIPE),
    ("EROFS", libc::EROFS),
    ("ENOSYS", libc::ENOSYS),
    ("ENOTSUP", libc::ENOTSUP),
    ("EOPNOTSUPP", libc::EOPNOTSUPP),
    ("EAFNOSUPPORT", libc::EAFNOSUPPORT),
    ("EPROTONOSUPPORT", libc::EPROTONOSUPPORT),
    ("ENETUNREACH", libc::ENETUNREACH),
    ("ECONNREFUSED", libc::ECONNREFUSED),
    ("ETIMEDOUT", libc::ETIMEDOUT),
];

/// The errno a name stands for.
pub fn errno_value(name: &str) -> Option<i32> {
    ERRNOS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The name of an errno value, if it has one here.
pub fn errno_name(value: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn errnos_both_ways() {
        assert_eq!(errno_value("EACCES"), Some(libc::EACCES));
        assert_eq!(errno_name(libc::ENOSYS), Some("ENOSYS"));
        assert_eq!(errno_value("EWHAT"), None);
    }
}
