//! Privileges, child side: what the sandboxee gives up before it runs the program.
//! Order matters and each step says why it sits where it does. No allocation here.

use super::stage::Stage;
use super::sys::errno;

fn check(r: libc::c_int, step: Stage) -> Result<(), (Stage, i32)> {
    if r < 0 {
        Err((step, errno()))
    } else {
        Ok(())
    }
}

/// prctl(2) with integer arguments only. No allocation.
fn prctl(option: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> libc::c_int {
    // SAFETY: every option used here takes plain integers, no pointers.
    unsafe { libc::prctl(option, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) }
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
    // SAFETY: setgroups with an empty list and a null pointer, which it never reads.
    unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) as libc::c_int }
}

/// Sets real, effective and saved gid then uid, with raw system calls (see
/// `set_groups_none` for why not glibc's).
pub fn set_ids(uid: u32, gid: u32) -> libc::c_int {
    // SAFETY: setresgid with plain integers.
    if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } < 0 {
        return -1;
    }
    // SAFETY: setresuid with plain integers.
    unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) as libc::c_int }
}

/// Taking a process from "every capability in its own user namespace" to "none, for
/// good" comes in two halves. The first, which a forked child inherits: securebits locked,
/// the bounding set empty. init does it once before it forks the program's process, so
/// the program's critical path does not repeat some forty prctl calls; the program's
/// process then only needs [`drop_rest`].
pub fn lock_securebits_and_bounding() -> Result<(), (Stage, i32)> {
    // Lock securebits first (needs CAP_SETPCAP, which is about to go): uid 0 never
    // regains capabilities through exec, setuid transitions cannot restore them, and
    // no ambient capability can be raised again.
    check(
        prctl(
            libc::PR_SET_SECUREBITS,
            SECBIT_NOROOT
                | SECBIT_NOROOT_LOCKED
                | SECBIT_NO_SETUID_FIXUP
                | SECBIT_NO_SETUID_FIXUP_LOCKED
                | SECBIT_KEEP_CAPS_LOCKED
                | SECBIT_NO_CAP_AMBIENT_RAISE
                | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
            0,
        ),
        Stage::Securebits,
    )?;
    // Empty the bounding set so that no file capability can ever bring one back.
    for cap in 0..64 {
        if prctl(libc::PR_CAPBSET_DROP, cap, 0) < 0 {
            if errno() == libc::EINVAL {
                break; // past the kernel's last capability
            }
            return Err((Stage::Bounding, errno()));
        }
    }
    Ok(())
}

/// The second half, for a process whose securebits are locked and
/// whose bounding set is empty (inherited across fork): no ambient capability, the
/// inside ids (`uid`/`gid`), no capability left in any set, no new privileges.
/// `drop_groups`: also drop supplementary groups (possible only when the caller was
/// root, and needed then: they would be root's).
pub fn drop_rest(uid: u32, gid: u32, drop_groups: bool) -> Result<(), (Stage, i32)> {
    check(
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        ),
        Stage::Ambient,
    )?;
    if drop_groups {
        check(set_groups_none(), Stage::DropGroups)?;
    }
    check(set_ids(uid, gid), Stage::SetIds)?;
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
    // SAFETY: capset reads a version-3 header and two data structs from our stack.
    let r = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    check(r as libc::c_int, Stage::Capset)?;
    // Required for an unprivileged seccomp filter, and stops setuid binaries and file
    // capabilities from granting anything on exec.
    check(prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0), Stage::NoNewPrivs)
}

/// Loads the prepared BPF program; the last step before exec, so that everything
/// above still ran unfiltered and everything after runs under it.
pub fn load_filter(prog: &libc::sock_fprog) -> Result<(), (Stage, i32)> {
    // SAFETY: the program points into the plan's filter, alive until exec; the kernel
    // copies it before returning.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            prog as *const libc::sock_fprog,
            0,
            0,
        )
    };
    check(r, Stage::Seccomp)
}
