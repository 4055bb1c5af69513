//! What the program is left with: no capability in any set, no_new_privs, a seccomp
//! filter, no controlling terminal, no descriptor but 0/1/2, exactly the profile's
//! environment, and nothing from a setuid-root file.

mod common;
use common::*;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

// ---------------------------------------------------------------- capabilities

#[test]
fn no_capabilities_no_new_privs_and_a_seccomp_filter() {
    let prog = fixture("ns_status");
    let profile = profile("ns_proc");
    assert_run_as_callers(
        &[
            "--profile",
            &profile,
            "--",
            path_str(&prog),
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
        ],
        "ok",
        0,
        "CapInh:\t0000000000000000\n\
         CapPrm:\t0000000000000000\n\
         CapEff:\t0000000000000000\n\
         CapBnd:\t0000000000000000\n\
         CapAmb:\t0000000000000000\n\
         NoNewPrivs:\t1\n\
         Seccomp:\t2\n",
    );
}

// ---------------------------------------------------------------- terminal

/// With stdin a pipe: no /dev/tty, a session and group of its own.
#[test]
fn no_controlling_terminal_and_a_session_of_its_own() {
    let prog = fixture("ns_tty");
    assert_run_as_callers(
        &["--", path_str(&prog)],
        "ok",
        0,
        "open /dev/tty: ENOENT\n\
         session leader: yes, group leader: yes\n\
         isatty(0): 0\n\
         TIOCGSID: ENOTTY\n\
         tcgetpgrp: ENOTTY\n\
         TIOCSCTTY: ENOTTY\n",
    );
}

/// A new pseudo-terminal pair: (master, slave).
fn open_pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: plain libc pty calls; each descriptor is owned right after it is made.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt: {}", errno());
        let master = OwnedFd::from_raw_fd(master);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0, "grantpt: {}", errno());
        assert_eq!(
            libc::unlockpt(master.as_raw_fd()),
            0,
            "unlockpt: {}",
            errno()
        );
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(slave >= 0, "opening the pty slave: {}", errno());
        (master, OwnedFd::from_raw_fd(slave))
    }
}

/// moat runs in a session whose controlling terminal is a pty, which is also its
/// stdin. The program does get the pty as fd 0 (isatty), but it is not its controlling
/// terminal: the terminal ioctls that need one fail, and it cannot take the terminal.
#[test]
fn the_callers_terminal_is_not_the_programs_controlling_terminal() {
    let prog = fixture("ns_tty");
    for caller in callers() {
        let (master, slave) = open_pty();
        let run = moat_run_with(caller, &["--", path_str(&prog)], |cmd| {
            cmd.stdin(Stdio::from(slave));
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        });
        drop(master);
        assert_run(
            &run,
            "ok",
            0,
            "open /dev/tty: ENOENT\n\
             session leader: yes, group leader: yes\n\
             isatty(0): 1\n\
             TIOCGSID: ENOTTY\n\
             tcgetpgrp: ENOTTY\n\
             TIOCSCTTY: EPERM\n",
        );
    }
}

// ---------------------------------------------------------------- descriptors

/// Inheritable descriptors for a child: a pipe's ends duplicated to free numbers at
/// 3 or above, 100 or above and 900 or above (free in this process, so nothing else's).
fn extra_fds() -> Vec<OwnedFd> {
    let mut ends = [0; 2];
    // SAFETY: pipe2 into a stack array.
    let made = unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(made, 0);
    // SAFETY: fresh descriptors from pipe2.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    [(&r, 3), (&w, 100), (&r, 900)]
        .into_iter()
        .map(|(fd, min)| {
            // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor we then own.
            let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
            assert!(n >= min, "F_DUPFD_CLOEXEC: {}", errno());
            // SAFETY: as above.
            unsafe { OwnedFd::from_raw_fd(n) }
        })
        .collect()
}

