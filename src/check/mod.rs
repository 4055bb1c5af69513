//! `moat check`: what this host lets moat do and, for every gap, the cause and the fix.
//!
//! All host facts come through [`Host`], so the reasoning that turns facts into
//! findings runs against a fake host in tests, without privileges. [`LiveHost`] is the
//! real machine. Its probes with side effects (user namespaces, ptrace) run in
//! short-lived forked children so the calling process keeps its namespaces and has
//! no tracee left behind.

use crate::watch::cgroup::mountinfo::{parse_mountinfo, Mount};
use std::fmt::Write as _;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{faccessat, fork, geteuid, AccessFlags, ForkResult, Pid};
use serde::Serialize;

const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
const DEBIAN_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const APPARMOR_RESTRICT_USERNS: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
const YAMA_PTRACE_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";
const SECCOMP_ACTIONS: &str = "/proc/sys/kernel/seccomp/actions_avail";
const LSM_LIST: &str = "/sys/kernel/security/lsm";
const SELF_STATUS: &str = "/proc/self/status";
const SELF_CGROUP: &str = "/proc/self/cgroup";
const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";
const SELF_USERNS: &str = "/proc/self/ns/user";
const APPARMOR_PROFILE: &str = "/etc/apparmor.d/moat";

/// The namespaces moat creates inside its user namespace.
const INNER_NAMESPACES: &str = "mount, PID, IPC, UTS and network";

/// Other per-namespace-type limits that, at 0, make creating that namespace fail with
/// ENOSPC just like `user.max_user_namespaces` does for user namespaces.
const INNER_NAMESPACE_LIMITS: [&str; 5] = [
    "max_mnt_namespaces",
    "max_pid_namespaces",
    "max_ipc_namespaces",
    "max_uts_namespaces",
    "max_net_namespaces",
];

/// `LANDLOCK_CREATE_RULESET_VERSION` from `<linux/landlock.h>`; libc does not export it.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Finding names that moat cannot run without.
const ESSENTIAL: [&str; 3] = ["user_namespaces", "seccomp", "ptrace"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Missing,
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
pub struct Finding {
    /// Stable identifier, e.g. `user_namespaces`.
    pub name: &'static str,
    pub state: State,
    /// What was seen, and for a gap, its cause.
    pub detail: String,
    /// What to do about it; `None` when the finding is Ok. May span several lines.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(name: &'static str, detail: String) -> Self {
        Finding {
            name,
            state: State::Ok,
            detail,
            fix: None,
        }
    }

    fn gap(name: &'static str, state: State, detail: String, fix: String) -> Self {
        Finding {
            name,
            state,
            detail,
            fix: Some(fix),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
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

/// System calls whose presence is probed by calling them with arguments they must
/// reject, so that nothing happens whether or not they exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syscall {
    Clone3,
    MountSetattr,
    CloseRange,
}

impl Syscall {
    const ALL: [Syscall; 3] = [Syscall::Clone3, Syscall::MountSetattr, Syscall::CloseRange];

    fn name(self) -> &'static str {
        match self {
            Syscall::Clone3 => "clone3",
            Syscall::MountSetattr => "mount_setattr",
            Syscall::CloseRange => "close_range",
        }
    }

    fn since(self) -> &'static str {
        match self {
            Syscall::Clone3 => "5.3",
            Syscall::MountSetattr => "5.12",
            Syscall::CloseRange => "5.9",
        }
    }

    fn without(self) -> &'static str {
        match self {
            Syscall::Clone3 => {
                "children are created with clone(2), which cannot start a child inside \
                 its cgroup (CLONE_INTO_CGROUP), so it is moved there after birth"
            }
            Syscall::MountSetattr => {
                "read-only and nosuid bind mounts are remounted one mount at a time \
                 instead of in one recursive step"
            }
            Syscall::CloseRange => {
                "inherited descriptors are closed one by one from a listing of /proc/self/fd"
            }
        }
    }
}

/// The facts `moat check` reasons from. [`LiveHost`] reads the real machine; tests
/// supply a fake.
pub trait Host {
    /// Contents of a file, or `None` when it is absent or unreadable.
    fn read(&self, path: &str) -> Option<String>;
    fn exists(&self, path: &str) -> bool;
    /// Whether the caller's effective ids may write `path`; for a directory, create
    /// entries in it.
    fn writable(&self, path: &str) -> bool;
    fn euid(&self) -> u32;
    /// Whether `cap` is in the caller's effective capability set.
    fn has_cap(&self, cap: Capability) -> bool;
    /// Create a user namespace in a short-lived child. `Err` holds the errno, or minus
    /// the signal number when the child was killed (a seccomp filter that kills).
    fn try_userns(&self) -> Result<(), i32>;
    /// In a short-lived child, create a user namespace and then, inside it, the mount,
    /// PID, IPC, UTS and network namespaces. Same error convention as `try_userns`.
    fn try_userns_inner(&self) -> Result<(), i32>;
    /// Attach with PTRACE_SEIZE to a short-lived child.
    fn try_ptrace(&self) -> Result<(), i32>;
    /// The seccomp actions the kernel offers (`/proc/sys/kernel/seccomp/actions_avail`).
    fn seccomp_actions(&self) -> Option<String>;
    /// Landlock ABI version, or the errno of `landlock_create_ruleset`.
    fn landlock_abi(&self) -> Result<u32, i32>;
    /// Open and close a pidfd for this process.
    fn try_pidfd(&self) -> Result<(), i32>;
    /// The errno `call` fails with when given arguments it must reject: ENOSYS means
    /// the kernel lacks it; 0 means the call did not fail.
    fn syscall_errno(&self, call: Syscall) -> i32;
    /// Kernel name, release, version and machine, as uname(2) reports them.
    fn kernel(&self) -> Option<String>;
    /// Path of the running moat binary, for fixes that must name it.
    fn exe(&self) -> Option<String>;
}

/// Probe the real host.
pub fn probe() -> Report {
    probe_with(&LiveHost)
}

