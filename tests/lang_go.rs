//! The shipped `go` profile: a `go build` binary (static with CGO_ENABLED=0, and the
//! default cgo build linked to glibc when the toolchain has cgo) reads stdin, sums with
//! goroutines over a channel on several OS threads and writes stdout; a panic is
//! `nonzero_exit` 2 and os.Exit codes pass through; time.Sleep works (the epoll
//! netpoller); os/exec is a violation naming clone (no CLONE_THREAD) and net.Dial fails
//! with "socket: permission denied"; the processes limit bounds the runtime's threads.
//! The fixture (tests/fixtures/lang3_go_sum.go) is built with `go` on the host; the jail
//! only runs it.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The builds of lang3_go_sum.go, made once per test binary.
struct Builds {
    /// (what, path): "static" (CGO_ENABLED=0) and, when cgo is on, "cgo".
    progs: Vec<(&'static str, PathBuf)>,
}

/// Builds the fixture with `go build`, with GOCACHE and GOPATH in a scratch directory
/// removed afterwards (nothing of the host's user is touched), and moves the programs
/// into the fixture directory every caller can read. Go missing fails the test: a
/// build that finds none marks the tests that need it ignored (`moat_has_go`, build.rs),
/// so reaching here without it is a failure.
fn builds() -> &'static Builds {
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    BUILDS.get_or_init(|| {
        let dir = scratch();
        let go = |cgo: Option<&str>| {
            let mut cmd = Command::new("go");
            cmd.current_dir(dir.path())
                .env("GOCACHE", dir.path().join("gocache"))
                .env("GOPATH", dir.path().join("gopath"))
                .env("GOFLAGS", "")
                .env("GOTOOLCHAIN", "local")
                .env_remove("GO111MODULE");
            if let Some(v) = cgo {
                cmd.env("CGO_ENABLED", v);
            }
            cmd
        };
        let cgo_on = match go(None).args(["env", "CGO_ENABLED"]).output() {
            Ok(out) => {
                assert!(out.status.success(), "go env: {out:?}");
                String::from_utf8_lossy(&out.stdout).trim() == "1"
            }
            Err(e) => panic!("running go (looked up on PATH): {e}"),
        };
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lang3_go_sum.go");
        let mut progs = vec![("static", Some("0"))];
        if cgo_on {
            progs.push(("cgo", None));
        }
        let progs = progs
            .into_iter()
            .map(|(what, cgo)| {
                let out_path = dir.path().join(format!("lang3_go_sum_{what}"));
                let out = go(cgo)
                    .args(["build", "-o"])
                    .arg(&out_path)
                    .arg(&src)
                    .output()
                    .expect("run go build");
                assert!(
                    out.status.success(),
                    "go build ({what}) {} failed: {}",
                    src.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                let dst = fixture_dir().join(format!("lang3_go_sum_{what}"));
                let tmp = dst.with_extension(format!("tmp{}", std::process::id()));
                std::fs::copy(&out_path, &tmp).unwrap();
                std::fs::rename(&tmp, &dst).unwrap();
                (what, dst)
            })
            .collect::<Vec<_>>();
        // A static build must really be static, and the cgo one (the fixture imports
        // net, whose resolver links libc when cgo is on) dynamic: both kinds of
        // program are covered.
        for (what, path) in &progs {
            let elf = std::fs::read(path).unwrap();
            let dynamic = elf.windows(b"ld-linux".len()).any(|w| w == b"ld-linux");
            assert_eq!(dynamic, *what == "cgo", "{what} build {}", path.display());
        }
        Builds { progs }
    })
}

/// Runs `check(what, prog, caller)` for every build of the fixture (see `builds`) and
/// every caller.
fn for_each_build(mut check: impl FnMut(&str, &Path, Caller)) {
    for (what, prog) in &builds().progs {
        for caller in callers() {
            check(what, prog, caller);
        }
    }
}

/// `moat run --profile go EXTRA -- PROG ARGS` as `caller` with `stdin`.
fn run_go(caller: Caller, extra: &[&str], prog: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut all = vec!["--profile", "go"];
    all.extend_from_slice(extra);
    all.extend_from_slice(&["--", path_str(prog)]);
    all.extend_from_slice(args);
    moat_run_stdin(caller, &all, stdin)
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_goroutines_sum_stdin() {
    // 20000 numbers, some negative, over several lines: the 4 goroutines each sum a
    // quarter and send it over the channel.
    let nums: Vec<i64> = (1..=20000)
        .map(|i| if i % 3 == 0 { -i } else { i * 7 })
        .collect();
    let expected: i64 = nums.iter().sum();
    let mut input = String::new();
    for chunk in nums.chunks(10) {
        let line: Vec<String> = chunk.iter().map(|n| n.to_string()).collect();
        input.push_str(&line.join(" "));
        input.push('\n');
    }
    for_each_build(|what, prog, caller| {
        let run = run_go(caller, &[], prog, &[], input.as_bytes());
        assert_run(&run, "ok", 0, &format!("count 20000 sum {expected}\n"));
        assert_eq!(run.stderr, "", "{what}: {run:#?}");
    });
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_panic_is_nonzero_exit_2() {
    for_each_build(|what, prog, caller| {
        let run = run_go(caller, &[], prog, &["panic"], b"");
        assert_run(&run, "nonzero_exit", 2, "");
        assert!(
            run.stderr.contains("panic: the solution gave up"),
            "{what}: {run:#?}"
        );
        assert!(
            run.stderr.contains("goroutine 1 [running]"),
            "{what}: {run:#?}"
        );
    });
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_exit_code_passes_through() {
    for_each_build(|_, prog, caller| {
        let run = run_go(caller, &[], prog, &["exit"], b"");
        assert_run(&run, "nonzero_exit", 7, "leaving with 7\n");
    });
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_timers_wait_in_the_netpoller() {
    // time.Sleep parks the goroutine on a timer; the runtime waits in epoll_pwait and
    // creates its netpoller (epoll_create1, pipe2) on the way.
    for_each_build(|_, prog, caller| {
        let run = run_go(caller, &[], prog, &["sleep"], b"");
        assert_run(&run, "ok", 0, "slept\n");
        let wall = run.report["wall_time_ms"].as_u64().unwrap();
        assert!(wall >= 50, "slept 50ms in {wall}ms: {run:#?}");
    });
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_exec_is_a_violation_naming_clone() {
    // exec.Command(...).Output() forks with clone(CLONE_VM|CLONE_VFORK|SIGCHLD): no
    // CLONE_THREAD, so the profile's clone rule does not allow it. Nothing is printed:
    // the run ends at the clone, before any execve.
    for_each_build(|what, prog, caller| {
        let run = run_go(caller, &[], prog, &["exec"], b"");
        assert_violation(&run, "", "clone", what);
        let v = &run.report["violation"];
        let flags = v["args"][0].as_u64().unwrap();
        assert_eq!(flags & libc::CLONE_THREAD as u64, 0, "{what}: {run:#?}");
        assert_ne!(flags & libc::CLONE_VM as u64, 0, "{what}: {run:#?}");
        assert!(!run.stderr.contains("escaped"), "{what}: {run:#?}");
    });
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_dial_fails_with_permission_denied() {
    // net.Dial's socket() fails with EACCES; the program sees the error and exits 4.
    for_each_build(|_, prog, caller| {
        let run = run_go(caller, &[], prog, &["dial"], b"");
        assert_run(
            &run,
            "nonzero_exit",
            4,
            "dial: dial tcp 127.0.0.1:80: socket: permission denied\n",
        );
        assert!(run.report["violation"].is_null(), "{run:#?}");
    });
}

#[test]
#[cfg_attr(not(moat_has_go), ignore = "go not installed")]
fn go_threads_are_bounded_by_the_processes_limit() {
    // With --processes 1 the jail's init and the program's main thread are all there
    // is room for: the runtime's first extra thread (sysmon, before main.main) fails
    // with EAGAIN and Go dies with its own fatal error (exit 2), for both callers
    // (cgroup pids.max as root, RLIMIT_NPROC in the user namespace otherwise).
    for_each_build(|what, prog, caller| {
        let run = run_go(caller, &["--processes", "1"], prog, &[], b"1 2\n");
        assert_run(&run, "nonzero_exit", 2, "");
        let said = if what == "cgo" {
            "runtime/cgo: pthread_create failed: Resource temporarily unavailable"
        } else {
            "runtime: failed to create new OS thread"
        };
        assert!(run.stderr.contains(said), "{what}: {run:#?}");
    });
}

#[test]
fn go_profile_is_listed_and_plans_threads_only_clone() {
    let out = command(Caller::Current).arg("profiles").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.split_whitespace().next() == Some("go")),
        "{listing}"
    );
    // The plan of any program shows the composed rules: clone only with CLONE_THREAD
    // (0x10000), socket with EACCES, the Go environment.
    let out = command(Caller::Current)
        .args(["plan", "--profile", "go", "--", "/bin/true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let plan = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        plan.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in\n{plan}"))
            .to_string()
    };
    assert!(
        line("clone").contains("when arg0 & 0x10000 == 0x10000"),
        "{plan}"
    );
    assert!(line("socket").contains("errno EACCES"), "{plan}");
    assert!(plan.contains("GOMAXPROCS=4"), "{plan}");
    assert!(
        !plan.lines().any(|l| l.trim_start().starts_with("wait4 ")),
        "{plan}"
    );
}
