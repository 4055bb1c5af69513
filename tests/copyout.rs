//! Copy-out and copy-in cannot be turned against the host. The program controls its
//! work dir: it leaves symlinks to host paths, a FIFO, a directory, a terabyte of
//! sparse file, hard links; moat reads none of them outside the work dir, never blocks
//! and never goes past a cap. A file put in from the host must be a regular file that
//! fits; a cached one must be there. Every case runs as root and unprivileged.
mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn exec(caller: Caller, request: &Value) -> Value {
    let mut cmd = command(caller);
    cmd.args(["exec", "-"]);
    let out = spawn_with_stdin(cmd, request.to_string().as_bytes());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `rq_files MODE ARG` under a profile that lets it shape its work dir, taking out
/// `files_out`.
fn shaped(caller: Caller, mode: &str, arg: &str, files_out: Value) -> Value {
    let program = fixture("rq_files");
    let request = json!({"schema": 1, "commands": [{
        "args": [path_str(&program), mode, arg], "profile": profile("rq_files"),
        "stdout": {"collect": "1KiB"}, "files_out": files_out}]});
    let started = Instant::now();
    let response = exec(caller, &request);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{mode}: {:?}",
        started.elapsed()
    );
    response["results"][0].clone()
}

const SYMLINK: &str = "not a regular file: a symlink (symlinks are never followed)";

#[test]
fn a_symlink_to_a_host_path_is_refused_not_followed() {
    for caller in callers() {
        let r = shaped(
            caller,
            "symlink",
            "",
            json!([{"path": "out.txt"}, {"path": "d/passwd"}]),
        );
        assert_eq!(r["stdout"], "0 0\n", "both links were made: {r:#}");
        assert_eq!(r["status"], "file_error", "{r:#}");
        assert_eq!(r["files_out"], json!({}));
        assert_eq!(
            r["file_errors"],
            json!([{"path": "out.txt", "reason": SYMLINK}, {"path": "d/passwd", "reason": SYMLINK}])
        );
    }
}

#[test]
fn a_fifo_never_blocks_and_a_directory_is_no_file() {
    for caller in callers() {
        for (mode, kind) in [("fifo", "a FIFO"), ("dir", "a directory")] {
            let r = shaped(caller, mode, "", json!([{"path": "out.txt"}]));
            assert_eq!(r["stdout"], "0\n", "{r:#}");
            assert_eq!(
                r["file_errors"],
                json!([{"path": "out.txt", "reason": format!("not a regular file: {kind}")}]),
                "{r:#}"
            );
        }
    }
}

#[test]
fn a_huge_sparse_file_is_refused_by_its_size_without_a_read() {
    for caller in callers() {
        let r = shaped(
            caller,
            "sparse",
            "",
            json!([{"path": "out.txt", "max": "1MiB"}]),
        );
        assert_eq!(r["stdout"], "0\n", "{r:#}");
        assert_eq!(
            r["file_errors"],
            json!([{"path": "out.txt", "reason": "too large: 1099511627776 bytes, the cap is 1048576"}])
        );
        // Optional excuses only a missing file, not one over its cap.
        let r = shaped(
            caller,
            "sparse",
            "",
            json!([{"path": "out.txt", "max": "1MiB", "optional": true}]),
        );
        assert_eq!(r["status"], "file_error", "{r:#}");
    }
}

#[test]
fn hard_links_never_reach_outside_the_work_dir() {
    for caller in callers() {
        let r = shaped(
            caller,
            "links",
            "",
            json!([{"path": "h", "optional": true}, {"path": "inner"}]),
        );
        // link(2) to a file of another mount fails with EXDEV: the kernel never lets
        // a host file into the work dir.
        assert_eq!(r["stdout"], format!("-1 {} 0\n", libc::EXDEV), "{r:#}");
        assert_eq!(r["status"], "ok", "{r:#}");
        assert_eq!(r["files_out"], json!({"inner": {"content": "mine\n"}}));
        assert_eq!(r["file_errors"], json!([]));
    }
}

#[test]
fn the_cap_is_exact() {
    for caller in callers() {
        let r = shaped(
            caller,
            "size",
            "1000",
            json!([{"path": "out.txt", "max": 1000}]),
        );
        assert_eq!(r["status"], "ok", "{r:#}");
        assert_eq!(
            r["files_out"]["out.txt"]["content"].as_str().unwrap().len(),
            1000
        );
        let r = shaped(
            caller,
            "size",
            "1001",
            json!([{"path": "out.txt", "max": 1000}]),
        );
        assert_eq!(
            r["file_errors"],
            json!([{"path": "out.txt", "reason": "too large: 1001 bytes, the cap is 1000"}])
        );
        assert_eq!(r["files_out"], json!({}));
    }
}

#[test]
fn a_binary_taken_out_is_base64_and_keeps_its_mode_in_the_cache() {
    for caller in callers() {
        let request = json!({"schema": 1, "commands": [
            {"args": ["/bin/sh", "-c", "printf '\\377\\000\\001' > b; cp /bin/true t; chmod 755 t"],
             "profile": "sh",
             "files_out": [{"path": "b"}, {"path": "t", "cache": "tool"}]},
            {"args": ["./t"], "profile": "default", "files_in": {"t": {"cached": "tool"}}}]});
        let response = exec(caller, &request);
        let r = &response["results"];
        assert_eq!(r[0]["status"], "ok", "{:#}", r[0]);
        assert_eq!(r[0]["files_out"]["b"], json!({"base64": "/wAB"}));
        assert_eq!(
            r[1]["status"], "ok",
            "the cached executable ran: {:#}",
            r[1]
        );
    }
}

