//! The jail's namespaces, observed from inside and from outside: identity (inside ids,
//! outside ids, never root), PID namespace (tiny init is PID 1, the program PID 2),
//! UTS (hostname), network (only `lo`), IPC (private SysV objects), and how the way the
//! program ends is reported.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

/// A third caller identity, distinct from root, from 65534 and from the inside ids, so
/// that "outside = the caller's own ids" cannot be confused with "outside = 65534".
const OTHER_UID: u32 = 1234;
const OTHER_GID: u32 = 4321;

#[derive(Debug, Clone, Copy)]
enum Who {
    Caller(Caller),
    /// uid 1234 / gid 4321 through setpriv (only when the tests run as root).
    Other,
}

/// Every harness caller, plus the distinct rootless identity when we can become it.
fn everyone() -> Vec<Who> {
    let mut all: Vec<Who> = callers().into_iter().map(Who::Caller).collect();
    if is_root() {
        all.push(Who::Other);
    }
    all
}

fn who_command(who: Who) -> Command {
    match who {
        Who::Caller(c) => command(c),
        Who::Other => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={OTHER_UID}"))
                .arg(format!("--regid={OTHER_GID}"))
                .args(["--clear-groups", MOAT]);
            c
        }
    }
}

/// The ids the jail's processes must have outside: 65534 for a root caller (never 0),
/// the caller's own ids otherwise.
fn outside_ids_of(who: Who) -> (u32, u32) {
    match who {
        Who::Caller(c) => outside_ids(c),
        Who::Other => (OTHER_UID, OTHER_GID),
    }
}

/// `moat run --report F ARGS` as `who`.
fn run_as(who: Who, args: &[&str]) -> Run {
    moat_run_from(who_command(who), args, b"")
}

// ---------------------------------------------------------------- identity

#[test]
fn inside_the_program_is_uid_and_gid_1000() {
    let prog = fixture("ns_ids");
    for who in everyone() {
        let run = run_as(who, &["--", path_str(&prog)]);
        assert_run(
            &run,
            "ok",
            0,
            "uid=1000 gid=1000 euid=1000 egid=1000\n\
             resuid=1000,1000,1000 resgid=1000,1000,1000 groups=0\n",
        );
    }
}

/// The kernel's view of the id maps, read inside: inside 1000 is 65534 outside for a
/// root caller (never 0), and the caller's own ids for a rootless caller (the uid-1234
/// run tells the two rules apart).
#[test]
fn id_maps_send_inside_1000_to_nobody_for_root_and_to_the_caller_otherwise() {
    let prog = fixture("ns_cat");
    let profile = profile("ns_proc");
    for who in everyone() {
        let run = run_as(
            who,
            &[
                "--profile",
                &profile,
                "--",
                path_str(&prog),
                "/proc/self/uid_map",
                "/proc/self/gid_map",
            ],
        );
        let (uid, gid) = outside_ids_of(who);
        assert_ne!(uid, 0);
        assert_ne!(gid, 0);
        // The kernel pads the columns; compare the numbers.
        let normalized: String = run
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") + "\n")
            .collect();
        let expected = format!("1000 {uid} 1\n1000 {gid} 1\n");
        assert!(
            run.status() == "ok" && run.code == 0 && normalized == expected,
            "{who:?}: expected maps {expected:?}, got {normalized:?}\n{run:#?}"
        );
    }
}

fn status_field(pid: i32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

/// The processes whose parent is `pid` (scanning /proc, which works everywhere).
fn children_of(pid: i32) -> Vec<i32> {
    let mut kids = Vec::new();
    for n in host_pids() {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{n}/status")) else {
            continue;
        };
        let ppid = text
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<i32>().ok());
        if ppid == Some(pid) {
            kids.push(n);
        }
    }
    kids
}

