//! Landlock, pidfd, the newer system calls moat uses where they exist, and the kernel.

use super::facts::*;
use super::finding::{Finding, State};
use super::host::*;
use super::host::{Host, Syscall};

pub(crate) fn landlock_finding(host: &dyn Host) -> Finding {
    const NAME: &str = "landlock";
    let lsm = host.read(LSM_LIST).map(|l| l.trim().to_string());
    let lsm_note = lsm
        .as_deref()
        .map(|l| format!(" (active LSMs: {l})"))
        .unwrap_or_default();
    match host.landlock_abi() {
        Ok(abi) => Finding::ok(NAME, format!("Landlock ABI version {abi}{lsm_note}")),
        Err(libc::EOPNOTSUPP) => {
            let list = match lsm.as_deref() {
                Some(l) if !l.is_empty() => format!("landlock,{l}"),
                _ => "landlock,<the current list>".into(),
            };
            Finding::gap(
                NAME,
                State::Degraded,
                format!("the kernel has Landlock but it was not enabled at boot{lsm_note}"),
                format!("add it to the kernel command line: lsm={list}"),
            )
        }
        Err(libc::ENOSYS) => {
            let hidden = if container_hint(host).is_some() {
                ", or the container's seccomp profile hides landlock_create_ruleset"
            } else {
                ""
            };
            Finding::gap(
                NAME,
                State::Degraded,
                format!(
                    "the kernel lacks Landlock (Linux 5.13+ with \
                     CONFIG_SECURITY_LANDLOCK=y){hidden}; \
                     moat confines files with the mount namespace and seccomp alone"
                ),
                "boot a kernel built with CONFIG_SECURITY_LANDLOCK=y and landlock in lsm=".into(),
            )
        }
        Err(errno) => Finding::gap(
            NAME,
            State::Degraded,
            format!(
                "landlock_create_ruleset failed with {}",
                describe_errno(errno)
            ),
            "look for a seccomp filter or LSM policy refusing landlock_create_ruleset".into(),
        ),
    }
}

pub(crate) fn pidfd_finding(host: &dyn Host) -> Finding {
    const NAME: &str = "pidfd";
    match host.try_pidfd() {
        Ok(()) => Finding::ok(NAME, "pidfd_open works".into()),
        Err(libc::ENOSYS) => Finding::gap(
            NAME,
            State::Degraded,
            "pidfd_open is absent (Linux 5.3+); moat tracks the sandbox by plain PID".into(),
            "boot Linux 5.3 or later".into(),
        ),
        Err(errno) => Finding::gap(
            NAME,
            State::Degraded,
            format!(
                "pidfd_open failed with {}; moat tracks the sandbox by plain PID",
                describe_errno(errno)
            ),
            "look for a seccomp filter refusing pidfd_open, or a descriptor limit reached".into(),
        ),
    }
}

pub(crate) fn syscall_finding(call: Syscall, errno: i32, container: Option<&str>) -> Finding {
    let name = call.name();
    match errno {
        libc::ENOSYS => {
            let hidden = match container {
                Some(c) => format!(
                    ", or the seccomp profile of this container ({c}) hides it (Docker's \
                     default answers ENOSYS for clone3)"
                ),
                None => String::new(),
            };
            Finding::gap(
                name,
                State::Degraded,
                format!(
                    "{name} is absent (Linux {}+){hidden}; {}",
                    call.since(),
                    call.without()
                ),
                format!("boot Linux {} or later", call.since()),
            )
        }
        libc::EPERM | libc::EACCES => Finding::gap(
            name,
            State::Degraded,
            format!(
                "{name} is refused with {} (a seccomp filter); {}",
                describe_errno(errno),
                call.without()
            ),
            format!("allow {name} in the seccomp policy of whatever runs moat"),
        ),
        _ => Finding::ok(name, format!("{name} is available")),
    }
}

pub(crate) fn kernel_finding(host: &dyn Host) -> Finding {
    Finding::ok(
        "kernel",
        host.kernel().unwrap_or_else(|| "uname failed".into()),
    )
}
