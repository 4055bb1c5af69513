//! The helpers every finding words the host's facts with.

use super::host::Host;
use crate::seccomp::names::errno_name;
use nix::errno::Errno;
use nix::sys::signal::Signal;

/// A probe's result in words: `EPERM (Operation not permitted)`, or, for a negative
/// value, the signal that killed the probe child.
pub(crate) fn describe_errno(errno: i32) -> String {
    if errno < 0 {
        return match Signal::try_from(-errno) {
            Ok(sig) => format!("the probe child killed by {sig}"),
            Err(_) => format!("the probe child killed by signal {}", -errno),
        };
    }
    let name = errno_name(errno).unwrap_or_else(|| format!("errno {errno}"));
    format!("{name} ({})", Errno::from_raw(errno).desc())
}

pub(crate) fn caller(euid: u32) -> String {
    if euid == 0 {
        "root".to_string()
    } else {
        format!("uid {euid}")
    }
}

/// A sysctl or other single-number file.
pub(crate) fn number(host: &dyn Host, path: &str) -> Option<u64> {
    host.read(path)?.trim().parse().ok()
}

/// A short name for the container runtime this process seems to run under, with the
/// evidence, or `None` when nothing suggests one.
pub(crate) fn container_hint(host: &dyn Host) -> Option<String> {
    if host.exists("/.dockerenv") {
        return Some("Docker: /.dockerenv exists".into());
    }
    if host.exists("/run/.containerenv") {
        return Some("Podman: /run/.containerenv exists".into());
    }
    if let Some(kind) = host.read("/run/systemd/container") {
        let kind = kind.trim();
        if !kind.is_empty() {
            return Some(format!("{kind}: /run/systemd/container"));
        }
    }
    let init_cgroup = host.read("/proc/1/cgroup").unwrap_or_default();
    for marker in ["kubepods", "docker", "libpod", "containerd", "crio", "lxc"] {
        if init_cgroup.contains(marker) {
            return Some(format!("{marker}: named in /proc/1/cgroup"));
        }
    }
    None
}
