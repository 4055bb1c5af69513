//! The shipped `sh` profile: a shell script runs coreutils (and grep, sed, awk)
//! inside the jail, pipelines, command substitution and here-documents included, with
//! sh (dash) and bash; the network is unreachable (socket fails with EACCES); files
//! can be written only in a --bind-rw work directory and the jail's private /tmp,
//! never on the host outside the work dir.

mod common;
use common::*;
use std::path::Path;

/// A work dir holding the script (tests/fixtures/lang_sh_solve.sh) and its input.
fn workdir() -> tempfile::TempDir {
    let work = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang_sh_solve.sh");
    std::fs::copy(src, work.path().join("solution.sh")).unwrap();
    std::fs::write(work.path().join("input.txt"), "b a b\nc b a\nd\n").unwrap();
    work
}

/// `moat run --profile sh --bind(-rw) WORK --cwd WORK -- SHELL ARGS`.
fn run_sh(caller: Caller, work: &Path, rw: bool, shell: &str, args: &[&str], stdin: &[u8]) -> Run {
    let command = [&[shell], args].concat();
    run_in_workdir(caller, "sh", work, rw, &[], &command, stdin)
}

/// Runs `SHELL ARGS` with `stdin` in the work dir (bound read-only) as every caller,
/// and asserts it succeeds printing `stdout`.
#[track_caller]
fn assert_shell_prints(shell: &str, args: &[&str], stdin: &[u8], stdout: &str) {
    let work = workdir();
    for caller in callers() {
        let run = run_sh(caller, work.path(), false, shell, args, stdin);
        assert_run(&run, "ok", 0, stdout);
    }
}

/// What tests/fixtures/lang_sh_solve.sh prints for the work dir's input.txt.
const SOLUTION_PRINTS: &str =
    "      3 b\n      2 a\n      1 c\ntotal 7\nlines 3\n1\nawk 7\ndon\n3,2,1\n";

#[test]
fn sh_script_runs_a_coreutils_pipeline() {
    assert_shell_prints("sh", &["solution.sh"], b"", SOLUTION_PRINTS);
}

#[test]
#[cfg_attr(not(moat_has_bash), ignore = "bash not installed")]
fn bash_script_runs_a_coreutils_pipeline() {
    assert_shell_prints("bash", &["solution.sh"], b"", SOLUTION_PRINTS);
}

/// A pipeline over stdin, and what it prints.
const PIPELINE: [&str; 2] = ["-c", "sort | uniq -c | sort -rn | head -2"];
const PIPELINE_STDIN: &[u8] = b"x\ny\nx\nz\nx\ny\n";
const PIPELINE_PRINTS: &str = "      3 x\n      2 y\n";

#[test]
fn sh_pipeline_reads_stdin() {
    assert_shell_prints("sh", &PIPELINE, PIPELINE_STDIN, PIPELINE_PRINTS);
}

#[test]
#[cfg_attr(not(moat_has_bash), ignore = "bash not installed")]
fn bash_pipeline_reads_stdin() {
    assert_shell_prints("bash", &PIPELINE, PIPELINE_STDIN, PIPELINE_PRINTS);
}

#[test]
fn sh_a_failing_command_gives_its_exit_code() {
    let work = workdir();
    for caller in callers() {
        let run = run_sh(
            caller,
            work.path(),
            false,
            "sh",
            &["-c", "grep -q nothing-like-this input.txt"],
            b"",
        );
        assert_run(&run, "nonzero_exit", 1, "");
    }
}

#[test]
fn sh_network_is_unreachable() {
    let work = workdir();
    for caller in callers() {
        // A native tool run from the script (bound in with --bind): socket() fails
        // with EACCES.
        let prog = fixture("lang_c_escape");
        let script = format!("{} socket; echo rc=$?", path_str(&prog));
        let run = moat_run(
            caller,
            &[
                "--profile",
                "sh",
                "--bind",
                path_str(work.path()),
                "--bind",
                path_str(&prog),
                "--cwd",
                path_str(work.path()),
                "--",
                "sh",
                "-c",
                &script,
            ],
        );
        assert_run(
            &run,
            "ok",
            0,
            "socket returned -1 errno Permission denied\nrc=0\n",
        );
    }
}

#[test]
#[cfg_attr(not(moat_has_bash), ignore = "bash not installed")]
fn bash_dev_tcp_is_unreachable() {
    let work = workdir();
    for caller in callers() {
        // bash's /dev/tcp opens a socket: it fails with EACCES and the script goes on.
        let run = run_sh(
            caller,
            work.path(),
            false,
            "bash",
            &["-c", "echo hi > /dev/tcp/127.0.0.1/9; echo rc=$?"],
            b"",
        );
        assert_run(&run, "ok", 0, "rc=1\n");
        assert!(run.stderr.contains("Permission denied"), "{run:#?}");
    }
}

#[test]
fn sh_writes_only_to_the_workdir_and_a_private_tmp() {
    for caller in callers() {
        let work = workdir();
        let elsewhere = scratch();
        let host_tmp = Path::new("/tmp").join(marker("lang", "sh-tmp"));
        let script = format!(
            "sort input.txt > sorted.txt && echo sorted
             echo x > /escaped || echo root refused
             echo x > /usr/bin/escaped || echo usr refused
             echo x > {elsewhere}/escaped || echo elsewhere refused
             echo x > {tmp} && cat {tmp} && echo tmp private",
            elsewhere = path_str(elsewhere.path()),
            tmp = path_str(&host_tmp),
        );
        let run = run_sh(caller, work.path(), true, "sh", &["-c", &script], b"");
        assert_run(
            &run,
            "ok",
            0,
            "sorted\nroot refused\nusr refused\nelsewhere refused\nx\ntmp private\n",
        );
        assert!(
            run.stderr.contains("/escaped: Read-only file system"),
            "{run:#?}"
        );
        assert_eq!(
            std::fs::read_to_string(work.path().join("sorted.txt")).unwrap(),
            "b a b\nc b a\nd\n"
        );
        assert!(!elsewhere.path().join("escaped").exists());
        assert!(
            !host_tmp.exists(),
            "{} was created on the host",
            host_tmp.display()
        );
        // With the work dir bound read-only (`--bind .`) nothing can be written there.
        let run = run_sh(
            caller,
            work.path(),
            false,
            "sh",
            &["-c", "echo x > out.txt || echo refused"],
            b"",
        );
        assert_run(&run, "ok", 0, "refused\n");
        assert!(!work.path().join("out.txt").exists());
    }
}