/// Looked at from outside while it runs: the jail's init and the program hold only the
/// unprivileged outside ids (real, effective, saved and fs; no supplementary group),
/// never 0, and the program is PID 2 of its PID namespace.
#[test]
fn from_outside_the_running_jail_holds_no_root_identity() {
    let prog = fixture("ns_wait_stdin");
    for who in everyone() {
        let report = ReportFile::new();
        let mut cmd = report.run(who_command(who), &["--", path_str(&prog)]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run moat");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "{who:?}: the program did not start");

        let moat = child.id() as i32;
        let inits = children_of(moat);
        assert_eq!(inits.len(), 1, "{who:?}: moat's children: {inits:?}");
        let init = inits[0];
        let progs = children_of(init);
        assert_eq!(progs.len(), 1, "{who:?}: init's children: {progs:?}");
        let program = progs[0];

        let (uid, gid) = outside_ids_of(who);
        for (what, pid) in [("init", init), ("program", program)] {
            let ids = (
                status_field(pid, "Uid"),
                status_field(pid, "Gid"),
                status_field(pid, "Groups"),
            );
            assert_eq!(
                ids,
                (
                    format!("{uid}\t{uid}\t{uid}\t{uid}"),
                    format!("{gid}\t{gid}\t{gid}\t{gid}"),
                    String::new()
                ),
                "{who:?}: the jail's {what} (pid {pid}) has the wrong outside identity"
            );
        }
        assert_eq!(
            status_field(program, "NSpid"),
            format!("{program}\t2"),
            "{who:?}: the program is not PID 2 of its namespace"
        );
        assert_eq!(status_field(init, "NSpid"), format!("{init}\t1"));

        drop(child.stdin.take());
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report.path).unwrap()).unwrap();
        assert!(
            status.code() == Some(0) && report["status"] == "ok" && rest == "done\n",
            "{who:?}: {status:?} {report} stdout={rest:?} stderr={stderr}"
        );
    }
}

/// A file the program creates on a --bind-rw directory belongs outside to the outside
/// ids: 65534 when root runs moat (never root), the caller's own ids otherwise.
#[test]
fn files_created_on_a_writable_bind_belong_to_the_outside_ids() {
    let prog = fixture("ns_touch");
    for who in everyone() {
        let dir = scratch();
        let work = path_str(dir.path());
        let target = dir.path().join("made-by-the-jail");
        let run = run_as(
            who,
            &["--bind-rw", work, "--", path_str(&prog), path_str(&target)],
        );
        assert_run(&run, "ok", 0, "created\n");
        let meta = std::fs::metadata(&target).unwrap();
        let (uid, gid) = outside_ids_of(who);
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "{who:?}: owner of {}",
            target.display()
        );
        assert_ne!(meta.uid(), 0, "{who:?}: the jail created a root-owned file");
        assert_eq!(std::fs::read(&target).unwrap(), b"x");
    }
}

// ---------------------------------------------------------------- PID namespace

#[test]
fn the_program_is_pid_2_a_session_leader_under_init_pid_1() {
    let prog = fixture("ns_pid");
    assert_run_as_callers(
        &["--", path_str(&prog)],
        "ok",
        0,
        "pid=2 ppid=1 sid=2 pgrp=2\n",
    );
}

/// With /proc: the PID namespace holds exactly PID 1 and the program, and PID 1 is a
/// different program (moat's init) whose parent is outside the namespace.
#[test]
fn pid_1_is_a_separate_init_and_nothing_else_runs() {
    let prog = fixture("ns_pid");
    let profile = profile("ns_proc");
    assert_run_as_callers(
        &["--profile", &profile, "--", path_str(&prog), "proc"],
        "ok",
        0,
        "pid=2 ppid=1 sid=2 pgrp=2\npids: 1 2\npid1 is another program, ppid 0\n",
    );
}

// ---------------------------------------------------------------- how the program ends

/// Runs `ns_die MODE` as every caller; asserts the verdict, the exit code and the line
/// the program prints before it ends, then `check` on the run.
fn ending_by(mode: &str, status: &str, code: i32, check: impl Fn(&Run)) {
    let prog = fixture("ns_die");
    for caller in callers() {
        let run = moat_run(caller, &["--", path_str(&prog), mode]);
        assert_run(&run, status, code, &format!("ending by {mode}\n"));
        check(&run);
    }
}

