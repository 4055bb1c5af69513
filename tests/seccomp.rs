//! The syscall filter seen from outside: default deny with the call's name, number,
//! arguments and architecture; errno rules; the always-denied core; argument checks on
//! clone, ioctl and personality; foreign architectures; a second execve; and profile
//! errors about syscalls. Every test runs for each caller in `callers()`.

mod common;
use common::*;

/// The fixture that makes one syscall, chosen by its first argument.
fn calls() -> String {
    fixture("sc_calls").to_str().unwrap().to_string()
}

/// Runs `sc_calls MODE` under `profile` (None: the built-in default profile).
fn run_mode(caller: Caller, profile_name: Option<&str>, mode: &str) -> Run {
    moat_run_profiled(caller, profile_name, &[], &calls(), &[mode])
}

/// Asserts a run that the filter let through: the verdict, exit code and stdout, and no
/// violation in the report.
#[track_caller]
fn assert_no_violation(run: &Run, status: &str, code: i32, stdout: &str) {
    assert_run(run, status, code, stdout);
    assert!(run.report["violation"].is_null(), "{run:#?}");
}

/// Asserts a violation of `syscall` (number `nr`) made in `arch`, after which only
/// `stdout` was delivered; returns the syscall's six arguments.
#[track_caller]
fn assert_violation(run: &Run, syscall: &str, nr: u64, arch: &str, stdout: &str) -> Vec<u64> {
    assert_run(run, "violation", 159, stdout);
    let v = &run.report["violation"];
    assert!(
        v["syscall"] == syscall && v["nr"] == nr && v["arch"] == arch,
        "expected a violation of {syscall} (nr {nr}, arch {arch})\n got {run:#?}"
    );
    let args: Vec<u64> = v["args"]
        .as_array()
        .unwrap_or_else(|| panic!("violation without args: {run:#?}"))
        .iter()
        .map(|a| a.as_u64().expect("args are u64"))
        .collect();
    assert_eq!(args.len(), 6, "{run:#?}");
    assert!(v["pid"].as_i64().is_some_and(|p| p > 0), "{run:#?}");
    args
}

/// Asserts that loading profile `name` failed before anything ran: exit 125,
/// setup_error, and stderr carrying `file:line:column: ` followed by `rest`.
#[track_caller]
fn assert_profile_error(caller: Caller, name: &str, line: u32, column: u32, rest: &[&str]) {
    let path = profile(name);
    let prog = calls();
    let run = moat_run(caller, &["--profile", &path, "--", prog.as_str(), "exit7"]);
    assert_run(&run, "setup_error", 125, "");
    assert_eq!(run.report["error"]["kind"], "setup", "{run:#?}");
    assert!(run.report["violation"].is_null(), "{run:#?}");
    let located = format!("{path}:{line}:{column}: ");
    let at = run
        .stderr
        .find(&located)
        .unwrap_or_else(|| panic!("stderr does not locate the error at {located}\n{run:#?}"));
    let msg = &run.stderr[at + located.len()..];
    for part in rest {
        assert!(msg.contains(part), "stderr lacks {part:?}\n{run:#?}");
    }
    // The report carries the same located message.
    let report_msg = run.report["error"]["message"].as_str().unwrap_or("");
    assert!(report_msg.contains(&located), "{run:#?}");
}

#[test]
fn default_deny_names_the_socket_call_and_keeps_earlier_output() {
    for caller in callers() {
        let run = run_mode(caller, None, "socket");
        let args = assert_violation(&run, "socket", 41, "x86_64", "before socket\n");
        assert_eq!(args[0], libc::AF_INET as u64, "{run:#?}");
        assert_eq!(args[1], libc::SOCK_STREAM as u64, "{run:#?}");
        assert_eq!(args[2], 0, "{run:#?}");
        assert!(run.stderr.contains("socket"), "{run:#?}");
    }
}