/// Lets `raw` survive the exec of `cmd` (clears close-on-exec in the child only).
fn inherit(cmd: &mut Command, raw: Vec<RawFd>) {
    // SAFETY: fcntl is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &raw {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// moat is started holding extra inheritable descriptors; the program holds only 0, 1
/// and 2 (probed with fcntl up to its fd limit, and as listed by /proc/self/fd).
#[test]
fn only_stdio_descriptors_reach_the_program() {
    let prog = fixture("ns_fds");
    let profile = profile("ns_proc");
    let fds = extra_fds();
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();

    // Control: started the same way outside the jail, the program sees them.
    let mut control = Command::new(&prog);
    inherit(&mut control, raw.clone());
    let out = control.stdin(Stdio::null()).output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    let first = seen.lines().next().unwrap_or("");
    for fd in &raw {
        assert!(
            first.split(' ').any(|n| n == fd.to_string()),
            "control run does not inherit fd {fd}: {seen}"
        );
    }

    for caller in callers() {
        let run = moat_run_with(
            caller,
            &["--profile", &profile, "--", path_str(&prog), "proc"],
            |cmd| inherit(cmd, raw.clone()),
        );
        assert_run(&run, "ok", 0, "fcntl: 0 1 2\nproc: 0 1 2\n");
    }
    drop(fds);
}

// ---------------------------------------------------------------- environment

/// What the tests put in moat's own environment; none of it may reach the program.
fn polluted(cmd: &mut Command) {
    cmd.env("MOAT_TEST_SECRET", "hunter2")
        .env("HOME", "/root")
        .env("LANG", "de_DE.UTF-8")
        .env("LD_LIBRARY_PATH", "/nonexistent-moat-test")
        .env("PATH", "/caller/bin:/usr/bin:/bin");
}

/// Runs `moat run ARGS` as every caller from a `polluted` environment; the program
/// (ns_env) must print exactly `env`.
fn assert_environment(args: &[&str], env: &str) {
    for caller in callers() {
        let run = moat_run_with(caller, args, polluted);
        assert_run(&run, "ok", 0, env);
    }
}

#[test]
fn default_environment_is_only_path_whatever_the_caller_has() {
    let prog = fixture("ns_env");
    assert_environment(
        &["--", path_str(&prog)],
        "PATH=/usr/local/bin:/usr/bin:/bin\n",
    );
}

#[test]
fn env_option_adds_exactly_the_given_variables() {
    let prog = fixture("ns_env");
    assert_environment(
        &[
            "--env",
            "GREETING=hello there",
            "--env",
            "EQUATION=a=b",
            "--env",
            "EMPTY=",
            "--",
            path_str(&prog),
        ],
        "EMPTY=\nEQUATION=a=b\nGREETING=hello there\nPATH=/usr/local/bin:/usr/bin:/bin\n",
    );
}

/// A profile's env is the whole environment (no PATH added), --env adds to it, and the
/// caller's environment cannot be read back through init's /proc/1/environ either.
#[test]
fn profile_environment_is_the_whole_environment() {
    let prog = fixture("ns_env");
    let profile = profile("ns_env");
    assert_environment(
        &[
            "--profile",
            &profile,
            "--env",
            "X=1",
            "--",
            path_str(&prog),
            "proc",
        ],
        "HOME=/home/judge\nLANG=C.UTF-8\nX=1\n/proc/1/environ: EACCES\n",
    );
}

// ---------------------------------------------------------------- setuid files

/// A setuid-root, setgid-root copy of a program: outside the jail it runs as euid 0
/// (the control), inside it gets nothing.
#[test]
fn a_setuid_root_program_gains_nothing() {
    if !is_root() {
        eprintln!("skipped: making a setuid-root file needs root");
        return;
    }
    let ids = fixture("ns_ids");
    // Under target/, not /tmp: a /tmp mounted nosuid would make the control meaningless.
    let dir = tempfile::Builder::new()
        .prefix("ns-suid-")
        .tempdir_in(fixture_dir())
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = dir.path().join("ns_ids_suid");
    std::fs::copy(&ids, &suid).unwrap();
    let c = CString::new(path_str(&suid)).unwrap();
    // SAFETY: chown/chmod on a path we just created.
    unsafe {
        assert_eq!(libc::chown(c.as_ptr(), 0, 0), 0);
        assert_eq!(libc::chmod(c.as_ptr(), 0o6755), 0);
    }
    // Control: run by uid 65534 outside the jail, the file makes it root.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            path_str(&suid),
        ])
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&out.stdout);
    assert!(
        control.starts_with("uid=65534 gid=65534 euid=0 egid=0\n"),
        "the setuid control run did not become root: {control}"
    );

    assert_run_as_callers(
        &["--", path_str(&suid)],
        "ok",
        0,
        "uid=1000 gid=1000 euid=1000 egid=1000\n\
         resuid=1000,1000,1000 resgid=1000,1000,1000 groups=0\n",
    );
}