/// Probe through `host`.
pub fn probe_with(host: &dyn Host) -> Report {
    let facts = UsernsFacts::gather(host);
    let mut findings = vec![kernel_finding(host), userns_finding(host, &facts)];
    if host.euid() == 0 {
        findings.push(unprivileged_userns_finding(&facts));
    }
    findings.push(seccomp_finding(host));
    findings.push(ptrace_finding(host));
    findings.push(cgroup_finding(host));
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

/// Shared with the spawner: turn a failure to create a user namespace (the errno from
/// clone or unshare with CLONE_NEWUSER, possibly together with other namespace flags)
/// into a message giving the cause and the fix, read from the same host facts as
/// `moat check`.
pub fn explain_userns_failure(errno: i32) -> String {
    explain_userns_failure_with(&LiveHost, errno)
}

/// [`explain_userns_failure`] against any [`Host`].
pub fn explain_userns_failure_with(host: &dyn Host, errno: i32) -> String {
    let facts = UsernsFacts::gather(host);
    let mut out = format!(
        "creating the sandbox's namespaces failed with {} as {}",
        errno_name(errno),
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

// ---------------------------------------------------------------------------------
// Shared helpers

fn errno_name(errno: i32) -> String {
    if errno < 0 {
        return match Signal::try_from(-errno) {
            Ok(sig) => format!("the probe child killed by {sig}"),
            Err(_) => format!("the probe child killed by signal {}", -errno),
        };
    }
    let e = Errno::from_raw(errno);
    format!("{e:?} ({})", e.desc())
}

fn caller(euid: u32) -> String {
    if euid == 0 {
        "root".to_string()
    } else {
        format!("uid {euid}")
    }
}

/// A sysctl or other single-number file.
fn number(host: &dyn Host, path: &str) -> Option<u64> {
    host.read(path)?.trim().parse().ok()
}

/// A short name for the container runtime this process seems to run under, with the
/// evidence, or `None` when nothing suggests one.
fn container_hint(host: &dyn Host) -> Option<String> {
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

#[derive(Debug, Clone, Copy, Default)]
struct SeccompStatus {
    /// The `Seccomp:` line: 0 none, 1 strict, 2 filter. `None` without CONFIG_SECCOMP.
    mode: Option<u32>,
    filters: Option<u32>,
}

impl SeccompStatus {
    fn of(host: &dyn Host) -> Self {
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

    fn filtered(&self) -> bool {
        self.mode == Some(2)
    }

    fn describe(&self) -> String {
        match self.filters {
            Some(n) => format!("{n} seccomp filter(s)"),
            None => "a seccomp filter".into(),
        }
    }
}

// ---------------------------------------------------------------------------------
// User namespaces

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

struct Cause {
    cause: String,
    fix: String,
}

struct UsernsFacts {
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
    fn gather(host: &dyn Host) -> Self {
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
fn inherited_seccomp(seccomp: &SeccompStatus, refused: &str, policy_fix: &str) -> Cause {
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
            errno_name(errno)
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
                        errno_name(errno)
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
                    errno_name(e),
                    filter.cause
                ),
                fix: filter.fix,
            });
        }
        e => causes.push(Cause {
            cause: format!("an unexpected error, {}", errno_name(e)),
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

fn userns_finding(host: &dyn Host, f: &UsernsFacts) -> Finding {
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
                    errno_name(errno)
                ),
                _ => format!(
                    "{who} can create a user namespace but not the {INNER_NAMESPACES} \
                     namespaces inside it: unshare failed with {}",
                    errno_name(errno)
                ),
            };
            Finding::gap(NAME, State::Missing, format!("{seen}. Cause: {cause}"), fix)
        }
    }
}

/// For root: whether ordinary users could use moat too. Read from the sysctls only;
/// actually trying would mean changing this process's ids.
fn unprivileged_userns_finding(f: &UsernsFacts) -> Finding {
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

// ---------------------------------------------------------------------------------
// seccomp

fn seccomp_finding(host: &dyn Host) -> Finding {
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

// ---------------------------------------------------------------------------------
// ptrace

fn ptrace_finding(host: &dyn Host) -> Finding {
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
                    errno_name(errno)
                ),
                fix,
            )
        }
    }
}

// ---------------------------------------------------------------------------------
// cgroups

struct CgroupEntry {
    /// The unified (v2) hierarchy: id 0 with an empty controller list.
    unified: bool,
    controllers: Vec<String>,
    path: String,
}

/// /proc/self/cgroup, parsed by the cgroup module (one parser for both).
fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    crate::watch::cgroup::mountinfo::parse_self_cgroup(text)
        .into_iter()
        .map(|(controllers, path)| {
            let controllers: Vec<String> =
                controllers.into_iter().filter(|c| !c.is_empty()).collect();
            CgroupEntry {
                unified: controllers.is_empty(),
                controllers,
                path,
            }
        })
        .collect()
}

/// The directory of cgroup `path` under `mount` (the cgroup module's rule), or `None`
/// when the mount shows only a part of the hierarchy that does not contain it.
fn cgroup_dir(mount: &Mount, path: &str) -> Option<String> {
    crate::watch::cgroup::mountinfo::cgroup_dir(Path::new("/"), mount, path).map(|d| d.display().to_string())
}

fn words(text: Option<String>) -> Vec<String> {
    text.unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// This process's place in the unified hierarchy.
struct V2Here {
    dir: String,
    controllers: Vec<String>,
    subtree: Vec<String>,
    /// The caller may create child cgroups, move processes and enable controllers here.
    delegated: bool,
    kill: bool,
}

struct V2 {
    mount_point: String,
    root_controllers: Vec<String>,
    path: String,
    here: Option<V2Here>,
}

fn probe_v2(host: &dyn Host, mounts: &[Mount], cgroups: &[CgroupEntry]) -> Option<V2> {
    let path = cgroups
        .iter()
        .find(|c| c.unified)
        .map_or("/".to_string(), |c| c.path.clone());
    let mut candidates: Vec<&Mount> = mounts.iter().filter(|m| m.fstype == "cgroup2").collect();
    // Pure v2 mounts at /sys/fs/cgroup, hybrid at /sys/fs/cgroup/unified; anything
    // else is usually a container's bind mount of the same hierarchy.
    candidates.sort_by_key(|m| !m.point.starts_with("/sys/fs/cgroup"));
    let first = candidates.first()?;
    let found = candidates.iter().find_map(|m| {
        cgroup_dir(m, &path)
            .filter(|d| host.exists(d))
            .map(|d| (*m, d))
    });
    let (mount, here) = match found {
        Some((m, dir)) => {
            let here = V2Here {
                controllers: words(host.read(&format!("{dir}/cgroup.controllers"))),
                subtree: words(host.read(&format!("{dir}/cgroup.subtree_control"))),
                delegated: host.writable(&dir)
                    && host.writable(&format!("{dir}/cgroup.procs"))
                    && host.writable(&format!("{dir}/cgroup.subtree_control")),
                kill: host.exists(&format!("{dir}/cgroup.kill")),
                dir,
            };
            (m, Some(here))
        }
        None => (*first, None),
    };
    Some(V2 {
        mount_point: mount.point.display().to_string(),
        root_controllers: words(
            host.read(&format!("{}/cgroup.controllers", mount.point.display())),
        ),
        path,
        here,
    })
}

struct V1 {
    dir: String,
    writable: bool,
}

fn probe_v1(host: &dyn Host, mounts: &[Mount], cgroups: &[CgroupEntry], ctrl: &str) -> Option<V1> {
    let path = cgroups
        .iter()
        .find(|c| !c.unified && c.controllers.iter().any(|c| c == ctrl))
        .map_or("/", |c| c.path.as_str());
    let dir = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == ctrl))
        .find_map(|m| cgroup_dir(m, path).filter(|d| host.exists(d)))?;
    let writable = host.writable(&dir)
        && (host.writable(&format!("{dir}/cgroup.procs"))
            || host.writable(&format!("{dir}/tasks")));
    Some(V1 { dir, writable })
}

