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

mod facts;
mod finding;

pub use finding::{Finding, Report, State};
pub use userns::explain_userns_failure;

use cgroups::cgroup_finding;
use facts::container_hint;
use host::{Host, LiveHost, Syscall};
use kernel::{kernel_finding, landlock_finding, pidfd_finding, syscall_finding};
use security::{ptrace_finding, seccomp_finding};
use userns::{unprivileged_userns_finding, userns_finding, UsernsFacts};

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
