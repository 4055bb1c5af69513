//! The shipped `c` profile: a native C program reads stdin, computes (clock() works,
//! deep recursion fits the profile's 256MiB stack) and writes stdout; fork, exec and
//! socket are violations naming the syscall, and files can be written only in a
//! --bind-rw work directory.

mod common;
use common::*;

/// `moat run --profile c --bind(-rw) WORKDIR --cwd WORKDIR EXTRA -- PROG ARGS`, the way
/// a user runs a submission.
fn run_c(
    caller: Caller,
    workdir: &std::path::Path,
    rw: bool,
    extra: &[&str],
    prog: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) -> Run {
    let mut all = vec![
        "--profile",
        "c",
        if rw { "--bind-rw" } else { "--bind" },
        path_str(workdir),
        "--cwd",
        path_str(workdir),
    ];
    all.extend_from_slice(extra);
    all.push("--");
    all.push(path_str(prog));
    all.extend_from_slice(args);
    moat_run_stdin(caller, &all, stdin)
}

#[test]
fn c_reads_stdin_computes_and_uses_clock() {
    let work = scratch();
    for prog in [fixture("lang_c_sum"), static_fixture("lang_c_sum")] {
        for caller in callers() {
            let run = run_c(
                caller,
                work.path(),
                false,
                &[],
                &prog,
                &[],
                b"1 2 3\n40\n-5\n",
            );
            assert_run(&run, "ok", 0, "n=5 sum=41\nclock ok\n");
        }
    }
}

#[test]
fn c_profile_gives_a_big_stack_for_deep_recursion() {
    let work = scratch();
    let prog = fixture("lang_c_deep");
    for caller in callers() {
        // About 200 MB of frames: far past the usual 8MiB, inside the profile's 256MiB.
        let run = run_c(caller, work.path(), false, &[], &prog, &["1000000"], b"");
        assert_run(&run, "ok", 0, "depth 1000000\n");
        let stack = run.report["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "stack")
            .cloned();
        assert_eq!(
            stack.as_ref().map(|l| l["value"].clone()),
            Some(serde_json::json!("256MiB")),
            "{:#?}",
            run.report
        );
        // The same recursion with an ordinary 8MiB stack overflows: the profile's
        // limit is what makes it work.
        let run = run_c(
            caller,
            work.path(),
            false,
            &["--stack", "8MiB"],
            &prog,
            &["1000000"],
            b"",
        );
        assert_run(&run, "signaled", 128 + 11, "");
        assert_eq!(run.report["signal"], 11, "{run:#?}");
    }
}

#[track_caller]
fn assert_violation(run: &Run, syscall: &str) {
    assert_run(run, "violation", 159, "");
    assert_eq!(run.report["violation"]["syscall"], syscall, "{run:#?}");
    assert_eq!(run.report["violation"]["arch"], "x86_64", "{run:#?}");
}

#[test]
fn c_fork_exec_and_socket_are_violations() {
    let work = scratch();
    let prog = fixture("lang_c_escape");
    for caller in callers() {
        for (what, syscall) in [("fork", "clone"), ("exec", "execve"), ("socket", "socket")] {
            let run = run_c(caller, work.path(), false, &[], &prog, &[what], b"");
            assert_violation(&run, syscall);
        }
    }
}

#[test]
fn c_writes_only_inside_a_writable_workdir() {
    let prog = fixture("lang_c_escape");
    for caller in callers() {
        let work = scratch();
        let elsewhere = scratch();
        // Inside the --bind-rw work dir: allowed, and the file lands on the host.
        let run = run_c(
            caller,
            work.path(),
            true,
            &[],
            &prog,
            &["write", "out.txt"],
            b"",
        );
        assert_run(&run, "ok", 0, "wrote out.txt\n");
        assert_eq!(
            std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
            "escaped\n"
        );
        // The jail's root and the directories moat made on it are read-only.
        for path in ["/escaped", "/etc/passwd"] {
            let run = run_c(caller, work.path(), true, &[], &prog, &["write", path], b"");
            assert_run(
                &run,
                "nonzero_exit",
                1,
                &format!("open {path}: Read-only file system\n"),
            );
        }
        // A host directory that exists but is not bound is not there at all.
        let target = elsewhere.path().join("escaped");
        let target_s = path_str(&target);
        let run = run_c(
            caller,
            work.path(),
            true,
            &[],
            &prog,
            &["write", target_s],
            b"",
        );
        assert_run(
            &run,
            "nonzero_exit",
            1,
            &format!("open {target_s}: No such file or directory\n"),
        );
        assert!(!target.exists(), "{} was created", target.display());
        // A work dir bound read-only (`--bind .`) cannot be written either.
        let run = run_c(
            caller,
            work.path(),
            false,
            &[],
            &prog,
            &["write", "ro.txt"],
            b"",
        );
        assert_run(
            &run,
            "nonzero_exit",
            1,
            "open ro.txt: Read-only file system\n",
        );
        assert!(!work.path().join("ro.txt").exists());
    }
}