fn cgroup_finding(host: &dyn Host) -> Finding {
    const NAME: &str = "cgroups";
    const NEEDED: [&str; 2] = ["memory", "pids"];
    let euid = host.euid();
    let who = caller(euid);
    let mounts = parse_mountinfo(&host.read(SELF_MOUNTINFO).unwrap_or_default());
    let cgroups = parse_proc_cgroup(&host.read(SELF_CGROUP).unwrap_or_default());
    let v2 = probe_v2(host, &mounts, &cgroups);
    let v1 = |ctrl: &str| probe_v1(host, &mounts, &cgroups, ctrl);

    // Where each controller can be used by this caller, if anywhere.
    let source = |ctrl: &str| -> Option<String> {
        if let Some(here) = v2.as_ref().and_then(|v| v.here.as_ref()) {
            if here.delegated && here.controllers.iter().any(|c| c == ctrl) {
                return Some(format!("v2 {}", here.dir));
            }
        }
        v1(ctrl)
            .filter(|v| v.writable)
            .map(|v| format!("v1 {}", v.dir))
    };

    let mut seen = Vec::new();
    for ctrl in ["memory", "pids", "cpu"] {
        seen.push(match source(ctrl) {
            Some(s) => format!("{ctrl} via {s}"),
            None => format!("{ctrl} unavailable"),
        });
    }
    match &v2 {
        None => seen.push("no cgroup v2 mount".into()),
        Some(v) => match &v.here {
            None => seen.push(format!(
                "cgroup v2 at {} does not show this process's cgroup {}",
                v.mount_point, v.path
            )),
            Some(h) => {
                let place = if h.dir == v.mount_point {
                    v.mount_point.clone()
                } else {
                    format!("{}: {}", v.mount_point, h.dir)
                };
                let access = if h.delegated {
                    "writable"
                } else {
                    "not writable"
                };
                let kill = if h.kill {
                    "present"
                } else {
                    "absent (Linux 5.14+)"
                };
                seen.push(format!(
                    "cgroup v2 at {place} offers [{}], enables [{}] for children, is \
                     {access} by {who}, cgroup.kill {kill}",
                    h.controllers.join(" "),
                    h.subtree.join(" "),
                ));
            }
        },
    }
    for ctrl in NEEDED {
        if let Some(v) = v1(ctrl) {
            if !v.writable {
                seen.push(format!(
                    "cgroup v1 {ctrl} at {} is not writable by {who}",
                    v.dir
                ));
            }
        }
    }

    let missing: Vec<&str> = NEEDED.into_iter().filter(|c| source(c).is_none()).collect();
    if missing.is_empty() {
        return Finding::ok(NAME, seen.join("; "));
    }

    let mut fixes = Vec::new();
    let plus = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    match &v2 {
        Some(v)
            if missing
                .iter()
                .all(|c| v.root_controllers.iter().any(|r| r == c)) =>
        {
            match &v.here {
                Some(_) if euid != 0 => {
                    fixes.push(
                        "run moat in a cgroup delegated to you: \
                         systemd-run --user --scope -p Delegate=yes moat ..."
                            .to_string(),
                    );
                }
                Some(h) if !h.delegated => fixes.push(format!(
                    "{} is read-only for root, as container runtimes mount it: give the \
                     container its own writable cgroup (docker run --cgroupns=private, \
                     with a cgroup v2 host)",
                    h.dir
                )),
                Some(h) => {
                    // Each cgroup passes only the controllers its parent enables, so
                    // they must be switched on at every level from the root down.
                    let mut dirs = vec![v.mount_point.trim_end_matches('/').to_string()];
                    let rel = h.dir.strip_prefix(dirs[0].as_str()).unwrap_or("");
                    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
                    for part in parts.iter().take(parts.len().saturating_sub(1)) {
                        let next = format!("{}/{part}", dirs[dirs.len() - 1]);
                        dirs.push(next);
                    }
                    let steps: Vec<String> = dirs
                        .iter()
                        .filter(|d| !d.is_empty())
                        .map(|d| format!("echo '{plus}' > {d}/cgroup.subtree_control"))
                        .collect();
                    fixes.push(format!(
                        "enable the controllers from the root down to {}:\n{}\n\
                         (below the root, a cgroup must hold no processes of its own to \
                         enable controllers for its children)",
                        h.dir,
                        steps.join("\n")
                    ));
                }
                None => fixes.push(format!(
                    "this process's cgroup {} is outside the visible hierarchy: run it \
                     with its own cgroup namespace (docker run --cgroupns=private)",
                    v.path
                )),
            }
        }
        Some(_) => {
            if missing.iter().any(|c| v1(c).is_some()) {
                fixes.push(
                    "the controllers are attached to cgroup v1: boot with \
                     systemd.unified_cgroup_hierarchy=1 (or cgroup_no_v1=all) to move them \
                     to cgroup v2"
                        .to_string(),
                );
            } else {
                fixes.push(format!(
                    "the kernel offers no {} controller: boot a kernel built with \
                     CONFIG_MEMCG and CONFIG_CGROUP_PIDS",
                    missing.join("/")
                ));
            }
        }
        None => fixes.push(
            "mount cgroup v2: mount -t cgroup2 none /sys/fs/cgroup \
             (or boot with systemd.unified_cgroup_hierarchy=1)"
                .to_string(),
        ),
    }
    // Each v1 group this caller cannot write, and whether it is its hierarchy's root.
    let locked: Vec<(V1, bool)> = missing
        .iter()
        .filter_map(|c| {
            let v = v1(c)?;
            let at_top = mounts.iter().any(|m| {
                m.fstype == "cgroup"
                    && m.super_options.iter().any(|o| o == c)
                    && m.point == Path::new(&v.dir)
            });
            Some((v, at_top))
        })
        .collect();
    if !locked.is_empty() {
        let dirs: Vec<&str> = locked.iter().map(|(v, _)| v.dir.as_str()).collect();
        if euid == 0 {
            fixes.push(format!(
                "the cgroup v1 groups {} are read-only, as container runtimes mount them: \
                 run the container with a writable cgroup mount",
                dirs.join(", ")
            ));
        } else {
            fixes.push(
                "cgroup v1 offers no safe delegation: run moat as root, or have root hand \
                 you a group and start moat inside it:"
                    .into(),
            );
            for (v, at_top) in &locked {
                if *at_top {
                    // Handing over a hierarchy's root would give away the whole
                    // machine's limits; a child group confines the grant to this user.
                    let d = format!("{}/moat-{euid}", v.dir);
                    fixes.push(format!("mkdir {d}"));
                    fixes.push(format!("chown {euid} {d} {d}/cgroup.procs {d}/tasks"));
                    fixes.push(format!(
                        "echo $$ > {d}/cgroup.procs   (as you, in the shell that runs moat)"
                    ));
                } else {
                    let d = &v.dir;
                    fixes.push(format!("chown {euid} {d} {d}/cgroup.procs {d}/tasks"));
                }
            }
        }
    }
    Finding::gap(
        NAME,
        State::Degraded,
        format!(
            "{}; without {} limits moat falls back to rlimits and its own accounting",
            seen.join("; "),
            missing.join(" and ")
        ),
        fixes.join("\n"),
    )
}