#[test]
fn copy_in_refuses_what_it_cannot_have() {
    let dir = scratch();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 3 << 20]).unwrap();
    let fine = dir.path().join("fine");
    std::fs::write(&fine, b"host bytes\n").unwrap();
    open_up(dir.path());
    for caller in callers() {
        let started = Instant::now();
        let request = json!({"schema": 1, "commands": [{
        "args": ["/bin/true"], "workdir_size": "2MiB",
        "files_in": {
            "f": {"host": path_str(&fifo)},
            "m": {"host": path_str(&dir.path().join("missing"))},
            "big": {"host": path_str(&big)},
            "c": {"cached": "nowhere"},
            "inline": {"content": "x".repeat(3 << 20)}
        }}]});
        let response = exec(caller, &request);
        let r = &response["results"][0];
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a FIFO blocked"
        );
        assert_eq!(r["status"], "file_error", "{r:#}");
        assert_eq!(r["exit_code"], Value::Null);
        let reasons: Vec<(String, String)> = r["file_errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().into(),
                    e["reason"].as_str().unwrap().into(),
                )
            })
            .collect();
        let find = |p: &str| {
            reasons
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, r)| r.as_str())
                .unwrap_or("")
        };
        assert!(find("f").contains("is not a regular file"), "{reasons:?}");
        assert!(find("m").contains("is missing"), "{reasons:?}");
        assert!(
            find("big").contains("does not fit the work dir"),
            "{reasons:?}"
        );
        assert_eq!(find("c"), "`nowhere` is not in the cache");
        assert!(
            find("inline").contains("does not fit the work dir"),
            "{reasons:?}"
        );

        // A host file that is readable and fits goes in, and stdin can be read from it.
        let request = json!({"schema": 1, "commands": [{
            "args": ["/bin/cat"], "files_in": {"in.txt": {"host": path_str(&fine)}},
            "stdin": {"file": "in.txt"}, "stdout": {"collect": "1KiB"}}]});
        let r = &exec(caller, &request)["results"][0];
        assert_eq!(
            (r["status"].as_str(), r["stdout"].as_str()),
            (Some("ok"), Some("host bytes\n")),
            "{r:#}"
        );
    }
}

#[test]
fn the_work_dir_is_noexec_but_a_program_put_in_runs() {
    for caller in callers() {
        // What the program writes cannot be run, even when it makes it executable.
        let request = json!({"schema": 1, "commands": [{
            "args": ["/bin/sh", "-c", "cp /bin/true x && chmod 755 x && ./x; echo $?"],
            "profile": "sh", "stdout": {"collect": "1KiB"},
            "stderr": {"collect": "1KiB"}}]});
        let r = &exec(caller, &request)["results"][0];
        assert_eq!(r["stdout"], "126\n", "{r:#}");
        // A file put in with an executable mode is the program.
        let t = std::fs::read("/bin/true").unwrap();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(t);
        let request = json!({"schema": 1, "commands": [{
            "args": ["./t"], "files_in": {"t": {"base64": b64, "mode": "755"}}}]});
        let r = &exec(caller, &request)["results"][0];
        assert_eq!(r["status"], "ok", "{r:#}");
        // Without one it is not.
        let request = json!({"schema": 1, "commands": [{
            "args": ["./t"], "files_in": {"t": {"base64": b64}}}]});
        let r = &exec(caller, &request)["results"][0];
        assert_eq!(r["status"], "setup_error", "{r:#}");
        assert_eq!(r["error"]["kind"], "program_not_executable", "{r:#}");
    }
}

#[test]
fn a_program_put_in_comes_back_as_it_went_in() {
    // It was bound read-only over its name; with the jail gone the bind is gone too,
    // and what is under it is not the program.
    for caller in callers() {
        let request = json!({"schema": 1, "commands": [{
            "args": ["/bin/true"], "profile": "sh",
            "files_in": {"x": {"content": "abc\n", "mode": "755"}},
            "files_out": [{"path": "x"}, {"path": "x2", "optional": true}]}]});
        let r = &exec(caller, &request)["results"][0];
        assert_eq!(r["status"], "ok", "{r:#}");
        assert_eq!(r["files_out"], json!({"x": {"content": "abc\n"}}), "{r:#}");
    }
}

#[test]
fn a_sparse_file_within_a_large_cap_costs_moat_nothing_it_cannot_hold() {
    for caller in callers() {
        let request = json!({"schema": 1, "commands": [{
            "args": ["/bin/sh", "-c", "truncate -s 60G o && echo made"], "profile": "sh",
            "stdout": {"collect": "1KiB"},
            "files_out": [{"path": "o", "max": "1GiB"}]}]});
        let r = &exec(caller, &request)["results"][0];
        assert_eq!(r["stdout"], "made\n", "{r:#}");
        assert_eq!(
            r["file_errors"],
            json!([{"path": "o", "reason": "too large: 64424509440 bytes, the cap is 1073741824"}])
        );
    }
}
