//! Regressions of what was found when moat was tried as attackers, judges and careless
//! users would: a forged monitor decision, false violations of sleeping programs,
//! rules that could never hold, signals to moat, panics, unbounded input, limits that
//! wrap, a program reaching its init, shared stdio files,
//! output counted that never arrived, errors for people, profile layering and the
//! template's names. Every jail test runs for each caller in `callers()`.

mod common;
use common::*;
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes a profile into `dir` and returns its path.
fn write_profile(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `moat run ARGS` in the background with a report, for tests that act on it meanwhile.
struct Background {
    child: Child,
    report: ReportFile,
}

impl Background {
    fn start(caller: Caller, args: &[&str]) -> Background {
        let report = ReportFile::new();
        let child = report
            .run(command(caller), args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background { child, report }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits (at most `limit`) and collects the run.
    fn finish(mut self, limit: Duration) -> Run {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("moat did not end within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
            stdout,
            stderr,
            report: self.report.read(),
        }
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill with a plain pid and signal.
    unsafe { libc::kill(pid, sig) };
}

/// Waits until a process of the jail carries `marker` (moat itself, `moat_pid`, has it
/// in its arguments too) and returns its host pid.
fn find(marker: &str, moat_pid: i32) -> i32 {
    let mut found = None;
    assert!(
        poll(Duration::from_secs(10), Duration::from_millis(5), || {
            found = marked_pids(marker).into_iter().find(|p| *p != moat_pid);
            found.is_some()
        }),
        "no process with {marker} appeared"
    );
    found.unwrap()
}

// ---------------------------------------------------------------- 1. forged decisions

#[test]
fn a_stacked_filter_cannot_forge_what_learning_allows() {
    let prog = fixture("hd_stack_filter");
    // 4 is moat's TRACE_FILE marker, which a learning run lets through: every one of
    // these is refused by moat's own core whatever the stacked filter says.
    for (call, syscall) in [
        ("personality", "personality"),
        ("clone_newuser", "clone"),
        ("tiocsti", "ioctl"),
    ] {
        for caller in callers() {
            let dir = scratch();
            let saved = dir.path().join("learned.toml");
            let out = moat_learn(caller, &saved, &[path_str(&prog), call, "4"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(159), "{caller:?} {call}: {err}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "stacked\n",
                "{caller:?} {call}: the call returned"
            );
            assert!(err.contains(&format!("{syscall} (nr ")), "{err}");
        }
    }
}

#[test]
fn a_stacked_filter_cannot_make_an_allowed_call_a_violation() {
    let prog = fixture("hd_stack_filter");
    for caller in callers() {
        // 3 is moat's TRACE_CORE marker: the stacked filter traces getppid with it.
        let run = moat_run_profiled(
            caller,
            Some("hd_stack"),
            &[],
            path_str(&prog),
            &["getppid", "3"],
        );
        assert_run(&run, "ok", 0, "stacked\ngetppid: ok\n");
        // And the core still holds under it: personality forged as allowed data.
        let run = moat_run_profiled(
            caller,
            Some("hd_stack"),
            &[],
            path_str(&prog),
            &["personality", "0"],
        );
        assert_violation(&run, "stacked\n", "personality", "forged personality");
    }
}

// ---------------------------------------------------------------- 2. restarted sleeps

#[test]
fn a_stopped_and_continued_sleeper_is_not_a_violation() {
    let prog = fixture("hd_sleep");
    let prof = profile("hd_sleep");
    for caller in callers() {
        for mode in ["nanosleep", "clock_nanosleep", "poll", "futex"] {
            let mark = marker("hd", mode);
            let bg = Background::start(
                caller,
                &["--profile", &prof, "--", path_str(&prog), mode, &mark],
            );
            let pid = find(&mark, bg.pid());
            std::thread::sleep(Duration::from_millis(100));
            signal(pid, libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(150));
            signal(pid, libc::SIGCONT);
            let run = bg.finish(Duration::from_secs(20));
            assert_run(&run, "ok", 0, &format!("{mode}: 0\n"));
            assert_none_alive(&mark, mode);
        }
    }
}

#[test]
fn a_child_exiting_during_its_parents_sleep_is_not_a_violation() {
    let prog = fixture("hd_sleep");
    for caller in callers() {
        let run = moat_run_profiled(
            caller,
            Some("hd_sleep"),
            &[],
            path_str(&prog),
            &["fork_nanosleep", "x"],
        );
        assert_run(&run, "ok", 0, "fork_nanosleep: 0\n");
    }
}

// ---------------------------------------------------------------- 3. rules that never hold

#[test]
fn a_condition_no_argument_can_meet_is_a_located_error() {
    let dir = scratch();
    for (when, why) in [
        ("arg0 & 1 == 2", "outside the mask"),
        ("arg1 < 0", "unsigned"),
        ("arg2 > 0xffffffffffffffff", "no argument is above"),
    ] {
        let path = write_profile(
            &dir,
            "never.toml",
            &format!("extends = \"default\"\n[[syscalls.rule]]\nname = \"openat\"\nwhen = [\"{when}\"]\n"),
        );
        let run = moat_run(Caller::Current, &["--profile", &path, "--", "/bin/true"]);
        assert_run(&run, "setup_error", 125, "");
        assert!(
            run.stderr
                .contains(&format!("{path}:4:9: syscalls.rule.when: `"))
                && run.stderr.contains("can never hold")
                && run.stderr.contains(why),
            "{when}: {}",
            run.stderr
        );
    }
}

// ---------------------------------------------------------------- 4. signals to moat

#[test]
fn a_signal_to_moat_cancels_the_run_and_removes_everything() {
    let prog = fixture("mon_sleep_forever");
    for caller in callers() {
        for (sig, name) in [
            (libc::SIGTERM, "SIGTERM"),
            (libc::SIGINT, "SIGINT"),
            (libc::SIGHUP, "SIGHUP"),
        ] {
            let mark = marker("hd", name);
            let mounts = mount_count();
            let bg = Background::start(
                caller,
                &[
                    "--memory",
                    "64MiB",
                    "--processes",
                    "4",
                    "--",
                    path_str(&prog),
                    &mark,
                ],
            );
            let moat_pid = bg.pid();
            find(&mark, moat_pid);
            signal(moat_pid, sig);
            let run = bg.finish(Duration::from_secs(10));
            assert_eq!(run.code, 128 + sig, "{caller:?} {name}: {run:#?}");
            assert_eq!(run.status(), "cancelled", "{caller:?} {name}: {run:#?}");
            assert_eq!(run.report["cancelled_by"], sig, "{run:#?}");
            assert!(run.stderr.contains("cancelled by signal"), "{}", run.stderr);
            assert_none_alive(&mark, name);
            assert_eq!(mount_count(), mounts, "{name}: mounts left behind");
            assert!(
                cgroup_dirs_of(moat_pid).is_empty(),
                "{caller:?} {name}: cgroups left: {:?}",
                cgroup_dirs_of(moat_pid)
            );
        }
    }
}

/// The run cgroups a moat with this pid made (named `moat-PID-…`), in any hierarchy.
fn cgroup_dirs_of(pid: i32) -> Vec<std::path::PathBuf> {
    cgroup_dirs(&format!("moat-{pid}-"))
}

#[test]
fn the_next_moat_sweeps_what_a_killed_one_left_at_once() {
    if !is_root() {
        eprintln!("as an unprivileged user there is no cgroup to leave behind here");
    }
    let prog = fixture("mon_sleep_forever");
    let mark = marker("hd", "sigkill");
    let bg = Background::start(
        Caller::Current,
        &["--memory", "64MiB", "--", path_str(&prog), &mark],
    );
    let moat_pid = bg.pid();
    find(&mark, moat_pid);
    let left = cgroup_dirs_of(moat_pid);
    signal(moat_pid, libc::SIGKILL);
    let run = bg.finish(Duration::from_secs(10));
    assert_eq!(run.code, 128 + libc::SIGKILL);
    // EXITKILL and the pid namespace take the jail down with moat.
    assert!(
        poll(Duration::from_secs(5), Duration::from_millis(10), || {
            marked_pids(&mark).is_empty()
        }),
        "the jail outlived moat"
    );
    if is_root() {
        assert!(
            !left.is_empty(),
            "a memory limit as root takes a cgroup here"
        );
    }
    // Any run that needs a cgroup sweeps first.
    let run = moat_run(Caller::Current, &["--memory", "64MiB", "--", "/bin/true"]);
    assert_run(&run, "ok", 0, "");
    let still: Vec<_> = left.iter().filter(|d| d.exists()).collect();
    assert!(still.is_empty(), "left behind: {still:?}");
}

// ---------------------------------------------------------------- 5. panics

#[test]
fn an_unwritable_stderr_never_aborts_moat() {
    let calls = fixture("sc_calls");
    for caller in callers() {
        for (args, status, code) in [
            (vec!["--", path_str(&calls), "socket"], "violation", 159),
            (vec!["--", "/no/such/program"], "setup_error", 127),
            (
                vec!["--profile", "/no/such.toml", "--", "/bin/true"],
                "setup_error",
                125,
            ),
        ] {
            for sink in ["full", "closed"] {
                let report = ReportFile::new();
                let mut cmd = report.run(command(caller), &args);
                cmd.stdout(Stdio::null()).stdin(Stdio::null());
                let out = if sink == "full" {
                    let full = std::fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/full")
                        .unwrap();
                    cmd.stderr(full).output().unwrap()
                } else {
                    // A pipe whose reader is gone before moat writes.
                    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
                    drop(child.stderr.take());
                    child.wait_with_output().unwrap()
                };
                let r = Run::from_output(&out, report.read());
                assert_eq!(
                    (r.status(), r.code),
                    (status, code),
                    "{caller:?} {args:?} {sink}: {r:#?}"
                );
            }
        }
    }
}

#[test]
fn a_report_that_cannot_be_written_fails_the_run() {
    let out = Command::new(MOAT)
        .args([
            "run",
            "--report",
            "/no/such/dir/report.json",
            "--",
            "/bin/true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the report"));
}

#[test]
fn nul_bytes_are_located_profile_errors() {
    let dir = scratch();
    for (text, at) in [
        ("[process]\ncwd = \"/a\\u0000b\"\n", "2:7: process.cwd"),
        (
            "[[filesystem.tmpfs]]\npath = \"/t\\u0000\"\nsize = \"1MiB\"\n",
            "2:8: filesystem.tmpfs.path",
        ),
        ("[process]\nargs = [\"-x\\u0000\"]\n", "2:9: process.args"),
        (
            "[process]\nenv = { K = \"v\\u0000\" }\n",
            "2:13: process.env.K",
        ),
        (
            "[process]\nlibrary_path = [\"/l\\u0000\"]\n",
            "2:17: process.library_path",
        ),
    ] {
        let path = write_profile(&dir, "nul.toml", &format!("extends = \"default\"\n{text}"));
        for cmd in ["plan", "run"] {
            let out = Command::new(MOAT)
                .args([cmd, "--profile", &path, "--", "/bin/true"])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(125), "{cmd} {text}: {err}");
            // The extends line moves every line down by one.
            let (line, rest) = at.split_once(':').unwrap();
            let want = format!(
                "{path}:{}:{rest}: holds a NUL byte",
                line.parse::<u32>().unwrap() + 1
            );
            assert!(err.contains(&want), "{cmd} {text}: {err}");
        }
    }
}

// ---------------------------------------------------------------- 6. unbounded input

#[test]
fn profiles_must_be_small_regular_files() {
    let dir = scratch();
    let big = dir.path().join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let extends = write_profile(&dir, "extends.toml", "extends = \"/dev/urandom\"\n");
    for (profile, says) in [
        (
            "/dev/zero".to_string(),
            "/dev/zero is not a profile: it is not a regular file",
        ),
        (
            big.display().to_string(),
            "is not a profile: it has 2097152 bytes",
        ),
        (
            fifo.display().to_string(),
            "is not a profile: it is not a regular file",
        ),
        (
            extends.clone(),
            "extends: cannot load `/dev/urandom`: /dev/urandom is not a profile",
        ),
    ] {
        let start = Instant::now();
        let out = Command::new(MOAT)
            .args(["plan", "--profile", &profile, "--", "/bin/true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{profile}: {err}");
        assert!(err.contains(says), "{profile}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{profile} took {:?}",
            start.elapsed()
        );
    }
}

// ---------------------------------------------------------------- 7. limits

#[test]
fn limits_out_of_bounds_are_refused_before_anything_runs() {
    for (flag, value, says) in [
        (
            "--processes",
            "18446744073709551615",
            "must be at most 4194304",
        ),
        ("--wall-time", "0.0001ms", "must be at least 1ms"),
        ("--cpu-time", "0.5ms", "must be at least 1ms"),
        ("--open-files", "99999999999", "must be at most 1073741824"),
    ] {
        let out = Command::new(MOAT)
            .args(["run", flag, value, "--", "/bin/true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{flag} {value}");
        assert!(
            err.contains(says) && err.contains(&flag[2..]),
            "{flag} {value}: {err}"
        );
    }
    // Above the caller's hard rlimit: a plan error naming the limit and the bound.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && ulimit -Hn 256 && exec {MOAT} run --open-files 300 -- /bin/true"
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("limit open_files = 300 needs RLIMIT_NOFILE 300, above this process's hard limit of 256"),
        "{err}"
    );
}

#[test]
fn too_many_rule_alternatives_fail_at_plan_time() {
    let dir = scratch();
    let mut text = String::from("extends = \"default\"\n");
    for i in 0..5000 {
        text += &format!("[[syscalls.rule]]\nname = \"openat\"\nwhen = [\"arg3 == {i}\"]\n");
    }
    let path = write_profile(&dir, "many.toml", &text);
    let out = Command::new(MOAT)
        .args(["plan", "--profile", &path, "--", "/bin/true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("more than the kernel's 4096") && err.contains("rule alternatives"),
        "{err}"
    );
}

// ---------------------------------------------------------------- 8. init's limits

#[test]
fn the_program_cannot_change_its_inits_limits() {
    let prog = fixture("hd_prlimit");
    for caller in callers() {
        let run = moat_run(caller, &["--", path_str(&prog), "1"]);
        assert_violation(&run, "before\n", "prlimit64", "prlimit64 on init");
        let run = moat_run(caller, &["--", path_str(&prog), "0"]);
        assert_run(&run, "ok", 0, "before\nprlimit64: 0 0\n");
    }
}

// ---------------------------------------------------------------- 9. one file for both

#[test]
fn stdout_and_stderr_to_one_file_keep_their_order() {
    let prog = fixture("hd_streams");
    let want = "out line 1\nerr line 2\nout line 3\nerr line 4\nout line 5\nerr line 6\n";
    for caller in callers() {
        for extra in [&[][..], &["--output", "1MiB"][..]] {
            let dir = scratch();
            let file = dir.path().join("both.txt");
            let f = path_str(&file).to_string();
            let mut args: Vec<&str> = vec!["--stdout", &f, "--stderr", &f];
            args.extend_from_slice(extra);
            args.extend(["--", path_str(&prog)]);
            let run = moat_run(caller, &args);
            assert_run(&run, "ok", 0, "");
            assert_eq!(
                std::fs::read_to_string(&file).unwrap(),
                want,
                "{caller:?} {extra:?}"
            );
        }
    }
}

// ---------------------------------------------------------------- 10. delivered bytes

#[test]
fn output_bytes_count_what_arrived() {
    let prog = fixture("lim_output");
    for (what, redirect) in [
        ("full", "> /dev/full"),
        ("closed", ">&-"),
        ("head", "| head -c 10 > /dev/null"),
    ] {
        let r = ReportFile::new();
        let script = format!(
            "{MOAT} run --output 4MiB --report {} -- {} flood {redirect}",
            r.path.display(),
            path_str(&prog)
        );
        let _ = Command::new("sh").arg("-c").arg(&script).status().unwrap();
        let report: Value = r.read();
        let sent = report["output_bytes"][0].as_u64().unwrap();
        assert!(
            sent <= 65536,
            "{what}: {sent} bytes counted as delivered: {report:#}"
        );
        assert!(
            report["output_errors"][0]
                .as_str()
                .is_some_and(|e| !e.is_empty()),
            "{what}: the report does not say the destination failed: {report:#}"
        );
    }
}

// ---------------------------------------------------------------- 11. errors for people

#[test]
fn errors_are_words_with_a_location() {
    let dir = scratch();
    // A conflict between two mounts names both in words, not as Rust structs.
    let run = moat_run(
        Caller::Current,
        &[
            "--bind",
            "/dev/zero:/etc",
            "--bind",
            "/etc:/etc/x",
            "--",
            "/bin/true",
        ],
    );
    assert_eq!(run.code, 125, "{run:#?}");
    assert!(
        !run.stderr.contains("Bind {") && !run.stderr.contains("src:"),
        "{}",
        run.stderr
    );
    // Invalid UTF-8 and a value cut short are located.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, b"[limits]\nwall_time = \"\xff\"\n").unwrap();
    let cut = write_profile(&dir, "cut.toml", "[limits]\nwall_time =");
    for (path, want) in [
        (
            bad.display().to_string(),
            ":2:14: not UTF-8 text (byte 0xff)",
        ),
        (cut.clone(), ":2:12: a value is missing or cut short"),
    ] {
        let out = Command::new(MOAT)
            .args(["plan", "--profile", &path, "--", "/bin/true"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{path}{want}")), "{err}");
    }
}

// ---------------------------------------------------------------- 12. profile semantics

#[test]
fn errnos_by_number_and_for_personality() {
    let dir = scratch();
    let calls = fixture("sc_calls");
    let by_number = write_profile(
        &dir,
        "n.toml",
        "extends = \"default\"\n[syscalls.errno]\nsocket = \"13\"\n",
    );
    let pers = write_profile(
        &dir,
        "p.toml",
        "extends = \"default\"\n[syscalls.errno]\npersonality = \"EPERM\"\n",
    );
    for caller in callers() {
        let run = moat_run(
            caller,
            &["--profile", &by_number, "--", path_str(&calls), "socket"],
        );
        assert_run(&run, "ok", 0, "before socket\nsocket: -1 EACCES 13\n");
        let run = moat_run(
            caller,
            &["--profile", &pers, "--", path_str(&calls), "pers_norandom"],
        );
        assert_run(
            &run,
            "ok",
            0,
            "before personality\npersonality: -1 EPERM 1\n",
        );
    }
}

#[test]
fn an_extending_rule_goes_first_and_a_blanket_errno_is_the_fallback() {
    let dir = scratch();
    let calls = fixture("sc_calls");
    // The base allows socket for AF_UNIX only, else EACCES; the extension adds an
    // EPERM for AF_INET in front: AF_INET now fails with EPERM, the rest as before.
    let base = write_profile(
        &dir,
        "base.toml",
        "extends = \"default\"\n[syscalls.errno]\nsocket = \"EACCES\"\n\
         [[syscalls.rule]]\nname = \"socket\"\nwhen = [\"arg0 == AF_UNIX\"]\n",
    );
    let top = write_profile(
        &dir,
        "top.toml",
        &format!("extends = \"{base}\"\n[[syscalls.rule]]\nname = \"socket\"\nwhen = [\"arg0 == AF_INET\"]\nerrno = \"EPERM\"\n"),
    );
    let plan = Command::new(MOAT)
        .args(["plan", "--profile", &top, "--", "/bin/true"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    let socket: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("socket "))
        .collect();
    assert_eq!(socket.len(), 3, "{text}");
    assert!(
        socket[0].contains("errno EPERM") && socket[0].contains("when arg0 == 0x2"),
        "{socket:?}"
    );
    assert!(
        socket[1].contains("allow") && socket[1].contains("when arg0 == 0x1"),
        "{socket:?}"
    );
    assert!(
        socket[2].contains("errno EACCES") && !socket[2].contains("when"),
        "{socket:?}"
    );
    for caller in callers() {
        // sc_calls' socket is AF_INET: EPERM from the extension's rule.
        let run = moat_run(
            caller,
            &["--profile", &top, "--", path_str(&calls), "socket"],
        );
        assert_run(&run, "ok", 0, "before socket\nsocket: -1 EPERM 1\n");
        let run = moat_run(
            caller,
            &["--profile", &base, "--", path_str(&calls), "socket"],
        );
        assert_run(&run, "ok", 0, "before socket\nsocket: -1 EACCES 13\n");
    }
}

// ---------------------------------------------------------------- 13. template names

#[test]
fn a_system_id_keeps_its_name() {
    let dir = scratch();
    let prof = write_profile(
        &dir,
        "nobody.toml",
        "extends = \"default\"\n[process]\nuid = 65534\ngid = 65534\n[filesystem]\ntemplate = \"base\"\n\
         [syscalls.errno]\nsocket = \"EACCES\"\n",
    );
    for caller in callers() {
        let run = moat_run(caller, &["--profile", &prof, "--", "/usr/bin/id", "-un"]);
        assert_run(&run, "ok", 0, "nobody\n");
    }
}
