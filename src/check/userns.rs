//! User namespaces: whether this caller can create them (and the inner namespaces),
//! and, when not, which of the usual causes it is and how to fix it. Shared with the
//! jail's error message when the clone is refused.

use super::facts::*;
use super::finding::{Finding, State};
use super::host::Host;
use super::host::LiveHost;
use super::host::*;
use caps::Capability;
use std::fmt::Write as _;

/// Turns a failure to create a user namespace (the errno from clone or unshare with
/// CLONE_NEWUSER, possibly together with other namespace flags) into a message giving
/// the cause and the fix, read from the same host facts as `moat check`.
pub fn explain_userns_failure(errno: i32) -> String {
    explain_userns_failure_with(&LiveHost, errno)
}

/// [`explain_userns_failure`] against any [`Host`].
pub(crate) fn explain_userns_failure_with(host: &dyn Host, errno: i32) -> String {
    let facts = UsernsFacts::gather(host);
    let mut out = format!(
        "creating the sandbox's namespaces failed with {} as {}",
        describe_errno(errno),
        caller(host.euid())
    );
    for c in diagnose_userns(&facts, errno, Stage::Spawn) {
        let _ = write!(
            out,
            "\ncause: {}\nfix: {}",
            c.cause,
            c.fix.replace('\n', "\n     ")
        );
    }
    out
}
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SeccompStatus {
    /// The `Seccomp:` line: 0 none, 1 strict, 2 filter. `None` without CONFIG_SECCOMP.
    pub(crate) mode: Option<u32>,
    pub(crate) filters: Option<u32>,
}

impl SeccompStatus {
    pub(crate) fn of(host: &dyn Host) -> Self {
        let status = host.read(SELF_STATUS).unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        };
        SeccompStatus {
            mode: field("Seccomp:"),
            filters: field("Seccomp_filters:"),
        }
    }

    pub(crate) fn filtered(&self) -> bool {
        self.mode == Some(2)
    }

    pub(crate) fn describe(&self) -> String {
        match self.filters {
            Some(n) => format!("{n} seccomp filter(s)"),
            None => "a seccomp filter".into(),
        }
    }
}

/// Where a namespace failure happened; the same errno means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// unshare(CLONE_NEWUSER) alone.
    Create,
    /// The mount/PID/IPC/UTS/net namespaces inside a freshly created user namespace.
    Inside,
    /// The spawner's clone with every namespace flag at once: either of the above.
    Spawn,
}

pub(crate) struct Cause {
    pub(crate) cause: String,
    pub(crate) fix: String,
}

pub(crate) struct UsernsFacts {
    euid: u32,
    max: Option<u64>,
    debian: Option<u64>,
    apparmor: Option<u64>,
    inner_limits_zero: Vec<&'static str>,
    /// CAP_SYS_ADMIN exempts the caller from the unprivileged-only restrictions.
    privileged: bool,
    container: Option<String>,
    seccomp: SeccompStatus,
    kernel_has_userns: bool,
    exe: String,
}

impl UsernsFacts {
    pub(crate) fn gather(host: &dyn Host) -> Self {
        UsernsFacts {
            euid: host.euid(),
            max: number(host, MAX_USER_NAMESPACES),
            debian: number(host, DEBIAN_USERNS_CLONE),
            apparmor: number(host, APPARMOR_RESTRICT_USERNS),
            inner_limits_zero: INNER_NAMESPACE_LIMITS
                .into_iter()
                .filter(|l| number(host, &format!("/proc/sys/user/{l}")) == Some(0))
                .collect(),
            privileged: host.has_cap(Capability::CAP_SYS_ADMIN),
            container: container_hint(host),
            seccomp: SeccompStatus::of(host),
            kernel_has_userns: host.exists(SELF_USERNS),
            exe: host.exe().unwrap_or_else(|| "/usr/local/bin/moat".into()),
        }
    }
}

fn max_userns_zero() -> Cause {
    Cause {
        cause: "user.max_user_namespaces is 0, so nobody may create a user namespace".into(),
        fix: "sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)".into(),
    }
}

fn debian_sysctl() -> Cause {
    Cause {
        cause: "kernel.unprivileged_userns_clone is 0 (Debian's switch), so only callers \
                with CAP_SYS_ADMIN may create user namespaces"
            .into(),
        fix: "sysctl -w kernel.unprivileged_userns_clone=1 (persist it in /etc/sysctl.d/)".into(),
    }
}

fn apparmor_restriction(stage: Stage, exe: &str) -> Cause {
    let what = match stage {
        Stage::Create => {
            "AppArmor refuses user namespaces to programs without a profile granting `userns`"
        }
        Stage::Inside => {
            "AppArmor lets a program without a profile granting `userns` create a user \
             namespace but strips every capability inside it, so the namespaces moat needs \
             there cannot be made"
        }
        Stage::Spawn => {
            "AppArmor refuses user namespaces, or the capabilities inside them, to programs \
             without a profile granting `userns`"
        }
    };
    Cause {
        cause: format!(
            "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 23.10 and later): {what}"
        ),
        fix: format!(
            "give moat an AppArmor profile: write {APPARMOR_PROFILE} containing\n\
             \x20 abi <abi/4.0>,\n\
             \x20 include <tunables/global>\n\
             \x20 profile moat {exe} flags=(unconfined) {{\n\
             \x20   userns,\n\
             \x20   include if exists <local/moat>\n\
             \x20 }}\n\
             then load it: apparmor_parser -r {APPARMOR_PROFILE}\n\
             or lift the restriction for every program: \
             sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
        ),
    }
}

