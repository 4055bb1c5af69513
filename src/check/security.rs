//! seccomp and ptrace: the two kernel features a jail cannot do without.

use super::facts::*;
use super::finding::{Finding, State};
use super::host::Host;
use super::host::*;
use super::userns::{inherited_seccomp, SeccompStatus};
use caps::Capability;

pub(crate) fn seccomp_finding(host: &dyn Host) -> Finding {
    const NAME: &str = "seccomp";
    let status = SeccompStatus::of(host);
    let Some(actions) = host.seccomp_actions() else {
        return match status.mode {
            None => Finding::gap(
                NAME,
                State::Missing,
                "the kernel has no seccomp support (no Seccomp: line in /proc/self/status)".into(),
                "boot a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y".into(),
            ),
            Some(_) => Finding::gap(
                NAME,
                State::Missing,
                format!(
                    "{SECCOMP_ACTIONS} is absent: the kernel predates 4.14, so it lacks \
                     SECCOMP_RET_KILL_PROCESS, or /proc/sys is not mounted"
                ),
                "boot Linux 4.14 or later, and make sure /proc/sys is visible".into(),
            ),
        };
    };
    let have: Vec<&str> = actions.split_whitespace().collect();
    let lacking: Vec<&str> = ["kill_process", "trace", "errno"]
        .into_iter()
        .filter(|a| !have.contains(a))
        .collect();
    let notif = if have.contains(&"user_notif") {
        "user_notif available"
    } else {
        "user_notif unavailable (Linux 5.0+)"
    };
    let nested = if status.filtered() {
        format!(
            "; this process already runs under {}: moat's filter stacks beneath it, and \
             the outer filter still refuses whatever it refuses",
            status.describe()
        )
    } else {
        String::new()
    };
    if lacking.is_empty() {
        Finding::ok(
            NAME,
            format!("filter mode with kill_process, trace and errno; {notif}{nested}"),
        )
    } else {
        Finding::gap(
            NAME,
            State::Missing,
            format!(
                "the kernel lacks the seccomp action(s) {} (it offers: {}){nested}",
                lacking.join(", "),
                have.join(" ")
            ),
            "boot Linux 4.14 or later built with CONFIG_SECCOMP_FILTER=y".into(),
        )
    }
}

pub(crate) fn ptrace_finding(host: &dyn Host) -> Finding {
    const NAME: &str = "ptrace";
    let scope = number(host, YAMA_PTRACE_SCOPE);
    let cap = host.has_cap(Capability::CAP_SYS_PTRACE);
    let who = caller(host.euid());
    match scope {
        Some(3) => {
            return Finding::gap(
                NAME,
                State::Missing,
                "kernel.yama.ptrace_scope is 3: ptrace is disabled for everyone, and the \
                 setting cannot be lowered until reboot"
                    .into(),
                "set kernel.yama.ptrace_scope = 1 in /etc/sysctl.d/ (and drop any \
                 ptrace_scope=3 from the boot command line), then reboot"
                    .into(),
            );
        }
        Some(2) if !cap => {
            return Finding::gap(
                NAME,
                State::Missing,
                format!(
                    "kernel.yama.ptrace_scope is 2 (admin-only attach) and {who} lacks \
                     CAP_SYS_PTRACE"
                ),
                "run moat as root with CAP_SYS_PTRACE, or sysctl -w kernel.yama.ptrace_scope=1"
                    .into(),
            );
        }
        _ => {}
    }
    let yama = match scope {
        Some(2) => "kernel.yama.ptrace_scope is 2 and the caller has CAP_SYS_PTRACE".to_string(),
        Some(s) => format!("kernel.yama.ptrace_scope is {s}, which allows tracing descendants"),
        None => "Yama is not active".to_string(),
    };
    match host.try_ptrace() {
        Ok(()) => Finding::ok(NAME, format!("{who} can trace its children; {yama}")),
        Err(errno) => {
            let (cause, fix) = match container_hint(host) {
                Some(c) => (
                    format!(
                        "running in a container ({c}) whose seccomp profile or \
                         capability set refuses ptrace"
                    ),
                    "start the container with ptrace allowed: docker/podman run \
                     --cap-add SYS_PTRACE, or --security-opt seccomp=unconfined"
                        .to_string(),
                ),
                None if SeccompStatus::of(host).filtered() => {
                    let c = inherited_seccomp(
                        &SeccompStatus::of(host),
                        "ptrace",
                        "allow ptrace in its policy",
                    );
                    (c.cause, c.fix)
                }
                None => (
                    "an LSM policy (SELinux, AppArmor) refuses ptrace to this caller".to_string(),
                    "look for a ptrace denial in `journalctl -k`, `dmesg` or the audit log"
                        .to_string(),
                ),
            };
            Finding::gap(
                NAME,
                State::Missing,
                format!(
                    "PTRACE_SEIZE on a child failed with {} although {yama}. Cause: {cause}",
                    describe_errno(errno)
                ),
                fix,
            )
        }
    }
}
