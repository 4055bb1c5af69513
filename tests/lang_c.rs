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
    let command = [&[path_str(prog)], args].concat();
    run_in_workdir(caller, "c", workdir, rw, extra, &command, stdin)
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

#[test]
fn c_fork_exec_and_socket_are_violations() {
    assert_escape_fixture_violations("c");
}

#[test]
fn c_writes_only_inside_a_writable_workdir() {
    let prog = fixture("lang_c_escape");
    assert_writes_only_inside_a_writable_workdir(
        scratch,
        |caller, work, rw, path| run_c(caller, work, rw, &[], &prog, &["write", path], b""),
        WriteFailures {
            read_only_paths: &["/escaped", "/etc/passwd"],
            read_only: &|path| format!("open {path}: Read-only file system\n"),
            not_found: &|path| format!("open {path}: No such file or directory\n"),
            read_only_workdir: true,
        },
    );
}
