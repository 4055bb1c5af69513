//! `moat check`'s reasoning against fake hosts.

use super::finding::*;
use super::host::Host;
use super::host::*;
use super::*;
use crate::check::cgroups::cgroup_finding;
use crate::check::userns::explain_userns_failure_with;
use crate::watch::cgroup::fs::Fs;
use crate::watch::cgroup::mountinfo::{cgroup_dir as cg_dir, parse_mountinfo, Mount};
use crate::watch::cgroup::Layout;
use caps::Capability;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Arc;

/// The directory of cgroup `path` under `mount`, as a string.
fn cgroup_dir(mount: &Mount, path: &str) -> Option<String> {
    cg_dir(Path::new("/"), mount, path).map(|d| d.display().to_string())
}

/// The fake host's files as the cgroup code reads them.
#[derive(Debug)]
struct MemFs {
    files: HashMap<String, String>,
    dirs: HashSet<String>,
    writable: HashSet<String>,
    euid: u32,
}

impl Fs for MemFs {
    fn mkdir(&self, _: &Path) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EROFS))
    }
    fn rmdir(&self, _: &Path) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EROFS))
    }
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        if self.writable.contains(&path.display().to_string()) {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        }
    }
    fn read(&self, path: &Path) -> Option<String> {
        self.files.get(&path.display().to_string()).cloned()
    }
    fn exists(&self, path: &Path) -> bool {
        let p = path.display().to_string();
        self.files.contains_key(&p) || self.dirs.contains(&p)
    }
    fn uid(&self) -> u32 {
        self.euid
    }
}

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
    fn cgroup_layout(&self) -> Layout {
        let fs = MemFs {
            files: self.files.clone(),
            dirs: self.dirs.clone(),
            writable: self.writable.clone(),
            euid: self.euid,
        };
        Layout::detect_with(
            Arc::new(fs),
            &self.read(SELF_MOUNTINFO).unwrap_or_default(),
            &self.read(SELF_CGROUP).unwrap_or_default(),
            Path::new("/"),
        )
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
        f.detail
            .contains("cgroup v1 memory at /sys/fs/cgroup/memory/process_api/ebf6 is not writable"),
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
        nix::unistd::geteuid().is_root()
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

/// `moat check` and `moat run` read one model: on the same fake cgroup tree, what the
/// finding says each resource would use is what a run's cgroup then gets, in the same
/// directory.
#[test]
fn check_reports_what_a_run_would_use() {
    use crate::watch::cgroup::fake::{
        full_request, hybrid_tree, v2_tree, HYBRID_SELF, V2_MOUNTINFO, V2_SELF,
    };
    use crate::watch::cgroup::{Mechanism, RunCgroup};
    let v2 = v2_tree("");
    let hybrid = hybrid_tree(true);
    let hybrid_v1_only = hybrid_tree(false);
    let cases = [
        (
            "v2 delegated scope",
            &v2.0,
            v2.1,
            V2_MOUNTINFO.to_string(),
            V2_SELF,
        ),
        ("hybrid", &hybrid.0, hybrid.1, hybrid.2, HYBRID_SELF),
        (
            "v1 only",
            &hybrid_v1_only.0,
            hybrid_v1_only.1,
            hybrid_v1_only.2,
            HYBRID_SELF,
        ),
    ];
    for (name, tree, fake, mountinfo, self_cgroup) in cases {
        let layout = Layout::detect_with(Arc::new(fake), &mountinfo, self_cgroup, &tree.root);
        let finding = cgroup_finding(&layout, 0);
        let cg = RunCgroup::create(&layout, &full_request()).unwrap();
        let got = cg.mechanisms();
        let dirs = cg.dirs();
        for (resource, mech, v1_dir) in [
            ("memory", got.memory, cg.memory_v1.as_deref()),
            ("pids", got.pids, cg.pids_v1.as_deref()),
            ("cpu", got.cpu, cg.cpuacct_v1.as_deref()),
        ] {
            let said = match mech {
                Mechanism::CgroupV2 => {
                    let dir = cg.v2_dir().unwrap();
                    format!("{resource} via v2 {}", dir.parent().unwrap().display())
                }
                Mechanism::CgroupV1 => {
                    let dir = v1_dir.unwrap();
                    format!("{resource} via v1 {}", dir.parent().unwrap().display())
                }
                Mechanism::None => format!("{resource} unavailable"),
            };
            assert!(
                finding.detail.contains(&said),
                "{name}: the run gives {resource} {mech:?} ({dirs:?}) but check says: {}",
                finding.detail
            );
        }
        let all_there = got.memory != Mechanism::None && got.pids != Mechanism::None;
        assert_eq!(
            finding.state == State::Ok,
            all_there,
            "{name}: {}",
            finding.detail
        );
    }
}