fn container_seccomp(container: &str, seccomp: &SeccompStatus) -> Cause {
    if seccomp.mode == Some(0) {
        // No filter is on this process, so the runtime's restriction must be elsewhere.
        return Cause {
            cause: format!(
                "running in a container ({container}) that applies no seccomp filter here, \
                 so the runtime restricts namespaces some other way: an AppArmor or SELinux \
                 profile, or a user namespace of its own that does not map this uid"
            ),
            fix: "start the container with --privileged, or with --security-opt \
                  apparmor=unconfined --security-opt label=disable; the host's \
                  `journalctl -k` names the denial"
                .into(),
        };
    }
    let filter = if seccomp.filtered() {
        format!("; this process runs under {}", seccomp.describe())
    } else {
        String::new()
    };
    Cause {
        cause: format!(
            "running in a container ({container}) whose seccomp profile refuses unshare \
             and clone with namespace flags (Docker's and Podman's default profiles do so \
             for callers without CAP_SYS_ADMIN){filter}"
        ),
        fix: "start the container with a seccomp profile that allows unshare and clone with \
              CLONE_NEWUSER: docker/podman run --security-opt seccomp=unconfined \
              (or --privileged); on Kubernetes set securityContext.seccompProfile.type: \
              Unconfined"
            .into(),
    }
}

/// `refused` names what the filter refuses; `policy_fix` says how to allow it.
pub(crate) fn inherited_seccomp(seccomp: &SeccompStatus, refused: &str, policy_fix: &str) -> Cause {
    Cause {
        cause: format!(
            "this process runs under {} inherited from whatever started it (systemd's \
             sandboxing options, a CI runner, a sandbox), which refuses {refused}",
            seccomp.describe()
        ),
        fix: format!("run moat outside that sandbox, or {policy_fix}"),
    }
}

fn inherited_seccomp_userns(seccomp: &SeccompStatus) -> Cause {
    inherited_seccomp(
        seccomp,
        "namespace creation",
        "allow namespaces in its policy (for a systemd unit: RestrictNamespaces=no)",
    )
}

fn unexplained(errno: i32) -> Cause {
    Cause {
        cause: format!(
            "{} with no sysctl, container or seccomp restriction to explain it: likely an \
             LSM policy (SELinux `user_namespace {{ create }}`, an AppArmor profile \
             confining the caller), a chroot (the kernel refuses user namespaces to \
             chrooted callers), or a uid/gid without a mapping in the current user \
             namespace",
            describe_errno(errno)
        ),
        fix: "look for a denial in `journalctl -k`, `dmesg` or the audit log at the time of \
              the failure, and run moat outside any chroot"
            .into(),
    }
}

