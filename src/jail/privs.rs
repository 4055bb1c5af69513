//! Privileges, child side: what the sandboxee gives up before it runs the program.
//! Order matters and each step says why it sits where it does. No allocation here.

/// Which privilege step failed (reported through the error pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PrivStep {
    Securebits = 1,
    Bounding = 2,
    Ambient = 3,
    Groups = 4,
    Ids = 5,
    Capset = 6,
    NoNewPrivs = 7,
    Seccomp = 8,
}

impl PrivStep {
    pub fn from_u32(v: u32) -> Option<PrivStep> {
        use PrivStep::*;
        [
            Securebits, Bounding, Ambient, Groups, Ids, Capset, NoNewPrivs, Seccomp,
        ]
        .into_iter()
        .find(|s| *s as u32 == v)
    }

    pub fn describe(self) -> &'static str {
        match self {
            PrivStep::Securebits => "locking securebits",
            PrivStep::Bounding => "dropping the capability bounding set",
            PrivStep::Ambient => "clearing ambient capabilities",
            PrivStep::Groups => "dropping supplementary groups",
            PrivStep::Ids => "switching to the inside uid/gid",
            PrivStep::Capset => "clearing capabilities",
            PrivStep::NoNewPrivs => "setting no_new_privs",
            PrivStep::Seccomp => "loading the seccomp filter",
        }
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(r: libc::c_int, step: PrivStep) -> Result<(), (PrivStep, i32)> {
    if r < 0 {
        Err((step, errno()))
    } else {
        Ok(())
    }
}

// securebits (linux/securebits.h)
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops supplementary groups with the raw system call. glibc's setgroups (like its
/// setres[ug]id) signals every thread the process had to change ids in step; in a
/// child cloned from a multi-threaded parent those threads do not exist, and the call
/// would wait for them forever. The child has one thread, so the raw call is exact.
pub fn set_groups_none() -> libc::c_int {
    // SAFETY: setgroups with an empty list.
    unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) as libc::c_int }
}

/// Sets real, effective and saved gid then uid, with raw system calls (see
/// `set_groups_none` for why not glibc's).
pub fn set_ids(uid: u32, gid: u32) -> libc::c_int {
    // SAFETY: id system calls with plain integers.
    unsafe {
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) < 0 {
            return -1;
        }
        libc::syscall(libc::SYS_setresuid, uid, uid, uid) as libc::c_int
    }
}

/// Takes the calling process from "every capability in its own user namespace" to
/// "none, for good", as `uid`/`gid`. `drop_groups`: also drop supplementary groups
/// (possible only when the caller was root, and needed then: they would be root's).
pub fn drop_all(uid: u32, gid: u32, drop_groups: bool) -> Result<(), (PrivStep, i32)> {
    // SAFETY (all calls below): prctl/setgroups/setres*id/capset with constant
    // arguments or stack structs; no memory is shared with anyone.
    unsafe {
        // Lock securebits first (needs CAP_SETPCAP, which is about to go): uid 0 never
        // regains capabilities through exec, setuid transitions cannot restore them,
        // and no ambient capability can be raised again.
        check(
            libc::prctl(
                libc::PR_SET_SECUREBITS,
                SECBIT_NOROOT
                    | SECBIT_NOROOT_LOCKED
                    | SECBIT_NO_SETUID_FIXUP
                    | SECBIT_NO_SETUID_FIXUP_LOCKED
                    | SECBIT_KEEP_CAPS_LOCKED
                    | SECBIT_NO_CAP_AMBIENT_RAISE
                    | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
                0,
                0,
                0,
            ),
            PrivStep::Securebits,
        )?;
        // Empty the bounding set so that no file capability can ever bring one back.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 {
                if errno() == libc::EINVAL {
                    break; // past the kernel's last capability
                }
                return Err((PrivStep::Bounding, errno()));
            }
        }
        check(
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            ),
            PrivStep::Ambient,
        )?;
        if drop_groups {
            check(set_groups_none(), PrivStep::Groups)?;
        }
        check(set_ids(uid, gid), PrivStep::Ids)?;
        // With SECBIT_NO_SETUID_FIXUP the id change kept the capability sets; clear
        // effective, permitted and inheritable explicitly.
        let header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        check(
            libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr())
                as libc::c_int,
            PrivStep::Capset,
        )?;
        // Required for an unprivileged seccomp filter, and stops setuid binaries and
        // file capabilities from granting anything on exec.
        check(
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            PrivStep::NoNewPrivs,
        )?;
    }
    Ok(())
}

/// Loads the prepared BPF program; the last step before exec, so that everything
/// above still ran unfiltered and everything after runs under it.
pub fn load_filter(prog: &libc::sock_fprog) -> Result<(), (PrivStep, i32)> {
    // SAFETY: the program points into the plan's filter, alive until exec.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    check(r, PrivStep::Seccomp)
}
