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

/// The interpreter the profile's PATH finds, None when there is none.
fn python3() -> Option<&'static str> {
    ["/usr/local/bin/python3", "/usr/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

macro_rules! python_or_skip {
    () => {
        if python3().is_none() {
            eprintln!("SKIPPED: python3 not installed");
            return;
        }
    };
}

/// A work dir holding the solution script (tests/fixtures/lang_py_solve.py).
fn workdir() -> tempfile::TempDir {
    let work = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang_py_solve.py");
    std::fs::copy(src, work.path().join("solution.py")).unwrap();
    work
}

/// `moat run --profile python --bind(-rw) WORK --cwd WORK -- python3 ARGS`.
fn run_py(caller: Caller, work: &Path, rw: bool, args: &[&str], stdin: &[u8]) -> Run {
    let mut all = vec![
        "--profile",
        "python",
        if rw { "--bind-rw" } else { "--bind" },
        path_str(work),
        "--cwd",
        path_str(work),
        "--",
        "python3",
    ];
    all.extend_from_slice(args);
    moat_run_stdin(caller, &all, stdin)
}

const INPUT: &[u8] = br#"["b", "a", "12", "b", "18", "30"]"#;
const EXPECTED: &str = "[[\"12\",1],[\"18\",1],[\"30\",1],[\"a\",1],[\"b\",2]]\n\
pairs 3\ngcd 6 sqrt 7\nh\u{e9}llo w\u{f6}rld \u{2713}\n\
bytecode True nousersite 1 safepath True\n";

#[test]
fn python_stdlib_solution_reads_stdin() {
    python_or_skip!();
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
fn python_script_dir_does_not_shadow_the_stdlib_and_no_bytecode_is_written() {
    python_or_skip!();
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
fn python_exception_is_nonzero_exit_1() {
    python_or_skip!();
    let work = workdir();
    for caller in callers() {
        let run = run_py(caller, work.path(), false, &["solution.py", "fail"], b"");
        assert_run(&run, "nonzero_exit", 1, "");
        assert!(run.stderr.contains("ValueError: wrong answer"), "{run:#?}");
    }
}

#[test]
fn python_deep_recursion_works() {
    python_or_skip!();
    let work = workdir();
    for caller in callers() {
        let run = run_py(
            caller,
            work.path(),
            false,
            &["solution.py", "deep", "200000"],
            b"",
        );
        assert_run(&run, "ok", 0, "depth 200000\n");
    }
}

#[test]
fn python_socket_fails_with_eacces() {
    python_or_skip!();
    let work = workdir();
    for caller in callers() {
        let run = run_py(caller, work.path(), false, &["solution.py", "socket"], b"");
        assert_run(&run, "ok", 0, "socket: PermissionError 13\n");
    }
}

#[test]
fn python_subprocess_system_and_fork_are_violations() {
    python_or_skip!();
    let work = workdir();
    for caller in callers() {
        // subprocess first makes its error-reporting pipe; os.system and os.fork clone.
        for (mode, syscall) in [
            ("subprocess", "pipe2"),
            ("system", "clone"),
            ("fork", "clone"),
        ] {
            let run = run_py(caller, work.path(), false, &["solution.py", mode], b"");
            assert_run(&run, "violation", 159, "");
            assert_eq!(
                run.report["violation"]["syscall"], syscall,
                "{mode}: {run:#?}"
            );
            assert_eq!(run.report["violation"]["arch"], "x86_64", "{run:#?}");
        }
    }
}

#[test]
fn python_writes_only_inside_a_writable_workdir() {
    python_or_skip!();
    for caller in callers() {
        let work = workdir();
        let elsewhere = scratch();
        let run = run_py(
            caller,
            work.path(),
            true,
            &["solution.py", "write", "out.txt"],
            b"",
        );
        assert_run(&run, "ok", 0, "wrote out.txt\n");
        assert_eq!(
            std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
            "escaped\n"
        );
        for path in ["/escaped", "/usr/lib/escaped"] {
            let run = run_py(
                caller,
                work.path(),
                true,
                &["solution.py", "write", path],
                b"",
            );
            assert_run(
                &run,
                "nonzero_exit",
                1,
                "write: OSError 30 Read-only file system\n",
            );
        }
        let target = elsewhere.path().join("escaped");
        let run = run_py(
            caller,
            work.path(),
            true,
            &["solution.py", "write", path_str(&target)],
            b"",
        );
        assert_run(
            &run,
            "nonzero_exit",
            1,
            "write: FileNotFoundError 2 No such file or directory\n",
        );
        assert!(!target.exists(), "{} was created", target.display());
        let run = run_py(
            caller,
            work.path(),
            false,
            &["solution.py", "write", "ro.txt"],
            b"",
        );
        assert_run(
            &run,
            "nonzero_exit",
            1,
            "write: OSError 30 Read-only file system\n",
        );
    }
}