/// Every cause that fits `errno` at `stage`, most specific first; never empty.
fn diagnose_userns(f: &UsernsFacts, errno: i32, stage: Stage) -> Vec<Cause> {
    let mut causes = Vec::new();
    let may_be_creation = stage != Stage::Inside;
    let may_be_inside = stage != Stage::Create;
    match errno {
        libc::EPERM | libc::EACCES => {
            if may_be_creation && f.max == Some(0) {
                causes.push(max_userns_zero());
            }
            if may_be_creation && f.debian == Some(0) && !f.privileged {
                causes.push(debian_sysctl());
            }
            if f.apparmor == Some(1) && !f.privileged {
                causes.push(apparmor_restriction(stage, &f.exe));
            }
            if causes.is_empty() {
                if let Some(container) = &f.container {
                    causes.push(container_seccomp(container, &f.seccomp));
                } else if f.seccomp.filtered() {
                    causes.push(inherited_seccomp_userns(&f.seccomp));
                } else {
                    causes.push(unexplained(errno));
                }
            }
        }
        libc::ENOSPC | libc::EUSERS => {
            if may_be_creation {
                match f.max {
                    Some(0) => causes.push(max_userns_zero()),
                    max => {
                        let limit = max.map_or("unreadable".to_string(), |m| m.to_string());
                        let suggest = max.map_or(15000, |m| (m * 2).max(15000));
                        causes.push(Cause {
                            cause: format!(
                                "the user namespace limit is used up: \
                                 user.max_user_namespaces is {limit} (counted per user, in \
                                 this and every ancestor user namespace), or namespaces \
                                 are nested deeper than the kernel's 32 levels"
                            ),
                            fix: format!(
                                "raise the limit: sysctl -w user.max_user_namespaces={suggest}; \
                                 or find the processes holding leftover namespaces with \
                                 `lsns -t user` and end them"
                            ),
                        });
                    }
                }
            }
            if may_be_inside && !f.inner_limits_zero.is_empty() {
                let names = f.inner_limits_zero.join(", ");
                let fixes: Vec<String> = f
                    .inner_limits_zero
                    .iter()
                    .map(|l| format!("sysctl -w user.{l}=15000"))
                    .collect();
                causes.push(Cause {
                    cause: format!("{names} is 0, so those namespaces cannot be created"),
                    fix: fixes.join("\n"),
                });
            }
            if causes.is_empty() {
                causes.push(Cause {
                    cause: format!(
                        "a namespace limit in /proc/sys/user/ is used up ({})",
                        describe_errno(errno)
                    ),
                    fix: "raise the matching /proc/sys/user/max_*_namespaces sysctl, or end \
                          the processes holding leftover namespaces (`lsns`)"
                        .into(),
                });
            }
        }
        libc::EINVAL if !f.kernel_has_userns => causes.push(Cause {
            cause: "the kernel was built without user namespaces (CONFIG_USER_NS is off; \
                    /proc/self/ns/user is absent)"
                .into(),
            fix: "boot a kernel built with CONFIG_USER_NS=y".into(),
        }),
        libc::EINVAL => causes.push(Cause {
            cause: "the kernel rejected the request as invalid: the caller has several \
                    threads (user namespaces are only created for single-threaded callers) \
                    or the namespace flags do not combine"
                .into(),
            fix: "this is a moat bug if the spawner hit it; please report it with this output"
                .into(),
        }),
        libc::ENOMEM => causes.push(Cause {
            cause: "the kernel could not allocate the namespaces (memory is short, or the \
                    PID namespace the caller creates children in has lost its init)"
                .into(),
            fix: "retry; check memory pressure and the caller's PID namespace".into(),
        }),
        e if e < 0 => {
            let filter = match &f.container {
                Some(c) => container_seccomp(c, &f.seccomp),
                None => inherited_seccomp_userns(&f.seccomp),
            };
            causes.push(Cause {
                cause: format!(
                    "{} while creating a namespace, the mark of a seccomp filter whose \
                     action kills: {}",
                    describe_errno(e),
                    filter.cause
                ),
                fix: filter.fix,
            });
        }
        e => causes.push(Cause {
            cause: format!("an unexpected error, {}", describe_errno(e)),
            fix: "look for a denial in `journalctl -k`, `dmesg` or the audit log".into(),
        }),
    }
    causes
}

fn join_causes(causes: &[Cause]) -> (String, String) {
    let cause = causes
        .iter()
        .map(|c| c.cause.as_str())
        .collect::<Vec<_>>()
        .join("; also, ");
    let fix = causes
        .iter()
        .map(|c| c.fix.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    (cause, fix)
}

pub(crate) fn userns_finding(host: &dyn Host, f: &UsernsFacts) -> Finding {
    const NAME: &str = "user_namespaces";
    let who = caller(f.euid);
    let outcome = host
        .try_userns()
        .map_err(|e| (Stage::Create, e))
        .and_then(|()| host.try_userns_inner().map_err(|e| (Stage::Inside, e)));
    match outcome {
        Ok(()) => {
            let limit = f
                .max
                .map(|m| format!(" (user.max_user_namespaces = {m})"))
                .unwrap_or_default();
            Finding::ok(
                NAME,
                format!(
                    "{who} can create a user namespace and the {INNER_NAMESPACES} \
                     namespaces inside it{limit}"
                ),
            )
        }
        Err((stage, errno)) => {
            let (cause, fix) = join_causes(&diagnose_userns(f, errno, stage));
            let seen = match stage {
                Stage::Create => format!(
                    "{who} cannot create a user namespace: unshare(CLONE_NEWUSER) failed with {}",
                    describe_errno(errno)
                ),
                _ => format!(
                    "{who} can create a user namespace but not the {INNER_NAMESPACES} \
                     namespaces inside it: unshare failed with {}",
                    describe_errno(errno)
                ),
            };
            Finding::gap(NAME, State::Missing, format!("{seen}. Cause: {cause}"), fix)
        }
    }
}

/// For root: whether ordinary users could use moat too. Read from the sysctls only;
/// actually trying would mean changing this process's ids.
pub(crate) fn unprivileged_userns_finding(f: &UsernsFacts) -> Finding {
    const NAME: &str = "unprivileged_user_namespaces";
    let mut causes = Vec::new();
    if f.max == Some(0) {
        causes.push(max_userns_zero());
    }
    if f.debian == Some(0) {
        causes.push(debian_sysctl());
    }
    if f.apparmor == Some(1) {
        causes.push(apparmor_restriction(Stage::Spawn, &f.exe));
    }
    if causes.is_empty() {
        let caveat = match &f.container {
            Some(c) => format!("; inside this container ({c}) the runtime may still refuse them"),
            None => String::new(),
        };
        return Finding::ok(
            NAME,
            format!("no sysctl keeps unprivileged users from creating user namespaces{caveat}"),
        );
    }
    let (cause, fix) = join_causes(&causes);
    Finding::gap(
        NAME,
        State::Degraded,
        format!("users other than root cannot run moat: {cause}"),
        fix,
    )
}
