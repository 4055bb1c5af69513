//! The shipped `cpp` profile: a C++ program using iostream, std::sort and clock()
//! reads stdin and writes stdout, dynamically or statically linked against libstdc++;
//! deep recursion fits the profile's 256MiB stack; fork, exec and socket are violations
//! and files can be written only in a --bind-rw work directory.

mod common;
use common::*;
use std::path::Path;

/// `moat run --profile cpp --bind(-rw) WORKDIR --cwd WORKDIR EXTRA -- PROG ARGS`.
fn run_cpp(
    caller: Caller,
    workdir: &Path,
    rw: bool,
    extra: &[&str],
    prog: &Path,
    args: &[&str],
    stdin: &[u8],
) -> Run {
    let command = [&[path_str(prog)], args].concat();
    run_in_workdir(caller, "cpp", workdir, rw, extra, &command, stdin)
}

#[test]
fn cpp_iostream_program_reads_stdin_and_writes_stdout() {
    let work = scratch();
    for prog in [fixture("lang_cpp_sort"), static_fixture("lang_cpp_sort")] {
        for caller in callers() {
            let run = run_cpp(caller, work.path(), false, &[], &prog, &[], b"5 -2\n9 3\n");
            assert_run(&run, "ok", 0, "-2 3 5 9\nsum 15\niostream ok\nclock ok\n");
        }
    }
}

#[test]
fn cpp_profile_gives_a_big_stack_for_deep_recursion() {
    let work = scratch();
    let prog = fixture("lang_cpp_sort");
    for caller in callers() {
        let run = run_cpp(caller, work.path(), false, &[], &prog, &["1000000"], b"7\n");
        assert_run(
            &run,
            "ok",
            0,
            "7\nsum 7\niostream ok\nclock ok\ndepth 1000000\n",
        );
        // With an ordinary 8MiB stack the same recursion overflows.
        let run = run_cpp(
            caller,
            work.path(),
            false,
            &["--stack", "8MiB"],
            &prog,
            &["1000000"],
            b"7\n",
        );
        assert_eq!(
            (run.status(), run.code, run.report["signal"].clone()),
            ("signaled", 128 + 11, serde_json::json!(11)),
            "{run:#?}"
        );
    }
}

#[test]
fn cpp_fork_exec_and_socket_are_violations() {
    assert_escape_fixture_violations("cpp");
}

#[test]
fn cpp_writes_only_inside_a_writable_workdir() {
    let prog = fixture("lang_c_escape");
    assert_writes_only_inside_a_writable_workdir(
        scratch,
        |caller, work, rw, path| run_cpp(caller, work, rw, &[], &prog, &["write", path], b""),
        WriteFailures {
            read_only_paths: &["/escaped"],
            read_only: &|path| format!("open {path}: Read-only file system\n"),
            not_found: &|path| format!("open {path}: No such file or directory\n"),
            read_only_workdir: false,
        },
    );
}
