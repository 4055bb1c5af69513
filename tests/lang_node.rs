//! The shipped `node` profile: Node.js runs a script that reads stdin (synchronously and
//! through the event loop), with its worker threads, timers, async file I/O (io_uring
//! refused with ENOSYS, libuv falls back), crypto and WebAssembly; the V8 heap is sized
//! from the memory limit; child_process and the network are stopped.
mod common;
use common::*;
use std::path::Path;

/// The node fixtures, copied where every caller (and the jail's uid 65534) can read
/// them without changing the permissions of the checkout's directories.
fn fixtures() -> String {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(copy_fixtures).clone()
}

fn copy_fixtures() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = fixture_dir().join("node");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("lang2_node_") {
            let tmp = dir.join(format!(
                ".{}.{}",
                name.to_string_lossy(),
                std::process::id()
            ));
            std::fs::copy(entry.path(), &tmp).unwrap();
            std::fs::rename(&tmp, dir.join(&name)).unwrap();
        }
    }
    dir.display().to_string()
}

/// `moat run --profile node --bind FIXTURES --cwd FIXTURES [OPTS] -- node ARGS` as
/// `caller` with `stdin`.
fn run_node(caller: Caller, opts: &[&str], node_args: &[&str], stdin: &[u8]) -> Run {
    let dir = fixtures();
    let mut args = vec!["--profile", "node", "--bind", &dir, "--cwd", &dir];
    args.extend_from_slice(opts);
    args.extend(["--", "node"]);
    args.extend_from_slice(node_args);
    moat_run_stdin(caller, &args, stdin)
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_reads_stdin_synchronously() {
    for caller in callers() {
        let run = run_node(
            caller,
            &[],
            &["lang2_node_sum.js"],
            b"5 1 5\n12345678901234567890 x\n",
        );
        assert_run(&run, "ok", 0, "count=4 sum=12345678901234567901\ntop=5x2\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_event_loop_timers_async_fs_and_crypto() {
    let expected = "olleh|dlrow\ntimer done\nread self: // Reads stdin line\n\
                    random bytes: 16\nsha256: edf1eb932299d2c1\nwasm add: 42\n";
    for caller in callers() {
        // Plain, and with io_uring asked for: libuv's io_uring_setup gets ENOSYS (the
        // core denies io_uring; the profile turns it into an errno) and it falls back.
        for opts in [&[][..], &["--env", "UV_USE_IO_URING=1"][..]] {
            let run = run_node(caller, opts, &["lang2_node_lines.js"], b"hello\nworld\n");
            assert_run(&run, "ok", 0, expected);
        }
    }
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_worker_threads() {
    for caller in callers() {
        let run = run_node(caller, &[], &["lang2_node_workers.js"], b"");
        assert_run(&run, "ok", 0, "total=8000002000000\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_uncaught_error_and_exit_status() {
    for caller in callers() {
        let run = run_node(caller, &[], &["lang2_node_throw.js"], b"");
        assert_run(&run, "nonzero_exit", 1, "before\n");
        assert!(run.stderr.contains("Error: lang2 boom"), "{run:#?}");
        let run = run_node(caller, &[], &["lang2_node_throw.js", "5"], b"");
        assert_run(&run, "nonzero_exit", 5, "before\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_heap_is_sized_from_the_memory_limit() {
    for caller in callers() {
        // V8 gives up at the profile's 384MiB heap and aborts, before the 512MiB limit.
        let run = run_node(caller, &[], &["lang2_node_hog.js"], b"");
        assert_run(&run, "signaled", 128 + libc::SIGABRT, "hoarding\n");
        assert_eq!(run.report["signal"], libc::SIGABRT, "{run:#?}");
        assert!(
            run.stderr.contains("JavaScript heap out of memory"),
            "{run:#?}"
        );
        // A heap flag beyond the limit: the memory limit ends the run.
        let run = run_node(
            caller,
            &[],
            &["--max-old-space-size=2048", "lang2_node_hog.js"],
            b"",
        );
        assert_run(&run, "memory_limit", 137, "hoarding\n");
    }
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_child_process_is_stopped() {
    for caller in callers() {
        // Piped stdio: child_process's socketpair fails with EACCES, the script sees it.
        let run = run_node(caller, &[], &["lang2_node_child.js", "exec"], b"");
        assert_run(&run, "ok", 0, "starting\nexec error EACCES\n");
        // Inherited stdio: the child reaches execve, a violation that ends the jail.
        let run = run_node(caller, &[], &["lang2_node_child.js", "spawn"], b"");
        assert_violation(&run, "starting\n", "execve", "spawn");
    }
}

#[test]
#[cfg_attr(not(moat_has_node), ignore = "node not installed")]
fn node_has_no_network() {
    for caller in callers() {
        let run = run_node(caller, &[], &["lang2_node_net.js"], b"");
        assert_run(&run, "ok", 0, "tcp EACCES\nhttp EACCES\nudp EACCES\n");
    }
}

#[test]
fn node_profile_is_listed() {
    assert_profile_listed("node", "Node.js 20");
}