/// abort() must be reported as SIGABRT: the program is not PID 1, so the kernel does
/// not ignore the signal it sends itself (which would surface as SIGSEGV).
#[test]
fn abort_is_reported_as_sigabrt() {
    ending_by("abort", "signaled", 134, |run| {
        assert_eq!(run.report["signal"], 6, "{run:#?}");
    });
}

#[test]
fn raised_sigsegv_is_reported_as_signal_11() {
    ending_by("segv", "signaled", 139, |run| {
        assert_eq!(run.report["signal"], 11, "{run:#?}");
    });
}

#[test]
fn exit_25_is_reported_as_nonzero_exit_25() {
    ending_by("exit25", "nonzero_exit", 25, |run| {
        assert_eq!(run.report["exit_code"], 25, "{run:#?}");
        assert!(run.report["signal"].is_null(), "{run:#?}");
    });
}

// ---------------------------------------------------------------- UTS namespace

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn default_hostname_is_sandbox() {
    let prog = fixture("ns_uts");
    assert_run_as_callers(
        &["--", path_str(&prog)],
        "ok",
        0,
        "nodename=sandbox domainname=(none)\n",
    );
}

/// The profile's hostname is what the program sees, not the host's.
#[test]
fn profile_hostname_is_used_and_differs_from_the_host() {
    let prog = fixture("ns_uts");
    let profile = profile("ns_hostname");
    assert_ne!(host_hostname(), "ns-judge-7.example");
    assert_run_as_callers(
        &["--profile", &profile, "--", path_str(&prog)],
        "ok",
        0,
        "nodename=ns-judge-7.example domainname=(none)\n",
    );
}

/// Even with sethostname allowed by seccomp, the program (no capabilities) cannot
/// rename anything, and the host's name is untouched.
#[test]
fn sethostname_inside_does_not_change_the_host() {
    let prog = fixture("ns_uts");
    let profile = profile("ns_sethostname");
    let before = host_hostname();
    for caller in callers() {
        let run = moat_run(
            caller,
            &[
                "--profile",
                &profile,
                "--",
                path_str(&prog),
                "set",
                "renamed-by-jail",
            ],
        );
        assert_run(
            &run,
            "ok",
            0,
            "sethostname: EPERM\nnodename=sandbox domainname=(none)\n",
        );
        assert_eq!(host_hostname(), before);
    }
}

// ---------------------------------------------------------------- network namespace

/// The only interface is `lo` (by /proc/net/dev and by netlink), it is up, and an
/// outside address is unreachable.
#[test]
fn the_only_network_interface_is_loopback_and_it_is_up() {
    let prog = fixture("ns_net");
    let profile = profile("ns_net");
    assert_run_as_callers(
        &["--profile", &profile, "--", path_str(&prog)],
        "ok",
        0,
        "proc: lo\nif_nameindex: 1:lo\nlo: up\nconnect 192.0.2.1: ENETUNREACH\n",
    );
}

// ---------------------------------------------------------------- IPC namespace

/// A SysV object created by the test; removed on drop.
struct HostIpc {
    msg_key: i32,
    msg_id: i32,
    shm_key: i32,
    shm_id: i32,
}

impl HostIpc {
    fn create() -> HostIpc {
        let base = 0x6e73_0000 | ((std::process::id() as i32 & 0xfff) << 4);
        let mut msg = None;
        let mut shm = None;
        for i in 0..4096 {
            let key = base.wrapping_add(i * 0x10_0000);
            if msg.is_none() {
                // SAFETY: msgget with plain integers.
                let id = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o666) };
                if id >= 0 {
                    msg = Some((key, id));
                }
            }
            if shm.is_none() {
                // SAFETY: shmget with plain integers.
                let id =
                    unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o666) };
                if id >= 0 {
                    shm = Some((key, id));
                }
            }
            if msg.is_some() && shm.is_some() {
                break;
            }
        }
        let (msg_key, msg_id) = msg.expect("creating a host message queue");
        let (shm_key, shm_id) = shm.expect("creating a host shared memory segment");
        HostIpc {
            msg_key,
            msg_id,
            shm_key,
            shm_id,
        }
    }
}

