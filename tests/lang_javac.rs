//! A full Java judge round in the jail: the shipped `javac` profile compiles the
//! source in a `--bind-rw` work dir (as root also a root-owned 0755 one, through the
//! id-mapped mount), the `java` profile runs the classes on three inputs that come on
//! stdin and in a file read with java.nio, and a solution that runs out of heap ends as
//! `memory_limit` (exit status 137, the JVM's own exit code 3 in the report). A
//! compile error is `nonzero_exit` 1 with javac's diagnostic.

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A work dir holding tests/fixtures/FIXTURE.java as Main.java and a words file.
fn workdir(fixture: &str) -> tempfile::TempDir {
    let dir = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{fixture}.java"));
    std::fs::copy(src, dir.path().join("Main.java")).unwrap();
    std::fs::write(dir.path().join("words.txt"), "the quick brown\nfox jumps\n").unwrap();
    dir
}

fn javac(caller: Caller, dir: &Path, source: &str) -> Run {
    let d = path_str(dir);
    moat_run(
        caller,
        &[
            "--profile",
            "javac",
            "--bind-rw",
            d,
            "--cwd",
            d,
            "--",
            "javac",
            source,
        ],
    )
}

fn java(caller: Caller, dir: &Path, extra: &[&str], args: &[&str], stdin: &[u8]) -> Run {
    let d = path_str(dir);
    let mut argv = vec!["--profile", "java", "--bind", d, "--cwd", d];
    argv.extend_from_slice(extra);
    argv.extend_from_slice(&["--", "java", "Main"]);
    argv.extend_from_slice(args);
    moat_run_stdin(caller, &argv, stdin)
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn a_java_round_compiles_with_javac_runs_three_inputs_and_ends_an_mle_as_memory_limit() {
    for caller in callers() {
        let dir = workdir("lang4_java_round");
        let run = javac(caller, dir.path(), "Main.java");
        assert_run(&run, "ok", 0, "");
        assert!(dir.path().join("Main.class").is_file(), "{caller:?}");
        for (stdin, sum) in [("1 2 3\n", 6), ("40 2", 42), ("", 0)] {
            let run = java(caller, dir.path(), &[], &["words.txt"], stdin.as_bytes());
            assert_run(&run, "ok", 0, &format!("sum={sum} words=5 chars=26\n"));
        }
        for (mode, memory) in [("grow", "128MiB"), ("huge", "128MiB"), ("grow", "48MiB")] {
            let run = java(
                caller,
                dir.path(),
                &["--memory", memory],
                &["words.txt", mode],
                b"7",
            );
            assert_run(&run, "memory_limit", 137, "sum=7 words=5 chars=26\n");
            // Where the JVM itself said so, the report keeps its exit code and says so.
            if run.report["runtime_out_of_memory"] == true {
                assert_eq!(run.report["exit_code"], 3, "{run:#?}");
                assert!(
                    run.stderr.contains("java.lang.OutOfMemoryError"),
                    "{run:#?}"
                );
            } else {
                assert!(run.report["exit_code"].is_null(), "{run:#?}");
            }
        }
    }
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn javac_as_root_writes_into_a_root_owned_work_dir() {
    if !is_root() {
        // The id-mapped mount is the root caller's; a rootless caller owns its dir.
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("moat-javac-root-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    open_up(dir.path());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang4_java_round.java");
    std::fs::copy(src, dir.path().join("Main.java")).unwrap();
    std::fs::set_permissions(
        dir.path().join("Main.java"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let run = javac(Caller::Current, dir.path(), "Main.java");
    assert_run(&run, "ok", 0, "");
    let class = std::fs::metadata(dir.path().join("Main.class")).unwrap();
    // The class file is the directory owner's, as if they had compiled it.
    assert_eq!((class.uid(), class.gid()), (0, 0));
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn a_javac_compile_error_is_nonzero_exit_1_with_the_diagnostic() {
    for caller in callers() {
        let dir = scratch();
        std::fs::write(
            dir.path().join("Main.java"),
            "public class Main { void f() { int x = ; } }\n",
        )
        .unwrap();
        let run = javac(caller, dir.path(), "Main.java");
        assert_eq!((run.status(), run.code), ("nonzero_exit", 1), "{run:#?}");
        assert!(
            run.stderr
                .contains("Main.java:1: error: illegal start of expression"),
            "{}",
            run.stderr
        );
        assert!(!dir.path().join("Main.class").exists());
    }
}

#[test]
fn javac_profile_is_listed() {
    assert_profile_listed("javac", "OpenJDK 17 javac");
}
