//! Managed runtimes that run out of the memory they were given end as `memory_limit`,
//! every time (10 runs each, as root with a cgroup and rootless without): a Java
//! program filling its heap or asking for one array beyond it (the JVM exits 3 under
//! the profile's -XX:+ExitOnOutOfMemoryError), a Python program growing past the limit
//! (ended by the cgroup or the monitor; at 3 MiB too, below what the interpreter needs)
//! or asking for more than the kernel grants
//! (MemoryError: the profile's sitecustomize exits 3). A MemoryError the program
//! catches stays its own business, and other exit codes stay `nonzero_exit`.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const REPEAT: usize = 10;

#[track_caller]
fn assert_mle(run: &Run, stdout: &str, runtime_word: &str) {
    assert_run(run, "memory_limit", 137, stdout);
    if run.report["runtime_out_of_memory"] == true {
        assert_eq!(run.report["exit_code"], 3, "{run:#?}");
        assert!(run.stderr.contains(runtime_word), "{run:#?}");
    }
}

#[test]
#[cfg_attr(not(moat_has_python), ignore = "python3 not installed")]
fn python_out_of_memory_is_memory_limit_every_time() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang4_py_hog.py");
    let dir = scratch();
    std::fs::copy(&script, dir.path().join("hog.py")).unwrap();
    let d = path_str(dir.path());
    let hog = |caller: Caller, memory: &str, mode: &str| {
        let args = [
            "--profile",
            "python",
            "--bind",
            d,
            "--cwd",
            d,
            "--memory",
            memory,
        ];
        moat_run(
            caller,
            &[&args[..], &["--", "python3", "hog.py", mode]].concat(),
        )
    };
    for caller in callers() {
        for mode in ["grow", "huge"] {
            for _ in 0..REPEAT {
                assert_mle(&hog(caller, "64MiB", mode), "start\n", "MemoryError");
            }
            // Below what the interpreter itself needs (3 MiB): ended before or after
            // it printed, but ended by the limit, every time.
            for _ in 0..REPEAT {
                let run = hog(caller, "3MiB", mode);
                assert_eq!(
                    (run.status(), run.code),
                    ("memory_limit", 137),
                    "{caller:?} {mode}: {run:#?}"
                );
            }
        }
        // A MemoryError the program catches is its own business; an exit code
        // other than the profile's is the program's.
        let run = hog(caller, "64MiB", "caught");
        assert_run(&run, "ok", 0, "start\ncaught\n");
        let run = moat_run(
            caller,
            &[
                "--profile",
                "python",
                "--",
                "python3",
                "-c",
                "raise SystemExit(4)",
            ],
        );
        assert_run(&run, "nonzero_exit", 4, "");
    }
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_out_of_memory_is_memory_limit_every_time() {
    let dir = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang4_java_round.java");
    std::fs::copy(src, dir.path().join("Main.java")).unwrap();
    std::fs::write(dir.path().join("w.txt"), "a b\n").unwrap();
    let out = Command::new("javac")
        .arg("-d")
        .arg(dir.path())
        .arg(dir.path().join("Main.java"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    open_up(dir.path());
    let d = path_str(dir.path());
    for caller in callers() {
        for (mode, memory) in [("grow", "96MiB"), ("huge", "96MiB"), ("grow", "40MiB")] {
            for _ in 0..REPEAT {
                let run = moat_run_stdin(
                    caller,
                    &[
                        "--profile",
                        "java",
                        "--bind",
                        d,
                        "--cwd",
                        d,
                        "--memory",
                        memory,
                        "--",
                        "java",
                        "Main",
                        "w.txt",
                        mode,
                    ],
                    b"1",
                );
                assert_mle(
                    &run,
                    "sum=1 words=2 chars=4\n",
                    "java.lang.OutOfMemoryError",
                );
            }
        }
        // System.exit with another code is the program's.
        let run = moat_run_stdin(
            caller,
            &[
                "--profile",
                "java",
                "--bind",
                d,
                "--cwd",
                d,
                "--",
                "java",
                "Main",
                "w.txt",
            ],
            b"",
        );
        assert_run(&run, "ok", 0, "sum=0 words=2 chars=4\n");
    }
}