impl Drop for HostIpc {
    fn drop(&mut self) {
        // SAFETY: removing the objects this value created.
        unsafe {
            libc::msgctl(self.msg_id, libc::IPC_RMID, std::ptr::null_mut());
            libc::shmctl(self.shm_id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

fn host_msgget(key: i32) -> Result<i32, i32> {
    // SAFETY: msgget lookup with plain integers.
    let id = unsafe { libc::msgget(key, 0) };
    if id >= 0 {
        Ok(id)
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// Host SysV objects (mode 0666) do not exist inside; the program may create its own
/// objects, even under the host's key, and none of them appears on the host.
#[test]
fn sysv_ipc_is_private() {
    let prog = fixture("ns_ipc");
    let profile = profile("ns_ipc");
    let host = HostIpc::create();
    // A key free on the host, for the queue the program creates.
    let own = (0..4096)
        .map(|i| host.msg_key.wrapping_add(0x1000 + i))
        .find(|k| host_msgget(*k) == Err(libc::ENOENT))
        .unwrap();
    for caller in callers() {
        let run = moat_run(
            caller,
            &[
                "--profile",
                &profile,
                "--",
                path_str(&prog),
                &host.msg_key.to_string(),
                &host.shm_key.to_string(),
                &own.to_string(),
            ],
        );
        assert_run(
            &run,
            "ok",
            0,
            "msgget outside key: ENOENT\n\
             shmget outside key: ENOENT\n\
             msgget create own key: created\n\
             msgget create outside key: created\n",
        );
        if let Ok(leaked) = host_msgget(own) {
            // SAFETY: removing the queue the jail left on the host before failing.
            unsafe { libc::msgctl(leaked, libc::IPC_RMID, std::ptr::null_mut()) };
            panic!("{caller:?}: the jail's queue (key {own:#x}) leaked to the host");
        }
        assert_eq!(host_msgget(own), Err(libc::ENOENT));
        assert_eq!(host_msgget(host.msg_key), Ok(host.msg_id));
    }
}

/// The CPUs a process may run on, as `ns_cpus` prints them.
fn cpus_of(pid: &str) -> String {
    let out = Command::new("taskset")
        .args(["-c", "-p", pid])
        .output()
        .unwrap();
    // "pid N's current affinity list: 0,1" (ranges as "0-1"): expanded to "0,1".
    let text = String::from_utf8_lossy(&out.stdout);
    let list = text.rsplit(':').next().unwrap().trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()),
            None => cpus.push(part.parse::<u32>().unwrap()),
        }
    }
    cpus.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_program_may_use_every_cpu_its_caller_may() {
    // moat sets the jail up pinned to one CPU; the program must not stay there.
    let prog = static_fixture("ns_cpus");
    let all = cpus_of(&std::process::id().to_string());
    for caller in callers() {
        let run = moat_run(caller, &["--", path_str(&prog)]);
        assert_run(&run, "ok", 0, &format!("{all}\n"));
        // A caller limited to one CPU gives the program that one.
        let last = all.rsplit(',').next().unwrap().to_string();
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &last]);
        match caller {
            Caller::Current => cmd.arg(MOAT),
            Caller::Unprivileged => cmd
                .args([
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                ])
                .arg(moat_bin()),
        };
        let out = cmd.args(["run", "--"]).arg(&prog).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{last}\n"));
    }
}

#[test]
fn a_library_run_gives_the_calling_thread_its_cpu_mask_back() {
    let mask = || {
        // SAFETY: sched_getaffinity fills a zeroed set of the size given.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect::<Vec<_>>()
        }
    };
    let before = mask();
    let prog = static_fixture("noop");
    let policy = moat::Policy::load("default", &moat::Overrides::default()).unwrap();
    let plan = moat::Plan::build(policy, &[prog.into_os_string()]).unwrap();
    let o = moat::run(&plan).unwrap();
    assert_eq!(o.status, moat::Status::Ok);
    assert_eq!(mask(), before);
}