// ---------------------------------------------------------------------------------
// Landlock, pidfd, newer system calls, kernel

fn landlock_finding(host: &dyn Host) -> Finding {
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
            format!("landlock_create_ruleset failed with {}", errno_name(errno)),
            "look for a seccomp filter or LSM policy refusing landlock_create_ruleset".into(),
        ),
    }
}

fn pidfd_finding(host: &dyn Host) -> Finding {
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
                errno_name(errno)
            ),
            "look for a seccomp filter refusing pidfd_open, or a descriptor limit reached".into(),
        ),
    }
}

fn syscall_finding(call: Syscall, errno: i32, container: Option<&str>) -> Finding {
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
                errno_name(errno),
                call.without()
            ),
            format!("allow {name} in the seccomp policy of whatever runs moat"),
        ),
        _ => Finding::ok(name, format!("{name} is available")),
    }
}

fn kernel_finding(host: &dyn Host) -> Finding {
    Finding::ok(
        "kernel",
        host.kernel().unwrap_or_else(|| "uname failed".into()),
    )
}

// ---------------------------------------------------------------------------------
// The real host

/// The machine this process runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveHost;

/// Run `body` in a forked child and report how it ended: `Ok` for exit status 0, the
/// status as an errno otherwise, minus the signal number if a signal killed it.
///
/// `body` is a plain function so it captures nothing; it must make only
/// async-signal-safe calls, because this process may have other threads whose locks
/// the child inherits held.
fn in_child(body: fn() -> i32) -> Result<(), i32> {
    // SAFETY: the child runs only `body`, which by contract makes raw system calls and
    // nothing that allocates or locks, then `_exit`s.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let code = body();
            // SAFETY: `_exit` ends the child without running the parent's atexit
            // handlers or flushing its stdio buffers, which the child must not touch.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => reap(child),
        Err(e) => Err(e as i32),
    }
}

fn reap(child: Pid) -> Result<(), i32> {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => return Err(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Err(-(sig as i32)),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e as i32),
        }
    }
}

