//! The shipped `gcc` profile: gcc/g++ compile and link C and C++ inside the jail
//! (fork + exec of cc1/cc1plus, as, collect2, ld; -pipe and -flto too) into a writable
//! work dir, and the result runs; writes outside the work dir fail; compiler bombs
//! (`#include </dev/urandom>`, a template bomb, a macro bomb, an error flood) end at
//! the profile's limits instead of hanging.
mod common;
use common::*;
use std::path::Path;

/// A fresh work dir (writable by every caller) holding copies of the named fixtures.
fn workdir(sources: &[&str]) -> tempfile::TempDir {
    let dir = scratch();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for name in sources {
        let dst = dir.path().join(name);
        std::fs::copy(fixtures.join(name), &dst).unwrap();
        open_up(&dst);
    }
    dir
}

/// `moat run --profile gcc --bind-rw DIR --cwd DIR -- COMPILER ARGS` as `caller`.
fn compile(caller: Caller, dir: &Path, command: &[&str]) -> Run {
    let d = path_str(dir);
    let mut args = vec!["--profile", "gcc", "--bind-rw", d, "--cwd", d, "--"];
    args.extend_from_slice(command);
    moat_run(caller, &args)
}

/// Runs a program the jail compiled, in a jail of its own (default profile).
fn run_compiled(caller: Caller, program: &Path, stdin: &[u8]) -> Run {
    moat_run_stdin(caller, &["--", path_str(program)], stdin)
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gpp_compiles_and_links_a_cpp_program() {
    for caller in callers() {
        let dir = workdir(&["lang2_gcc_sort.cpp"]);
        for (out, flags) in [
            ("plain", &["-O2"][..]),
            ("piped", &["-O2", "-pipe"][..]),
            ("lto", &["-O2", "-flto"][..]),
        ] {
            let mut cmd = vec!["g++"];
            cmd.extend_from_slice(flags);
            cmd.extend(["-o", out, "lang2_gcc_sort.cpp"]);
            let run = compile(caller, dir.path(), &cmd);
            assert_run(&run, "ok", 0, "");
            assert_eq!(run.stderr, "", "{flags:?}: {run:#?}");
            let built = dir.path().join(out);
            assert!(built.is_file(), "{flags:?}: no {}", built.display());
            let run = run_compiled(caller, &built, b"30 -4 12\n7");
            assert_run(&run, "ok", 0, "-4 7 12 30 sum=45\n");
        }
    }
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_compiles_c_with_libm() {
    for caller in callers() {
        let dir = workdir(&["lang2_gcc_math.c"]);
        let run = compile(
            caller,
            dir.path(),
            &[
                "gcc",
                "-O2",
                "-Wall",
                "-o",
                "math",
                "lang2_gcc_math.c",
                "-lm",
            ],
        );
        assert_run(&run, "ok", 0, "");
        let run = run_compiled(caller, &dir.path().join("math"), b"");
        assert_run(&run, "ok", 0, "sqrt2=1.414214 argc=1\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_compile_error_is_nonzero_exit_1() {
    for caller in callers() {
        let dir = workdir(&["lang2_gcc_error.cpp"]);
        let run = compile(
            caller,
            dir.path(),
            &["g++", "-o", "e", "lang2_gcc_error.cpp"],
        );
        assert_run(&run, "nonzero_exit", 1, "");
        assert!(
            run.stderr
                .contains("error: 'lang2_undeclared' was not declared in this scope"),
            "{run:#?}"
        );
        assert!(!dir.path().join("e").exists());
    }
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_cannot_write_outside_the_work_dir() {
    for caller in callers() {
        let dir = workdir(&["lang2_gcc_math.c"]);
        // The root is read-only; ld cannot create its output there.
        let run = compile(
            caller,
            dir.path(),
            &["gcc", "-o", "/lang2_gcc_out", "lang2_gcc_math.c", "-lm"],
        );
        assert_run(&run, "nonzero_exit", 1, "");
        assert!(
            run.stderr
                .contains("cannot open output file /lang2_gcc_out: Read-only file system"),
            "{run:#?}"
        );
        assert!(!Path::new("/lang2_gcc_out").exists());
    }
}

/// Compiles a bomb with the profile's own limits as every caller and asserts the
/// verdict; returns the runs.
#[track_caller]
fn assert_bomb_ends(source: &str, status: &str, code: i32) -> Vec<Run> {
    let mut runs = Vec::new();
    for caller in callers() {
        let dir = workdir(&[source]);
        let run = compile(caller, dir.path(), &["g++", "-c", "-o", "bomb.o", source]);
        assert_run(&run, status, code, "");
        // Well before the profile's 60s wall-clock limit: the bomb hit a real limit.
        let wall = run.report["wall_time_ms"].as_u64().unwrap();
        assert!(wall < 55_000, "{run:#?}");
        runs.push(run);
    }
    runs
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_include_dev_urandom_ends_by_memory_limit() {
    // The preprocessor buffers the endless file until the 1GiB memory limit.
    assert_bomb_ends("lang2_gcc_urandom.cpp", "memory_limit", 137);
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_template_bomb_ends_by_memory_limit() {
    assert_bomb_ends("lang2_gcc_tbomb.cpp", "memory_limit", 137);
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_macro_bomb_ends_by_memory_limit() {
    assert_bomb_ends("lang2_gcc_mbomb.cpp", "memory_limit", 137);
}

#[test]
#[cfg_attr(not(moat_has_gcc), ignore = "gcc/g++ not installed")]
fn gcc_error_flood_ends_by_output_limit() {
    for run in assert_bomb_ends("lang2_gcc_flood.cpp", "output_limit", 153) {
        // Diagnostics are cut at exactly the profile's 1MiB.
        assert_eq!(
            run.report["output_bytes"],
            serde_json::json!([0, 1 << 20]),
            "{}",
            run.report
        );
    }
}
