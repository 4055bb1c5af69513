//! The shipped `python` profile: a CPython 3 script reads stdin and uses the stdlib
//! (json, re, collections, math, itertools) the way a user runs it (`python3
//! solution.py` from the work dir, with or without -I -B); the profile's environment
//! gives -I -B isolation (no bytecode written, no user site, the script's directory
//! does not shadow the stdlib, UTF-8 stdio); socket fails with EACCES, subprocess,
//! os.system and os.fork are violations, files can be written only in a --bind-rw
//! work directory.

mod common;
use common::*;
use std::path::Path;

/// A work dir holding the solution script (tests/fixtures/lang_py_solve.py).
fn workdir() -> tempfile::TempDir {
    let work = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang_py_solve.py");
    std::fs::copy(src, work.path().join("solution.py")).unwrap();
    work
}

/// `moat run --profile python --bind(-rw) WORK --cwd WORK -- python3 ARGS`.
fn run_py(caller: Caller, work: &Path, rw: bool, args: &[&str], stdin: &[u8]) -> Run {
    let command = [&["python3"], args].concat();
    run_in_workdir(caller, "python", work, rw, &[], &command, stdin)
}

/// Runs `python3 solution.py ARGS` (no stdin, the work dir bound read-only) as every
/// caller, asserts the verdict, and returns the runs.
#[track_caller]
fn assert_solution_runs(args: &[&str], status: &str, code: i32, stdout: &str) -> Vec<Run> {
    let mut runs = Vec::new();
    let work = workdir();
    let args = [&["solution.py"], args].concat();
    for caller in callers() {
        let run = run_py(caller, work.path(), false, &args, b"");
        assert_run(&run, status, code, stdout);
        runs.push(run);
    }
    runs
}

const INPUT: &[u8] = br#"["b", "a", "12", "b", "18", "30"]"#;
const EXPECTED: &str = "[[\"12\",1],[\"18\",1],[\"30\",1],[\"a\",1],[\"b\",2]]\n\
pairs 3\ngcd 6 sqrt 7\nh\u{e9}llo w\u{f6}rld \u{2713}\n\
bytecode True nousersite 1 safepath True\n";

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_stdlib_solution_reads_stdin() {
    let work = workdir();
    for caller in callers() {
        let run = run_py(caller, work.path(), false, &["solution.py"], INPUT);
        assert_run(&run, "ok", 0, EXPECTED);
        // The same with the isolation flags given explicitly.
        let run = run_py(
            caller,
            work.path(),
            false,
            &["-I", "-B", "solution.py"],
            INPUT,
        );
        assert_run(&run, "ok", 0, EXPECTED);
    }
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_script_dir_does_not_shadow_the_stdlib_and_no_bytecode_is_written() {
    let work = workdir();
    // A json.py next to the solution would replace the stdlib's without safe_path.
    std::fs::write(
        work.path().join("json.py"),
        "raise SystemExit('shadowed')\n",
    )
    .unwrap();
    // A helper the script imports explicitly: with -B no __pycache__ appears even in
    // a writable work dir.
    std::fs::write(work.path().join("helper.py"), "VALUE = 41\n").unwrap();
    std::fs::write(
        work.path().join("uses_helper.py"),
        "import sys\nsys.path.insert(0, '.')\nimport helper\nprint(helper.VALUE + 1)\n",
    )
    .unwrap();
    for caller in callers() {
        let run = run_py(caller, work.path(), true, &["solution.py"], INPUT);
        assert_run(&run, "ok", 0, EXPECTED);
        let run = run_py(caller, work.path(), true, &["uses_helper.py"], b"");
        assert_run(&run, "ok", 0, "42\n");
        assert!(
            !work.path().join("__pycache__").exists(),
            "bytecode was written in the work dir"
        );
    }
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_exception_is_nonzero_exit_1() {
    for run in assert_solution_runs(&["fail"], "nonzero_exit", 1, "") {
        assert!(run.stderr.contains("ValueError: wrong answer"), "{run:#?}");
    }
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_deep_recursion_works() {
    assert_solution_runs(&["deep", "200000"], "ok", 0, "depth 200000\n");
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_socket_fails_with_eacces() {
    assert_solution_runs(&["socket"], "ok", 0, "socket: PermissionError 13\n");
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_subprocess_system_and_fork_are_violations() {
    let work = workdir();
    for caller in callers() {
        // subprocess first makes its error-reporting pipe; os.system and os.fork clone.
        for (mode, syscall) in [
            ("subprocess", "pipe2"),
            ("system", "clone"),
            ("fork", "clone"),
        ] {
            let run = run_py(caller, work.path(), false, &["solution.py", mode], b"");
            assert_violation(&run, "", syscall, mode);
        }
    }
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_writes_only_inside_a_writable_workdir() {
    assert_writes_only_inside_a_writable_workdir(
        workdir,
        |caller, work, rw, path| run_py(caller, work, rw, &["solution.py", "write", path], b""),
        WriteFailures {
            read_only_paths: &["/escaped", "/usr/lib/escaped"],
            read_only: &|_| "write: OSError 30 Read-only file system\n".to_string(),
            not_found: &|_| "write: FileNotFoundError 2 No such file or directory\n".to_string(),
            read_only_workdir: true,
        },
    );
}
