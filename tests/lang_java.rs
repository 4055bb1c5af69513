//! The shipped `java` profile: OpenJDK 17 runs a compiled class or jar that reads stdin,
//! with its many threads, a heap sized from the memory limit and a deep main-thread
//! stack; an uncaught exception is `nonzero_exit` 1; starting a process is a violation
//! and the network is unreachable. The fixtures (tests/fixtures/lang2_java_*.java) are
//! compiled with javac on the host; the jail only runs them.
mod common;
use common::*;
use std::path::Path;
use std::process::Command;

const JAVA_HOME: &str = "/usr/lib/jvm/java-17-openjdk-amd64";

/// Compiles tests/fixtures/NAME.java (a class `Main`) into a fresh scratch directory
/// every caller can read, and returns the directory.
fn compile(name: &str) -> tempfile::TempDir {
    let dir = scratch();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.java"));
    let out = Command::new(Path::new(JAVA_HOME).join("bin/javac"))
        .arg("-d")
        .arg(dir.path())
        .arg(&src)
        .output()
        .expect("run javac");
    assert!(
        out.status.success(),
        "javac {} failed: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("Main.class").exists());
    open_up(dir.path());
    dir
}

/// `moat run --profile java --bind DIR --cwd DIR -- java ARGS` as `caller` with `stdin`:
/// how a user runs a submission from its directory.
fn run_java(caller: Caller, dir: &Path, java_args: &[&str], stdin: &[u8]) -> Run {
    let d = path_str(dir);
    let mut args = vec!["--profile", "java", "--bind", d, "--cwd", d, "--", "java"];
    args.extend_from_slice(java_args);
    moat_run_stdin(caller, &args, stdin)
}

/// Compiles tests/fixtures/NAME.java (see `compile`) and runs `check` as every caller
/// with the class directory.
fn with_compiled(name: &str, mut check: impl FnMut(Caller, &Path)) {
    let dir = compile(name);
    for caller in callers() {
        check(caller, dir.path());
    }
}

/// The heap size (MiB) the threads fixture reports on its second line, `heap=NMiB`.
#[track_caller]
fn heap_mib(run: &Run) -> u64 {
    run.stdout
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("heap="))
        .and_then(|h| h.strip_suffix("MiB"))
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("{run:#?}"))
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_class_reads_stdin_and_writes_stdout() {
    with_compiled("lang2_java_sum", |caller, dir| {
        let run = run_java(caller, dir, &["Main"], b"3 1 2\n3\n");
        assert_run(&run, "ok", 0, "count=4 sum=9\n1x1,2x1,3x2\n");
        // The heap flags come from the profile's arguments: nothing on stderr.
        assert_eq!(run.stderr, "", "{run:#?}");
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_jar_runs() {
    let dir = compile("lang2_java_sum");
    let jar = dir.path().join("app.jar");
    let status = Command::new(Path::new(JAVA_HOME).join("bin/jar"))
        .args(["--create", "--main-class", "Main", "--file"])
        .arg(&jar)
        .arg("-C")
        .arg(dir.path())
        .arg("Main.class")
        .status()
        .expect("run jar");
    assert!(status.success());
    open_up(&jar);
    std::fs::remove_file(dir.path().join("Main.class")).unwrap();
    for caller in callers() {
        let run = run_java(caller, dir.path(), &["-jar", "app.jar"], b"10 20 10");
        assert_run(&run, "ok", 0, "count=3 sum=40\n10x2,20x1\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_uncaught_exception_is_nonzero_exit_1() {
    with_compiled("lang2_java_throw", |caller, dir| {
        let run = run_java(caller, dir, &["Main"], b"");
        assert_run(&run, "nonzero_exit", 1, "before\n");
        assert_eq!(run.report["exit_code"], 1, "{run:#?}");
        assert!(
            run.stderr
                .contains("Exception in thread \"main\" java.lang.RuntimeException: lang2 boom"),
            "{run:#?}"
        );
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_system_exit_status_is_reported() {
    with_compiled("lang2_java_exit", |caller, dir| {
        let run = run_java(caller, dir, &["Main", "7"], b"");
        assert_run(&run, "nonzero_exit", 7, "exit 7\n");
        let run = run_java(caller, dir, &["Main", "0"], b"");
        assert_run(&run, "ok", 0, "exit 0\n");
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_many_threads_and_a_heap_sized_from_the_memory_limit() {
    with_compiled("lang2_java_threads", |caller, dir| {
        let run = run_java(caller, dir, &["Main"], b"");
        assert_eq!((run.status(), run.code), ("ok", 0), "{run:#?}");
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{run:#?}");
        assert_eq!(lines[0], "pool=5120001600000 stream=5120001600000");
        // 75% of the profile's 512MiB, less the survivor space the serial GC keeps
        // out of maxMemory(): not the host's RAM.
        let heap = heap_mib(&run);
        assert!((300..=384).contains(&heap), "heap {heap}MiB: {run:#?}");
        // The heap follows the run's memory limit (an argument template).
        let d = path_str(dir);
        let args = [
            "--profile",
            "java",
            "--memory",
            "1GiB",
            "--bind",
            d,
            "--cwd",
            d,
            "--",
            "java",
            "Main",
        ];
        let run = moat_run(caller, &args);
        assert_eq!((run.status(), run.code), ("ok", 0), "{run:#?}");
        let heap = heap_mib(&run);
        assert!(
            (650..=768).contains(&heap),
            "heap {heap}MiB with --memory 1GiB: {run:#?}"
        );
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_deep_recursion_and_a_full_heap_is_memory_limit() {
    with_compiled("lang2_java_deep", |caller, dir| {
        // 100000 frames need the profile's -Xss64m on the main thread; the heap (75% of
        // the 512MiB limit) ends before the memory limit does, and the profile's
        // -XX:+ExitOnOutOfMemoryError makes that the JVM's exit 3: `memory_limit`.
        let run = run_java(caller, dir, &["Main"], b"");
        assert_run(&run, "memory_limit", 137, "depth=100000\n");
        assert_eq!(run.report["exit_code"], 3, "{run:#?}");
        assert_eq!(run.report["runtime_out_of_memory"], true, "{run:#?}");
        assert!(
            run.stderr
                .contains("Terminating due to java.lang.OutOfMemoryError: Java heap space"),
            "{run:#?}"
        );
        // A heap flag on the command line wins over the profile's: the heap ends far
        // below the limit.
        let run = run_java(caller, dir, &["-Xmx64m", "Main"], b"");
        assert_run(&run, "memory_limit", 137, "depth=100000\n");
        assert!(
            run.report["peak_memory_kib"].as_u64().unwrap() < 200 << 10,
            "{run:#?}"
        );
        // So does the user's own -XX:-ExitOnOutOfMemoryError: the program then catches
        // the error itself and goes on.
        let run = run_java(caller, dir, &["-XX:-ExitOnOutOfMemoryError", "Main"], b"");
        assert_run(&run, "ok", 0, "depth=100000\noom after more than 300 MiB\n");
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_heap_beyond_the_memory_limit_ends_by_memory_limit() {
    with_compiled("lang2_java_deep", |caller, dir| {
        let run = run_java(caller, dir, &["-Xmx2g", "Main"], b"");
        assert_run(&run, "memory_limit", 137, "depth=100000\n");
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_cannot_start_a_process() {
    with_compiled("lang2_java_exec", |caller, dir| {
        let run = run_java(caller, dir, &["Main"], b"");
        assert_violation(&run, "starting\n", "execve", "exec");
    });
}

#[test]
#[cfg_attr(not(moat_has_java), ignore = "OpenJDK 17 (java, javac) not installed")]
fn java_has_no_network() {
    with_compiled("lang2_java_net", |caller, dir| {
        // socket() fails with EACCES: the program gets an exception and goes on.
        let run = run_java(caller, dir, &["Main"], b"");
        assert_run(
            &run,
            "ok",
            0,
            "tcp SocketException: Permission denied\nudp BindException: Permission denied\n",
        );
    });
}

#[test]
fn java_profile_is_listed() {
    assert_profile_listed("java", "OpenJDK 17");
}