#[test]
fn errno_rule_fails_the_call_and_the_program_goes_on() {
    for caller in callers() {
        let run = run_mode(caller, Some("sc_errno_socket"), "socket");
        assert_no_violation(&run, "ok", 0, "before socket\nsocket: -1 EACCES 13\n");
    }
}

#[test]
fn core_syscalls_cannot_be_allowed() {
    for caller in callers() {
        // After a group list and another allowed name: the error points at `ptrace`.
        assert_profile_error(
            caller,
            "sc_core_ptrace",
            4,
            18,
            &["syscalls.allow", "`ptrace`", "always-denied core"],
        );
        for name in ["bpf", "mount", "unshare"] {
            let quoted = format!("`{name}`");
            assert_profile_error(
                caller,
                &format!("sc_core_{name}"),
                3,
                10,
                &["syscalls.allow", &quoted, "always-denied core"],
            );
        }
    }
}

#[test]
fn core_syscall_may_be_given_an_errno() {
    for caller in callers() {
        let run = run_mode(caller, Some("sc_errno_ptrace"), "ptrace");
        assert_no_violation(&run, "ok", 0, "before ptrace\nptrace: -1 EPERM 1\n");
    }
}

#[test]
fn ptrace_is_a_violation_under_the_default_profile() {
    for caller in callers() {
        let run = run_mode(caller, None, "ptrace");
        let args = assert_violation(&run, "ptrace", 101, "x86_64", "before ptrace\n");
        assert_eq!(args[0], libc::PTRACE_TRACEME as u64, "{run:#?}");
    }
}

#[test]
fn int_0x80_is_an_i386_violation() {
    for caller in callers() {
        let run = run_mode(caller, None, "int80");
        assert_violation(&run, "getpid", 20, "i386", "before int80\n");
    }
}

#[test]
fn x32_syscall_is_an_x32_violation() {
    for caller in callers() {
        let run = run_mode(caller, None, "x32");
        assert_violation(&run, "getpid", 0x4000_0000 | 39, "x32", "before x32\n");
    }
}

#[test]
fn second_execve_is_a_violation_by_default() {
    for caller in callers() {
        // exec_true: /bin/true is not even mounted, the filter must stop the call first.
        // reexec: re-executing itself (mounted, runnable) is denied all the same.
        for mode in ["exec_true", "reexec"] {
            let run = run_mode(caller, None, mode);
            assert_violation(&run, "execve", 59, "x86_64", "before execve\n");
        }
    }
}

#[test]
fn allow_exec_lets_the_program_exec_again() {
    for caller in callers() {
        let run = run_mode(caller, Some("sc_allow_exec"), "reexec");
        assert_no_violation(&run, "nonzero_exit", 7, "before execve\nre-executed\n");
        assert_eq!(run.report["exit_code"], 7, "{run:#?}");
    }
}

#[test]
fn tiocsti_is_denied_though_ioctl_is_allowed() {
    for caller in callers() {
        let run = run_mode(caller, None, "tiocsti");
        let args = assert_violation(&run, "ioctl", 16, "x86_64", "before ioctl\n");
        assert_eq!(args[0], 0, "{run:#?}");
        assert_eq!(args[1], 0x5412, "{run:#?}");
    }
}

#[test]
fn tiocsti_with_junk_in_the_high_bits_is_denied() {
    for caller in callers() {
        let run = run_mode(caller, None, "tiocsti_high");
        let args = assert_violation(&run, "ioctl", 16, "x86_64", "before ioctl\n");
        assert_eq!(args[1], 0x1_0000_5412, "{run:#?}");
    }
}

#[test]
fn ordinary_ioctl_works() {
    for caller in callers() {
        // stdout is a pipe: TCGETS fails with ENOTTY, isatty says 0, nothing is denied.
        let run = run_mode(caller, None, "tcgets");
        assert_no_violation(&run, "ok", 0, "tcgets: -1 ENOTTY 25\nisatty: 0\n");
    }
}

