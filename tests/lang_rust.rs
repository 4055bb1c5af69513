//! The shipped `rust` profile: a program built with `rustc -O` against std reads stdin,
//! computes (collections, formatting, Instant) and writes stdout; a panic is
//! `nonzero_exit` 101; deep recursion fits the profile's stack; threads, processes and
//! TCP are violations naming the syscall; files can be written only in a --bind-rw
//! work directory.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Compiles tests/fixtures/lang_rust_solve.rs with `rustc -O` (once per source change).
/// No rustc fails the test: a build that finds none marks the tests that need it
/// ignored (`moat_has_rustc`, build.rs), so reaching here without one is a failure.
fn solution() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang_rust_solve.rs");
    let out = fixture_dir().join("lang_rust_solve");
    let fresh = match (std::fs::metadata(&out), std::fs::metadata(&src)) {
        (Ok(o), Ok(s)) => o.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if fresh {
        return out;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    let status = Command::new(&rustc)
        .args(["-O", "--edition", "2021", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("running {rustc:?}: {e}"));
    assert!(status.success(), "rustc -O {} failed", src.display());
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// `moat run --profile rust --bind(-rw) WORKDIR --cwd WORKDIR -- PROG ARGS`.
fn run_rust(
    caller: Caller,
    workdir: &Path,
    rw: bool,
    prog: &Path,
    args: &[&str],
    stdin: &[u8],
) -> Run {
    let command = [&[path_str(prog)], args].concat();
    run_in_workdir(caller, "rust", workdir, rw, &[], &command, stdin)
}

#[test]
#[cfg_attr(not(moat_has_rustc), ignore = "rustc not installed")]
fn rust_std_program_reads_stdin_and_writes_stdout() {
    let prog = solution();
    let work = scratch();
    for caller in callers() {
        let run = run_rust(
            caller,
            work.path(),
            false,
            &prog,
            &[],
            b"pear 3 apple\npear -10\n",
        );
        assert_run(
            &run,
            "ok",
            0,
            "words 5\n-10 1\n3 1\napple 1\npear 2\nsum -7\nclock ok\n",
        );
    }
}

#[test]
#[cfg_attr(not(moat_has_rustc), ignore = "rustc not installed")]
fn rust_panic_is_nonzero_exit_101() {
    let prog = solution();
    let work = scratch();
    for caller in callers() {
        let run = run_rust(caller, work.path(), false, &prog, &["panic"], b"");
        assert_run(&run, "nonzero_exit", 101, "");
        assert!(run.stderr.contains("the solution gave up"), "{run:#?}");
    }
}

#[test]
#[cfg_attr(not(moat_has_rustc), ignore = "rustc not installed")]
fn rust_deep_recursion_fits_the_profile_stack() {
    let prog = solution();
    let work = scratch();
    for caller in callers() {
        let run = run_rust(caller, work.path(), false, &prog, &["deep", "1000000"], b"");
        assert_run(&run, "ok", 0, "depth 1000000\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_rustc), ignore = "rustc not installed")]
fn rust_threads_processes_and_tcp_are_violations() {
    let prog = solution();
    let work = scratch();
    for caller in callers() {
        // std::thread::spawn and std::process::Command both clone (Command through
        // posix_spawn's CLONE_VFORK); TcpStream::connect starts with socket.
        for (mode, syscall) in [("thread", "clone"), ("spawn", "clone"), ("tcp", "socket")] {
            let run = run_rust(caller, work.path(), false, &prog, &[mode], b"");
            assert_violation(&run, "", syscall, mode);
        }
    }
}

#[test]
#[cfg_attr(not(moat_has_rustc), ignore = "rustc not installed")]
fn rust_writes_only_inside_a_writable_workdir() {
    let prog = solution();
    assert_writes_only_inside_a_writable_workdir(
        scratch,
        |caller, work, rw, path| run_rust(caller, work, rw, &prog, &["write", path], b""),
        WriteFailures {
            read_only_paths: &["/escaped"],
            read_only: &|path| format!("write {path}: ReadOnlyFilesystem\n"),
            not_found: &|path| format!("write {path}: NotFound\n"),
            read_only_workdir: true,
        },
    );
}
