//! `moat check`: what this host lets moat do and, for every gap, the cause and the fix.
//!
//! All host facts come through the `Host` trait, so the reasoning that turns facts
//! into findings runs against a fake host in tests, without privileges. `LiveHost` is
//! the real machine. Its probes with side effects (user namespaces, ptrace) run in
//! short-lived forked children so the calling process keeps its namespaces and has
//! no tracee left behind.

mod cgroups;
mod host;
mod kernel;
mod security;
#[cfg(test)]
mod tests;
mod userns;

use host::{Host, LiveHost, Syscall};
pub use userns::explain_userns_failure;

use cgroups::cgroup_finding;
use kernel::{kernel_finding, landlock_finding, pidfd_finding, syscall_finding};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use security::{ptrace_finding, seccomp_finding};
use serde::Serialize;
use std::fmt::Write as _;
use userns::{unprivileged_userns_finding, userns_finding, UsernsFacts};

pub(crate) const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
pub(crate) const DEBIAN_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
pub(crate) const APPARMOR_RESTRICT_USERNS: &str =
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
pub(crate) const YAMA_PTRACE_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";
pub(crate) const SECCOMP_ACTIONS: &str = "/proc/sys/kernel/seccomp/actions_avail";
pub(crate) const LSM_LIST: &str = "/sys/kernel/security/lsm";
pub(crate) const SELF_STATUS: &str = "/proc/self/status";
#[cfg(test)]
pub(crate) const SELF_CGROUP: &str = "/proc/self/cgroup";
#[cfg(test)]
pub(crate) const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";
pub(crate) const SELF_USERNS: &str = "/proc/self/ns/user";
pub(crate) const APPARMOR_PROFILE: &str = "/etc/apparmor.d/moat";

/// The namespaces moat creates inside its user namespace.
pub(crate) const INNER_NAMESPACES: &str = "mount, PID, IPC, UTS and network";

/// Other per-namespace-type limits that, at 0, make creating that namespace fail with
/// ENOSPC just like `user.max_user_namespaces` does for user namespaces.
pub(crate) const INNER_NAMESPACE_LIMITS: [&str; 5] = [
    "max_mnt_namespaces",
    "max_pid_namespaces",
    "max_ipc_namespaces",
    "max_uts_namespaces",
    "max_net_namespaces",
];

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`; libc does not export it.
pub(crate) const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Finding names that moat cannot run without.
pub(crate) const ESSENTIAL: [&str; 3] = ["user_namespaces", "seccomp", "ptrace"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
/// How one capability of the host stands.
pub enum State {
    /// Present and usable.
    Ok,
    /// Absent: moat cannot do what needs it.
    Missing,
    /// Partly there: moat falls back as the finding says.
    Degraded,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Missing => "FAIL",
            State::Degraded => "warn",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
/// One capability of the host: its state, what was seen, and the fix for a gap.
pub struct Finding {
    /// Stable identifier, e.g. `user_namespaces`.
    pub name: &'static str,
    /// Whether it is there.
    pub state: State,
    /// What was seen, and for a gap, its cause.
    pub detail: String,
    /// What to do about it; `None` when the finding is Ok. May span several lines.
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn ok(name: &'static str, detail: String) -> Self {
        Finding {
            name,
            state: State::Ok,
            detail,
            fix: None,
        }
    }

    pub(crate) fn gap(name: &'static str, state: State, detail: String, fix: String) -> Self {
        Finding {
            name,
            state,
            detail,
            fix: Some(fix),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
/// What `moat check` found: one finding per capability of the host.
pub struct Report {
    /// Every capability probed, in a fixed order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The finding called `name`, if it was probed.
    pub fn get(&self, name: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.name == name)
    }

    /// False when something moat cannot run without is Missing: user namespaces for the
    /// current caller, seccomp filters, or ptrace.
    pub fn usable(&self) -> bool {
        !self
            .findings
            .iter()
            .any(|f| f.state == State::Missing && ESSENTIAL.contains(&f.name))
    }

    /// Human-readable text: one block per finding, its fix indented below it, and a
    /// closing verdict.
    pub fn render(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.name.len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for f in &self.findings {
            let _ = writeln!(
                out,
                "{:<4} {:<width$}  {}",
                f.state.label(),
                f.name,
                f.detail
            );
            if let Some(fix) = &f.fix {
                let mut lines = fix.lines();
                if let Some(first) = lines.next() {
                    let _ = writeln!(out, "     fix: {first}");
                }
                for line in lines {
                    let _ = writeln!(out, "          {line}");
                }
            }
        }
        let missing: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f.state == State::Missing && ESSENTIAL.contains(&f.name))
            .map(|f| f.name)
            .collect();
        let degraded = self
            .findings
            .iter()
            .filter(|f| f.state != State::Ok)
            .count();
        if missing.is_empty() {
            if degraded == 0 {
                out.push_str("moat can run here with every feature.\n");
            } else {
                let _ = writeln!(
                    out,
                    "moat can run here; {degraded} item(s) above fall back as described."
                );
            }
        } else {
            let _ = writeln!(out, "moat cannot run here: {} missing.", missing.join(", "));
        }
        out
    }
}

/// Probe the real host.
pub fn probe() -> Report {
    probe_with(&LiveHost)
}

/// Probe through `host`.
pub(crate) fn probe_with(host: &dyn Host) -> Report {
    let facts = UsernsFacts::gather(host);
    let mut findings = vec![kernel_finding(host), userns_finding(host, &facts)];
    if host.euid() == 0 {
        findings.push(unprivileged_userns_finding(&facts));
    }
    findings.push(seccomp_finding(host));
    findings.push(ptrace_finding(host));
    findings.push(cgroup_finding(&host.cgroup_layout(), host.euid()));
    findings.push(landlock_finding(host));
    findings.push(pidfd_finding(host));
    let container = container_hint(host);
    for call in Syscall::ALL {
        findings.push(syscall_finding(
            call,
            host.syscall_errno(call),
            container.as_deref(),
        ));
    }
    Report { findings }
}

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
