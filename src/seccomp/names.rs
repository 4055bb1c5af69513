//! Names and numbers: syscalls, architectures and errnos as a person writes them and
//! as the kernel numbers them (x86-64, with i386 and x32 recognised to be refused).

use super::table;
use nix::errno::Errno;

/// `AUDIT_ARCH_X86_64`: the only architecture a jail's program may call in.
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// `AUDIT_ARCH_I386`: `int 0x80` from a 64-bit program arrives with this.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 calls are x86-64 calls with this bit set in the number.
pub const X32_SYSCALL_BIT: u64 = 0x4000_0000;

/// The native x86-64 number of a syscall name, or None for names this architecture
/// lacks.
pub fn syscall_nr(name: &str) -> Option<i32> {
    let by_name = table::X86_64_BY_NAME;
    let i = by_name.binary_search_by(|(n, _)| n.cmp(&name)).ok()?;
    i32::try_from(by_name[i].1).ok()
}

fn name_in(tab: &'static [(u32, &'static str)], nr: u64) -> Option<&'static str> {
    let nr = u32::try_from(nr).ok()?;
    let i = tab.binary_search_by(|(n, _)| n.cmp(&nr)).ok()?;
    Some(tab[i].1)
}

/// The name of syscall `nr` as the architecture `arch` (an AUDIT_ARCH value) numbers it.
pub fn syscall_name(arch: u32, nr: u64) -> String {
    let known = match (arch, nr & X32_SYSCALL_BIT != 0) {
        (AUDIT_ARCH_X86_64, false) => name_in(table::X86_64, nr),
        (AUDIT_ARCH_X86_64, true) => name_in(table::X32, nr & !X32_SYSCALL_BIT),
        (AUDIT_ARCH_I386, _) => name_in(table::I386, nr),
        _ => None,
    };
    known.map_or_else(|| format!("unknown({nr})"), str::to_string)
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

/// The largest errno value (`MAX_ERRNO`): a filter's errno must be at most this.
pub const MAX_ERRNO: i32 = 4095;

/// The errno a name stands for (`EACCES`), or a number written as one (`13`).
pub fn errno_value(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return (1..=MAX_ERRNO).contains(&n).then_some(n);
    }
    (1..=133).find(|&v| errno_name(v).as_deref() == Some(text))
}

/// The name of an errno value (`EACCES`), if the C library gives it one.
pub fn errno_name(value: i32) -> Option<String> {
    // nix's variant names are the C names.
    let e = Errno::from_raw(value);
    (e != Errno::UnknownErrno).then(|| format!("{e:?}"))
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
        assert_eq!(errno_value("EHWPOISON"), Some(libc::EHWPOISON));
        assert_eq!(errno_value("13"), Some(13));
        assert_eq!(errno_value("0"), None);
        assert_eq!(errno_value("4096"), None);
        assert_eq!(errno_name(libc::ENOSYS).as_deref(), Some("ENOSYS"));
        assert_eq!(errno_name(4000), None);
        assert_eq!(errno_value("EWHAT"), None);
    }

    #[test]
    fn the_table_is_sorted_and_complete() {
        for tab in [table::X86_64, table::I386, table::X32] {
            assert!(tab.windows(2).all(|w| w[0].0 < w[1].0));
        }
        let by_name = table::X86_64_BY_NAME;
        assert!(by_name.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(by_name.len(), table::X86_64.len());
        for (nr, name) in table::X86_64 {
            assert_eq!(syscall_nr(name), Some(*nr as i32));
        }
        for (name, nr) in [
            ("mseal", 462),
            ("open_tree_attr", 467),
            ("clone3", 435),
            ("getppid", 110),
        ] {
            assert_eq!(syscall_nr(name), Some(nr));
        }
        assert_eq!(syscall_name(AUDIT_ARCH_X86_64, 0x4000_0000 | 39), "getpid");
    }
}