#[test]
fn clone_with_namespace_flags_is_denied_where_clone_is_allowed() {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
    for caller in callers() {
        for profile_name in ["sc_fork", "sc_threads"] {
            let run = run_mode(caller, Some(profile_name), "clone_newuser");
            let args = assert_violation(&run, "clone", 56, "x86_64", "before clone\n");
            assert_eq!(args[0], flags, "{profile_name}: {run:#?}");
        }
    }
}

#[test]
fn plain_fork_works_where_fork_is_allowed() {
    for caller in callers() {
        let run = run_mode(caller, Some("sc_fork"), "fork");
        assert_no_violation(&run, "nonzero_exit", 3, "child exited 3\n");
        assert_eq!(run.report["exit_code"], 3, "{run:#?}");
    }
}

#[test]
fn clone3_fails_with_enosys() {
    for caller in callers() {
        for profile_name in [None, Some("sc_fork")] {
            let run = run_mode(caller, profile_name, "clone3");
            assert_no_violation(&run, "ok", 0, "clone3: -1 ENOSYS 38\n");
        }
    }
}

#[test]
fn unknown_syscall_name_is_a_profile_error() {
    for caller in callers() {
        assert_profile_error(
            caller,
            "sc_unknown_syscall",
            3,
            18,
            &["syscalls.allow", "`sokcet` is not a syscall"],
        );
        assert_profile_error(
            caller,
            "sc_unknown_errno_syscall",
            3,
            1,
            &["syscalls.errno", "`sockett` is not a syscall"],
        );
    }
}

#[test]
fn unknown_group_is_a_profile_error() {
    for caller in callers() {
        assert_profile_error(
            caller,
            "sc_unknown_group",
            3,
            19,
            &["syscalls.groups", "unknown group `pipse`"],
        );
    }
}

#[test]
fn misspelled_key_is_a_profile_error() {
    for caller in callers() {
        assert_profile_error(caller, "sc_typo_key", 4, 1, &["`alow`"]);
    }
}

#[test]
fn personality_changes_are_denied_even_when_allowed() {
    for caller in callers() {
        for (mode, persona) in [
            ("pers_linux32", 0x0008 /* PER_LINUX32 */),
            ("pers_norandom", libc::ADDR_NO_RANDOMIZE as u64),
        ] {
            let run = run_mode(caller, Some("sc_personality"), mode);
            let args = assert_violation(&run, "personality", 135, "x86_64", "before personality\n");
            assert_eq!(args[0], persona, "{run:#?}");
        }
    }
}

#[test]
fn personality_query_works_when_allowed() {
    for caller in callers() {
        let run = run_mode(caller, Some("sc_personality"), "pers_query");
        assert_no_violation(&run, "ok", 0, "personality query worked\n");
    }
}

/// Argument conditions: `write` allowed for fds >= 1 only, `openat` only without write
/// flags. A call outside them is a violation that names it.
#[test]
fn argument_conditions_narrow_a_syscall() {
    let prog = fixture("sc_cond");
    let profile = profile("sc_conditions");
    let p = path_str(&prog);
    for caller in callers() {
        let ok = moat_run(caller, &["--profile", &profile, "--", p, "write", "2"]);
        assert_run(&ok, "ok", 0, "out\n");
        let ok = moat_run(caller, &["--profile", &profile, "--", p, "open-read", p]);
        assert_run(&ok, "ok", 0, "out\nopen: ok\n");
        let bad = moat_run(caller, &["--profile", &profile, "--", p, "write", "0"]);
        assert_run(&bad, "violation", 159, "out\n");
        assert_eq!(bad.report["violation"]["syscall"], "write");
        assert_eq!(bad.report["violation"]["args"][0], 0);
        let bad = moat_run(
            caller,
            &["--profile", &profile, "--", p, "open-create", "/x"],
        );
        assert_run(&bad, "violation", 159, "out\n");
        assert_eq!(bad.report["violation"]["syscall"], "openat");
    }
}
