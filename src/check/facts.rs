//! The helpers every finding words the host's facts with.

use super::host::Host;
use nix::errno::Errno;
use nix::sys::signal::Signal;

pub(crate) fn errno_name(errno: i32) -> String {
    if errno < 0 {
        return match Signal::try_from(-errno) {
            Ok(sig) => format!("the probe child killed by {sig}"),
            Err(_) => format!("the probe child killed by signal {}", -errno),
        };
    }
    let e = Errno::from_raw(errno);
    format!("{e:?} ({})", e.desc())
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