fn unshare_errno(flags: CloneFlags) -> i32 {
    match nix::sched::unshare(flags) {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

fn child_new_userns() -> i32 {
    unshare_errno(CloneFlags::CLONE_NEWUSER)
}

fn child_new_userns_and_inner() -> i32 {
    match unshare_errno(CloneFlags::CLONE_NEWUSER) {
        0 => unshare_errno(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWNET,
        ),
        e => e,
    }
}

fn syscall_result(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret < 0 {
        Err(Errno::last_raw())
    } else {
        Ok(ret)
    }
}

impl Host for LiveHost {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }

    fn writable(&self, path: &str) -> bool {
        // AT_EACCESS: judge by the effective ids, which are the ones moat acts with.
        faccessat(None, path, AccessFlags::W_OK, AtFlags::AT_EACCESS).is_ok()
    }

    fn euid(&self) -> u32 {
        geteuid().as_raw()
    }

    fn has_cap(&self, cap: Capability) -> bool {
        caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
    }

    fn try_userns(&self) -> Result<(), i32> {
        in_child(child_new_userns)
    }

    fn try_userns_inner(&self) -> Result<(), i32> {
        in_child(child_new_userns_and_inner)
    }

    fn try_ptrace(&self) -> Result<(), i32> {
        // SAFETY: the child makes only the prctl and pause system calls and never
        // returns; see `in_child` for why that matters.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                // Should this process die before killing the child, the child goes too.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                loop {
                    nix::unistd::pause();
                }
            }
            Ok(ForkResult::Parent { child }) => child,
            Err(e) => return Err(e as i32),
        };
        let seized = nix::sys::ptrace::seize(child, nix::sys::ptrace::Options::PTRACE_O_EXITKILL)
            .map_err(|e| e as i32);
        let _ = kill(child, Signal::SIGKILL);
        let _ = reap(child);
        seized
    }

    fn seccomp_actions(&self) -> Option<String> {
        self.read(SECCOMP_ACTIONS)
    }

    fn landlock_abi(&self) -> Result<u32, i32> {
        // SAFETY: with a null attribute pointer, size 0 and the VERSION flag the kernel
        // only returns the ABI version; it dereferences nothing and creates no file.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        syscall_result(ret).map(|v| v as u32)
    }

    fn try_pidfd(&self) -> Result<(), i32> {
        let pid = std::process::id() as libc::pid_t;
        // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
        let fd = syscall_result(ret)?;
        // SAFETY: `fd` was just returned by pidfd_open and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        Ok(())
    }

    fn syscall_errno(&self, call: Syscall) -> i32 {
        let ret = match call {
            // SAFETY: a size of 0 is below the smallest struct clone_args, so the kernel
            // fails with EINVAL before reading the null pointer or creating a process.
            Syscall::Clone3 => unsafe {
                libc::syscall(libc::SYS_clone3, std::ptr::null::<libc::c_void>(), 0usize)
            },
            // SAFETY: a size of 0 is below the smallest struct mount_attr, so the kernel
            // fails with EINVAL before looking at the descriptor, path or attributes.
            Syscall::MountSetattr => unsafe {
                libc::syscall(
                    libc::SYS_mount_setattr,
                    -1,
                    std::ptr::null::<libc::c_char>(),
                    0u32,
                    std::ptr::null::<libc::c_void>(),
                    0usize,
                )
            },
            // SAFETY: a range whose first descriptor is above its last is rejected with
            // EINVAL before any descriptor is closed.
            Syscall::CloseRange => unsafe {
                libc::syscall(libc::SYS_close_range, 1u32, 0u32, 0u32)
            },
        };
        syscall_result(ret).err().unwrap_or(0)
    }

    fn kernel(&self) -> Option<String> {
        // SAFETY: utsname is plain character arrays, for which all zeroes is valid.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname writes only into the struct it is handed.
        if unsafe { libc::uname(&mut uts) } != 0 {
            return None;
        }
        let field = |f: &[libc::c_char]| {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Some(format!(
            "{} {} {} {}",
            field(&uts.sysname),
            field(&uts.release),
            field(&uts.version),
            field(&uts.machine)
        ))
    }

    fn exe(&self) -> Option<String> {
        std::env::current_exe()
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// A host made of a file table, a set of writable paths and canned probe results.
    struct Fake {
        files: HashMap<String, String>,
        dirs: HashSet<String>,
        writable: HashSet<String>,
        euid: u32,
        caps: Vec<Capability>,
        userns: Result<(), i32>,
        userns_inner: Result<(), i32>,
        ptrace: Result<(), i32>,
        landlock: Result<u32, i32>,
        pidfd: Result<(), i32>,
        syscalls: HashMap<&'static str, i32>,
    }

    impl Fake {
        /// An unprivileged user on a capable host, with no cgroup hierarchy at all.
        fn new() -> Self {
            let mut f = Fake {
                files: HashMap::new(),
                dirs: HashSet::new(),
                writable: HashSet::new(),
                euid: 1000,
                caps: Vec::new(),
                userns: Ok(()),
                userns_inner: Ok(()),
                ptrace: Ok(()),
                landlock: Ok(4),
                pidfd: Ok(()),
                syscalls: HashMap::new(),
            };
            f.file(MAX_USER_NAMESPACES, "63000\n")
                .file(
                    SECCOMP_ACTIONS,
                    "kill_process kill_thread trap errno user_notif trace log allow\n",
                )
                .file(
                    SELF_STATUS,
                    "Name:\tmoat\nSeccomp:\t0\nSeccomp_filters:\t0\n",
                )
                .file(YAMA_PTRACE_SCOPE, "1\n")
                .file(SELF_CGROUP, "0::/\n")
                .file(SELF_MOUNTINFO, "22 1 0:21 / /proc rw - proc proc rw\n")
                .dir(SELF_USERNS);
            f
        }

        fn file(&mut self, path: &str, text: &str) -> &mut Self {
            self.files.insert(path.into(), text.into());
            self
        }

        fn dir(&mut self, path: &str) -> &mut Self {
            self.dirs.insert(path.into());
            self
        }

        fn rw(&mut self, path: &str) -> &mut Self {
            self.writable.insert(path.into());
            self
        }

        fn root(&mut self) -> &mut Self {
            self.euid = 0;
            self.caps = vec![Capability::CAP_SYS_ADMIN, Capability::CAP_SYS_PTRACE];
            self
        }

        fn finding(&self, name: &str) -> Finding {
            probe_with(self)
                .get(name)
                .unwrap_or_else(|| panic!("no finding {name}"))
                .clone()
        }
    }

    impl Host for Fake {
        fn read(&self, path: &str) -> Option<String> {
            self.files.get(path).cloned()
        }
        fn exists(&self, path: &str) -> bool {
            self.files.contains_key(path) || self.dirs.contains(path)
        }
        fn writable(&self, path: &str) -> bool {
            self.writable.contains(path)
        }
        fn euid(&self) -> u32 {
            self.euid
        }
        fn has_cap(&self, cap: Capability) -> bool {
            self.caps.contains(&cap)
        }
        fn try_userns(&self) -> Result<(), i32> {
            self.userns
        }
        fn try_userns_inner(&self) -> Result<(), i32> {
            self.userns.and(self.userns_inner)
        }
        fn try_ptrace(&self) -> Result<(), i32> {
            self.ptrace
        }
        fn seccomp_actions(&self) -> Option<String> {
            self.read(SECCOMP_ACTIONS)
        }
        fn landlock_abi(&self) -> Result<u32, i32> {
            self.landlock
        }
        fn try_pidfd(&self) -> Result<(), i32> {
            self.pidfd
        }
        fn syscall_errno(&self, call: Syscall) -> i32 {
            *self.syscalls.get(call.name()).unwrap_or(&libc::EINVAL)
        }
        fn kernel(&self) -> Option<String> {
            Some("Linux 6.8.0 #1 SMP x86_64".into())
        }
        fn exe(&self) -> Option<String> {
            Some("/opt/moat/bin/moat".into())
        }
    }

    fn fix(f: &Finding) -> &str {
        f.fix.as_deref().expect("a fix")
    }

    #[test]
    fn healthy_host_is_usable() {
        let report = probe_with(&Fake::new());
        assert!(report.usable(), "{}", report.render());
        for name in [
            "kernel",
            "user_namespaces",
            "seccomp",
            "ptrace",
            "landlock",
            "pidfd",
        ] {
            let f = report.get(name).unwrap();
            assert_eq!(f.state, State::Ok, "{name}: {}", f.detail);
            assert!(f.fix.is_none());
        }
        assert!(report.get("unprivileged_user_namespaces").is_none());
    }

    #[test]
    fn userns_blocked_by_debian_sysctl() {
        let mut host = Fake::new();
        host.file(DEBIAN_USERNS_CLONE, "0\n");
        host.userns = Err(libc::EPERM);
        let report = probe_with(&host);
        let f = report.get("user_namespaces").unwrap();
        assert_eq!(f.state, State::Missing);
        assert!(f.detail.contains("EPERM"), "{}", f.detail);
        assert!(
            f.detail.contains("unprivileged_userns_clone is 0"),
            "{}",
            f.detail
        );
        assert!(fix(f).contains("sysctl -w kernel.unprivileged_userns_clone=1"));
        assert!(!f.detail.contains("container"));
        assert!(!report.usable());
    }

    #[test]
    fn userns_blocked_by_max_user_namespaces_zero() {
        let mut host = Fake::new();
        host.file(MAX_USER_NAMESPACES, "0\n");
        host.userns = Err(libc::ENOSPC);
        let f = host.finding("user_namespaces");
        assert_eq!(f.state, State::Missing);
        assert!(
            f.detail.contains("max_user_namespaces is 0"),
            "{}",
            f.detail
        );
        assert_eq!(fix(&f).lines().count(), 1);
        assert!(fix(&f).contains("sysctl -w user.max_user_namespaces=15000"));
    }

    #[test]
    fn userns_count_exhausted() {
        let mut host = Fake::new();
        host.file(MAX_USER_NAMESPACES, "20000\n");
        host.userns = Err(libc::ENOSPC);
        let f = host.finding("user_namespaces");
        assert_eq!(f.state, State::Missing);
        assert!(f.detail.contains("ENOSPC"), "{}", f.detail);
        assert!(f.detail.contains("used up"), "{}", f.detail);
        assert!(
            fix(&f).contains("user.max_user_namespaces=40000"),
            "{}",
            fix(&f)
        );
        assert!(fix(&f).contains("lsns -t user"));
    }

    #[test]
    fn userns_blocked_by_apparmor_restriction() {
        let mut host = Fake::new();
        host.file(APPARMOR_RESTRICT_USERNS, "1\n");
        host.userns = Err(libc::EACCES);
        let f = host.finding("user_namespaces");
        assert_eq!(f.state, State::Missing);
        assert!(f
            .detail
            .contains("apparmor_restrict_unprivileged_userns is 1"));
        let fix = fix(&f);
        assert!(fix.contains(APPARMOR_PROFILE));
        assert!(fix.contains("profile moat /opt/moat/bin/moat flags=(unconfined) {"));
        assert!(fix.contains("    userns,"));
        assert!(fix.contains("apparmor_parser -r /etc/apparmor.d/moat"));
        assert!(fix.contains("sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"));
    }

    #[test]
    fn apparmor_strips_capabilities_inside_the_namespace() {
        // Ubuntu's default unprivileged_userns profile lets creation succeed and then
        // denies the capabilities that creating the other namespaces needs.
        let mut host = Fake::new();
        host.file(APPARMOR_RESTRICT_USERNS, "1\n");
        host.userns_inner = Err(libc::EPERM);
        let f = host.finding("user_namespaces");
        assert_eq!(f.state, State::Missing);
        assert!(
            f.detail.contains("can create a user namespace but not"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("strips every capability"), "{}", f.detail);
        assert!(fix(&f).contains("userns,"));
    }

    #[test]
    fn userns_blocked_by_container_seccomp() {
        let mut host = Fake::new();
        host.dir("/.dockerenv")
            .file(SELF_STATUS, "Seccomp:\t2\nSeccomp_filters:\t1\n");
        host.userns = Err(libc::EPERM);
        let f = host.finding("user_namespaces");
        assert_eq!(f.state, State::Missing);
        assert!(f.detail.contains("container (Docker"), "{}", f.detail);
        assert!(f.detail.contains("1 seccomp filter(s)"), "{}", f.detail);
        assert!(fix(&f).contains("--security-opt seccomp=unconfined"));
        assert!(fix(&f).contains("--privileged"));

        // A sysctl that explains the refusal takes precedence over the container guess.
        host.file(DEBIAN_USERNS_CLONE, "0\n");
        let f = host.finding("user_namespaces");
        assert!(!f.detail.contains("container"), "{}", f.detail);
        assert!(fix(&f).contains("unprivileged_userns_clone=1"));
    }

    #[test]
    fn container_detected_from_init_cgroup() {
        let mut host = Fake::new();
        host.file("/proc/1/cgroup", "0::/kubepods/burstable/pod1234/abcd\n")
            .file(SELF_STATUS, "Seccomp:\t2\nSeccomp_filters:\t1\n");
        host.userns = Err(libc::EPERM);
        let f = host.finding("user_namespaces");
        assert!(f.detail.contains("kubepods"), "{}", f.detail);
        assert!(fix(&f).contains("seccompProfile"));
    }

    #[test]
    fn container_without_seccomp_is_not_blamed_on_seccomp() {
        // This machine's case: /.dockerenv, yet no filter on the process.
        let mut host = Fake::new();
        host.dir("/.dockerenv")
            .file(SELF_STATUS, "Seccomp:\t0\nSeccomp_filters:\t0\n");
        host.userns = Err(libc::EPERM);
        let f = host.finding("user_namespaces");
        assert!(
            f.detail.contains("applies no seccomp filter"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("AppArmor or SELinux"), "{}", f.detail);
        assert!(fix(&f).contains("--privileged"));
        assert!(!fix(&f).contains("seccomp=unconfined"), "{}", fix(&f));
    }

    #[test]
    fn unexplained_eperm_points_at_lsm_and_chroot() {
        let mut host = Fake::new();
        host.userns = Err(libc::EPERM);
        let f = host.finding("user_namespaces");
        assert!(f.detail.contains("LSM"), "{}", f.detail);
        assert!(f.detail.contains("chroot"), "{}", f.detail);
    }

    #[test]
    fn root_is_exempt_from_unprivileged_switches_but_told_about_them() {
        let mut host = Fake::new();
        host.root().file(DEBIAN_USERNS_CLONE, "0\n");
        let report = probe_with(&host);
        assert_eq!(report.get("user_namespaces").unwrap().state, State::Ok);
        let unpriv = report.get("unprivileged_user_namespaces").unwrap();
        assert_eq!(unpriv.state, State::Degraded);
        assert!(unpriv.detail.contains("unprivileged_userns_clone is 0"));
        assert!(report.usable());

        // Root refused despite the sysctl is not blamed on the sysctl.
        host.userns = Err(libc::EPERM);
        let f = host.finding("user_namespaces");
        assert!(
            !f.detail.contains("unprivileged_userns_clone"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn explain_for_the_spawner() {
        let mut host = Fake::new();
        host.file(APPARMOR_RESTRICT_USERNS, "1\n");
        let text = explain_userns_failure_with(&host, libc::EPERM);
        assert!(
            text.starts_with("creating the sandbox's namespaces failed with EPERM"),
            "{text}"
        );
        assert!(text.contains("as uid 1000"));
        assert!(text.contains("\ncause: kernel.apparmor_restrict_unprivileged_userns is 1"));
        assert!(text.contains("\nfix: give moat an AppArmor profile"));

        let text = explain_userns_failure_with(&Fake::new(), libc::EINVAL);
        assert!(text.contains("single-threaded"), "{text}");
        let mut host = Fake::new();
        host.dirs.remove(SELF_USERNS);
        let text = explain_userns_failure_with(&host, libc::EINVAL);
        assert!(text.contains("CONFIG_USER_NS"), "{text}");
    }

    #[test]
    fn killed_probe_blames_seccomp() {
        let mut host = Fake::new();
        host.file(SELF_STATUS, "Seccomp:\t2\nSeccomp_filters:\t3\n");
        host.userns = Err(-libc::SIGSYS);
        let f = host.finding("user_namespaces");
        assert!(f.detail.contains("SIGSYS"), "{}", f.detail);
        assert!(f.detail.contains("3 seccomp filter(s)"), "{}", f.detail);
    }

    /// A pure cgroup v2 host with a systemd-delegated user cgroup.
    fn v2_host(delegated: bool) -> Fake {
        let path = "/user.slice/user-1000.slice/user@1000.service/app.slice/run.scope";
        let dir = format!("/sys/fs/cgroup{path}");
        let mut host = Fake::new();
        host.file(
            SELF_MOUNTINFO,
            "22 1 0:21 / /proc rw - proc proc rw\n\
             30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .file(SELF_CGROUP, &format!("0::{path}\n"))
        .file(
            "/sys/fs/cgroup/cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .file(&format!("{dir}/cgroup.controllers"), "cpu memory pids\n")
        .file(&format!("{dir}/cgroup.subtree_control"), "")
        .file(&format!("{dir}/cgroup.procs"), "")
        .file(&format!("{dir}/cgroup.kill"), "")
        .dir(&dir);
        if delegated {
            host.rw(&dir)
                .rw(&format!("{dir}/cgroup.procs"))
                .rw(&format!("{dir}/cgroup.subtree_control"));
        }
        host
    }

    #[test]
    fn cgroup_v2_delegated_with_controllers() {
        let f = v2_host(true).finding("cgroups");
        assert_eq!(f.state, State::Ok, "{}", f.detail);
        assert!(
            f.detail
                .contains("memory via v2 /sys/fs/cgroup/user.slice/"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("pids via v2"), "{}", f.detail);
        assert!(f.detail.contains("cpu via v2"), "{}", f.detail);
        assert!(f.detail.contains("cgroup.kill present"), "{}", f.detail);
        assert!(f.fix.is_none());
    }

    #[test]
    fn cgroup_v2_not_delegated_suggests_systemd_run() {
        let f = v2_host(false).finding("cgroups");
        assert_eq!(f.state, State::Degraded, "{}", f.detail);
        assert!(
            f.detail.contains("not writable by uid 1000"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("falls back to rlimits"), "{}", f.detail);
        assert!(fix(&f).contains("systemd-run --user --scope -p Delegate=yes moat"));
    }

    #[test]
    fn cgroup_v2_root_without_enabled_controllers() {
        let mut host = v2_host(true);
        host.root();
        let dir = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/run.scope";
        host.file(&format!("{dir}/cgroup.controllers"), "cpu\n");
        let f = host.finding("cgroups");
        assert_eq!(f.state, State::Degraded, "{}", f.detail);
        let fix = fix(&f);
        assert!(
            fix.contains("echo '+memory +pids' > /sys/fs/cgroup/cgroup.subtree_control"),
            "{fix}"
        );
        assert!(
            fix.contains(
                "echo '+memory +pids' > /sys/fs/cgroup/user.slice/user-1000.slice/\
                 user@1000.service/app.slice/cgroup.subtree_control"
            ),
            "{fix}"
        );
        assert!(!fix.contains("run.scope/cgroup.subtree_control"), "{fix}");
    }

    /// This machine's layout: hybrid, with memory and pids bound to cgroup v1 and only
    /// hugetlb left on the unified hierarchy.
    fn hybrid_host(v1_writable: bool) -> Fake {
        let mem = "/sys/fs/cgroup/memory/process_api/ebf6";
        let mut host = Fake::new();
        host.file(
            SELF_MOUNTINFO,
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
             39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
             40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        )
        .file(
            SELF_CGROUP,
            "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/ebf6\n1:cpu:/\n0::/\n",
        )
        .file("/sys/fs/cgroup/unified/cgroup.controllers", "hugetlb\n")
        .file("/sys/fs/cgroup/unified/cgroup.subtree_control", "")
        .dir("/sys/fs/cgroup/unified")
        .dir(mem)
        .dir("/sys/fs/cgroup/pids")
        .dir("/sys/fs/cgroup/cpu");
        if v1_writable {
            host.root();
            for d in [
                "/sys/fs/cgroup/unified",
                mem,
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/cpu",
            ] {
                host.rw(d).rw(&format!("{d}/cgroup.procs"));
            }
            host.rw("/sys/fs/cgroup/unified/cgroup.subtree_control");
        }
        host
    }

    #[test]
    fn cgroup_v1_memory_and_pids_writable() {
        let f = hybrid_host(true).finding("cgroups");
        assert_eq!(f.state, State::Ok, "{}", f.detail);
        assert!(
            f.detail
                .contains("memory via v1 /sys/fs/cgroup/memory/process_api/ebf6"),
            "{}",
            f.detail
        );
        assert!(
            f.detail.contains("pids via v1 /sys/fs/cgroup/pids"),
            "{}",
            f.detail
        );
        assert!(
            f.detail.contains("cgroup v2 at /sys/fs/cgroup/unified"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("offers [hugetlb]"), "{}", f.detail);
        assert!(f.detail.contains("cgroup.kill absent"), "{}", f.detail);
    }

    #[test]
    fn cgroup_nothing_usable() {
        let f = hybrid_host(false).finding("cgroups");
        assert_eq!(f.state, State::Degraded, "{}", f.detail);
        assert!(f.detail.contains("memory unavailable"), "{}", f.detail);
        assert!(
            f.detail.contains(
                "cgroup v1 memory at /sys/fs/cgroup/memory/process_api/ebf6 is not writable"
            ),
            "{}",
            f.detail
        );
        let text = fix(&f);
        assert!(
            text.contains("systemd.unified_cgroup_hierarchy=1"),
            "{text}"
        );
        // A hierarchy's root is never handed over; a group inside it is.
        assert!(
            text.contains("mkdir /sys/fs/cgroup/pids/moat-1000\n"),
            "{text}"
        );
        assert!(!text.contains("chown 1000 /sys/fs/cgroup/pids "), "{text}");
        assert!(
            text.contains("chown 1000 /sys/fs/cgroup/memory/process_api/ebf6 "),
            "{text}"
        );

        // No cgroup filesystem mounted at all.
        let f = Fake::new().finding("cgroups");
        assert_eq!(f.state, State::Degraded);
        assert!(f.detail.contains("no cgroup v2 mount"), "{}", f.detail);
        assert!(fix(&f).contains("mount -t cgroup2"));
        assert!(
            probe_with(&Fake::new()).usable(),
            "cgroups are not essential"
        );
    }

    #[test]
    fn mountinfo_escapes_and_bind_mounted_roots() {
        let mounts = parse_mountinfo(
            "50 40 0:30 /docker/abc /sys/fs/cgroup/my\\040dir ro,nosuid shared:5 - \
             cgroup2 cgroup2 rw\n",
        );
        assert_eq!(mounts.len(), 1);
        let m = &mounts[0];
        assert_eq!(m.point, Path::new("/sys/fs/cgroup/my dir"));
        assert_eq!(m.fstype, "cgroup2");
        assert_eq!(
            cgroup_dir(m, "/docker/abc").as_deref(),
            Some("/sys/fs/cgroup/my dir")
        );
        assert_eq!(
            cgroup_dir(m, "/docker/abc/x").as_deref(),
            Some("/sys/fs/cgroup/my dir/x")
        );
        assert_eq!(cgroup_dir(m, "/docker/abcd"), None);
        assert_eq!(cgroup_dir(m, "/"), None);
    }

    #[test]
    fn yama_scope_3_makes_moat_unusable() {
        let mut host = Fake::new();
        host.file(YAMA_PTRACE_SCOPE, "3\n");
        let report = probe_with(&host);
        let f = report.get("ptrace").unwrap();
        assert_eq!(f.state, State::Missing);
        assert!(f.detail.contains("ptrace_scope is 3"));
        assert!(fix(f).contains("reboot"));
        assert!(!report.usable());
        assert!(report
            .render()
            .contains("moat cannot run here: ptrace missing."));
    }

    #[test]
    fn yama_scope_2_needs_cap_sys_ptrace() {
        let mut host = Fake::new();
        host.file(YAMA_PTRACE_SCOPE, "2\n");
        let f = host.finding("ptrace");
        assert_eq!(f.state, State::Missing);
        assert!(fix(&f).contains("ptrace_scope=1"));
        host.root();
        assert_eq!(host.finding("ptrace").state, State::Ok);
    }

    #[test]
    fn ptrace_refused_in_container() {
        let mut host = Fake::new();
        host.dir("/run/.containerenv");
        host.ptrace = Err(libc::EPERM);
        let f = host.finding("ptrace");
        assert_eq!(f.state, State::Missing);
        assert!(f.detail.contains("Podman"), "{}", f.detail);
        assert!(fix(&f).contains("SYS_PTRACE"));
    }

    #[test]
    fn seccomp_actions_and_nesting() {
        let mut host = Fake::new();
        host.file(SELF_STATUS, "Seccomp:\t2\nSeccomp_filters:\t2\n");
        let f = host.finding("seccomp");
        assert_eq!(f.state, State::Ok);
        assert!(
            f.detail.contains("already runs under 2 seccomp filter(s)"),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("user_notif available"));

        host.file(SECCOMP_ACTIONS, "kill_thread trap errno allow\n");
        let report = probe_with(&host);
        let f = report.get("seccomp").unwrap();
        assert_eq!(f.state, State::Missing);
        assert!(f.detail.contains("kill_process, trace"), "{}", f.detail);
        assert!(!report.usable());

        host.files.remove(SECCOMP_ACTIONS);
        host.file(SELF_STATUS, "Name:\tmoat\n");
        let f = host.finding("seccomp");
        assert!(f.detail.contains("no seccomp support"), "{}", f.detail);
    }

    #[test]
    fn landlock_pidfd_and_syscalls_degrade() {
        let mut host = Fake::new();
        host.file(LSM_LIST, "lockdown,capability,yama,apparmor\n");
        host.landlock = Err(libc::EOPNOTSUPP);
        host.pidfd = Err(libc::ENOSYS);
        host.syscalls.insert("clone3", libc::ENOSYS);
        host.syscalls.insert("close_range", libc::EPERM);
        let report = probe_with(&host);
        let landlock = report.get("landlock").unwrap();
        assert_eq!(landlock.state, State::Degraded);
        assert!(fix(landlock).contains("lsm=landlock,lockdown,capability,yama,apparmor"));
        assert_eq!(report.get("pidfd").unwrap().state, State::Degraded);
        let clone3 = report.get("clone3").unwrap();
        assert_eq!(clone3.state, State::Degraded);
        assert!(clone3.detail.contains("Linux 5.3+"));
        assert_eq!(report.get("close_range").unwrap().state, State::Degraded);
        assert_eq!(report.get("mount_setattr").unwrap().state, State::Ok);
        assert!(report.usable());
    }

    #[test]
    fn render_layout() {
        let mut host = Fake::new();
        host.file(DEBIAN_USERNS_CLONE, "0\n");
        host.userns = Err(libc::EPERM);
        let text = probe_with(&host).render();
        // Names are padded to the longest, "user_namespaces", for a non-root caller.
        assert!(text.contains("ok   kernel           Linux 6.8.0"), "{text}");
        assert!(
            text.contains("FAIL user_namespaces  uid 1000 cannot"),
            "{text}"
        );
        assert!(
            text.contains("\n     fix: sysctl -w kernel.unprivileged_userns_clone=1"),
            "{text}"
        );
        assert!(
            text.ends_with("moat cannot run here: user_namespaces missing.\n"),
            "{text}"
        );

        let text = probe_with(&hybrid_host(false)).render();
        // Multi-line fixes continue under the first line.
        assert!(
            text.contains("\n          cgroup v1 offers no safe delegation"),
            "{text}"
        );
    }

    #[test]
    fn json_uses_snake_case_states() {
        let mut host = Fake::new();
        host.file(YAMA_PTRACE_SCOPE, "3\n");
        let json = serde_json::to_value(probe_with(&host)).unwrap();
        let findings = json["findings"].as_array().unwrap();
        let ptrace = findings.iter().find(|f| f["name"] == "ptrace").unwrap();
        assert_eq!(ptrace["state"], "missing");
        let kernel = findings.iter().find(|f| f["name"] == "kernel").unwrap();
        assert_eq!(kernel["state"], "ok");
        assert!(kernel["fix"].is_null());
    }

    #[test]
    fn this_machine_supports_user_namespaces() {
        let report = probe();
        let f = report.get("user_namespaces").unwrap();
        assert_eq!(f.state, State::Ok, "{}", report.render());
        assert!(report.get("kernel").unwrap().detail.starts_with("Linux "));
        // Root also gets the unprivileged view; others do not.
        assert_eq!(
            report.get("unprivileged_user_namespaces").is_some(),
            geteuid().is_root()
        );
        for name in [
            "seccomp",
            "ptrace",
            "cgroups",
            "landlock",
            "pidfd",
            "clone3",
            "mount_setattr",
            "close_range",
        ] {
            assert!(report.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn live_probes_leave_this_process_alone() {
        let before = std::fs::read_link("/proc/self/ns/user").unwrap();
        let host = LiveHost;
        assert_eq!(host.try_userns(), Ok(()));
        assert_eq!(host.syscall_errno(Syscall::CloseRange), libc::EINVAL);
        assert_eq!(host.syscall_errno(Syscall::Clone3), libc::EINVAL);
        assert_eq!(host.syscall_errno(Syscall::MountSetattr), libc::EINVAL);
        assert_eq!(host.try_pidfd(), Ok(()));
        assert_eq!(std::fs::read_link("/proc/self/ns/user").unwrap(), before);
    }
}
