//! `moat serve` driven over HTTP as go-judge's clients drive it: the README's compile
//! and run round trip with `copyOutCached`, the interactive `cat` pipe, each status
//! string, file errors, the file store's endpoints, faults answered with their JSON
//! path, the token, a client that hangs up, SIGTERM's drain, and isolation per run on
//! one server, as root and as uid 65534.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(caller: Caller, extra: &[&str]) -> Server {
        let dir = scratch();
        let sock = dir.path().join("moat.sock");
        let listen = format!("unix:{}", sock.display());
        let fixtures = fixture_dir();
        let child = command(caller)
            .args(["serve", "--quiet", "--pre-fork", "2", "--listen", &listen])
            .arg("--src-prefix")
            .arg(&fixtures)
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        Server {
            child,
            sock,
            _dir: dir,
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: moat\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        req += "\r\n";
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        parse_response(&all)
    }

    /// Sends `POST /run` with `body` and leaves the response unread, for tests that act
    /// while the run goes on.
    fn send_run(&self, body: &str) -> UnixStream {
        let mut c = UnixStream::connect(&self.sock).unwrap();
        let req = format!(
            "POST /run HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        c.write_all(req.as_bytes()).unwrap();
        c
    }

    fn run(&self, body: &Value) -> Value {
        let (status, body) = self.call("POST", "/run", &[], body.to_string().as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    fn metrics(&self) -> String {
        String::from_utf8(self.call("GET", "/metrics", &[], b"").1).unwrap()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn parse_response(all: &[u8]) -> (u16, Vec<u8>) {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = String::from_utf8_lossy(&all[..end]);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    (status, all[end + 4..end + 4 + len].to_vec())
}

/// go-judge's integration tests' base command: stdin empty, stdout and stderr collected.
fn base(args: &[&str]) -> Value {
    json!({
        "args": args,
        "env": ["PATH=/usr/bin:/bin"],
        "files": [{"src": "/dev/null"}, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}],
        "cpuLimit": 10_000_000_000u64,
        "clockLimit": 12_000_000_000u64,
        "memoryLimit": 104_857_600u64,
        "procLimit": 50,
    })
}

fn one(cmd: Value) -> Value {
    json!({"cmd": [cmd]})
}

#[test]
fn the_readme_compile_and_run_round_trip() {
    let s = Server::start(Caller::Current, &[]);
    let src = "#include <iostream>\nusing namespace std;\nint main() {\nint a, b;\ncin >> a >> b;\ncout << a + b << endl;\n}";
    let r = s.run(&json!({"cmd": [{
        "args": ["/usr/bin/g++", "a.cc", "-o", "a"],
        "env": ["PATH=/usr/bin:/bin"],
        "files": [{"content": ""}, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}],
        "cpuLimit": 10_000_000_000u64, "memoryLimit": 104_857_600u64, "procLimit": 50,
        "copyIn": {"a.cc": {"content": src}},
        "copyOut": ["stdout", "stderr"],
        "copyOutCached": ["a.cc", "a"]
    }]}));
    let r0 = &r[0];
    assert_eq!(r0["status"], "Accepted", "{r0:#}");
    assert_eq!(r0["exitStatus"], 0);
    assert_eq!(r0["files"], json!({"stdout": "", "stderr": ""}));
    assert!(r0["time"].as_u64().unwrap() > 0 && r0["memory"].as_u64().unwrap() > 0);
    let a = r0["fileIds"]["a"].as_str().unwrap().to_string();
    let acc = r0["fileIds"]["a.cc"].as_str().unwrap().to_string();
    // The store lists both by name and gives the source back.
    let (st, list) = s.call("GET", "/file", &[], b"");
    assert_eq!(st, 200);
    let list: Value = serde_json::from_slice(&list).unwrap();
    assert_eq!((&list[&a], &list[&acc]), (&json!("a"), &json!("a.cc")));
    assert_eq!(
        s.call("GET", &format!("/file/{acc}"), &[], b""),
        (200, src.as_bytes().to_vec())
    );
    // The second request of the README: run the cached binary on "1 1".
    let r = s.run(&json!({"cmd": [{
        "args": ["a"],
        "env": ["PATH=/usr/bin:/bin"],
        "files": [{"content": "1 1"}, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}],
        "cpuLimit": 10_000_000_000u64, "memoryLimit": 104_857_600u64, "procLimit": 50,
        "copyIn": {"a": {"fileId": a}}
    }]}));
    assert_eq!(r[0]["status"], "Accepted", "{r:#}");
    assert_eq!(r[0]["files"], json!({"stdout": "2\n", "stderr": ""}));
    // Deleted once, then gone.
    assert_eq!(s.call("DELETE", &format!("/file/{a}"), &[], b"").0, 200);
    assert_eq!(s.call("DELETE", &format!("/file/{a}"), &[], b"").0, 404);
    assert_eq!(s.call("GET", &format!("/file/{a}"), &[], b"").0, 404);
    // A file posted as multipart comes back as posted.
    let body = b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.txt\"\r\n\r\n3 4\r\n--b0undary--\r\n";
    let (st, id) = s.call(
        "POST",
        "/file",
        &[("Content-Type", "multipart/form-data; boundary=b0undary")],
        body,
    );
    assert_eq!(st, 200);
    let id: String = serde_json::from_slice(&id).unwrap();
    assert_eq!(s.call("GET", &format!("/file/{id}"), &[], b"").1, b"3 4");
    assert!(s.stop().success());
}

#[test]
fn the_readme_interactive_pipe() {
    let s = Server::start(Caller::Current, &[]);
    let r = s.run(&json!({
        "cmd": [{
            "args": ["/bin/cat", "1"], "env": ["PATH=/usr/bin:/bin"],
            "files": [{"content": ""}, null, {"name": "stderr", "max": 10240}],
            "cpuLimit": 1_000_000_000u64, "memoryLimit": 1_048_576u64 * 16, "procLimit": 50,
            "copyIn": {"1": {"content": "TEST 1"}}, "copyOut": ["stderr"]
        }, {
            "args": ["/bin/cat"], "env": ["PATH=/usr/bin:/bin"],
            "files": [null, {"name": "stdout", "max": 10240}, {"name": "stderr", "max": 10240}],
            "cpuLimit": 1_000_000_000u64, "memoryLimit": 1_048_576u64 * 16, "procLimit": 50,
            "copyOut": ["stdout", "stderr"]
        }],
        "pipeMapping": [{"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}}]
    }));
    assert_eq!(r.as_array().unwrap().len(), 2);
    assert_eq!(r[0]["status"], "Accepted", "{r:#}");
    assert_eq!(r[0]["files"], json!({"stderr": ""}));
    assert_eq!(r[1]["status"], "Accepted", "{r:#}");
    assert_eq!(r[1]["files"], json!({"stdout": "TEST 1", "stderr": ""}));
    // A proxied, recorded pipe: what passed is in the writer's files under its name.
    let r = s.run(&json!({
        "cmd": [
            {"args": ["/bin/echo", "ping"], "files": [{"content": ""}, null]},
            {"args": ["/bin/cat"], "files": [null, {"name": "stdout", "max": 100}]}
        ],
        "pipeMapping": [{"in": {"index": 0, "fd": 1}, "out": {"index": 1, "fd": 0}, "proxy": true, "name": "wire", "max": 3}]
    }));
    assert_eq!(r[0]["files"]["wire"], "pin", "{r:#}");
    assert_eq!(r[1]["files"]["stdout"], "ping\n", "{r:#}");
}

#[test]
fn each_status_has_go_judges_string() {
    let s = Server::start(Caller::Current, &[]);
    let fixtures = fixture_dir();
    let unshare = fixture("serve_unshare");
    let sh = |script: &str| base(&["/bin/sh", "-c", script]);
    let with = |mut c: Value, k: &str, v: Value| {
        c[k] = v;
        c
    };
    let cases: Vec<(&str, Value, &str, i64)> = vec![
        ("echo", sh("echo hi"), "Accepted", 0),
        ("exit 3", sh("exit 3"), "Nonzero Exit Status", 3),
        ("SIGSEGV", sh("kill -SEGV $$"), "Signalled", 11),
        (
            "cpu",
            with(sh("while :; do :; done"), "cpuLimit", json!(300_000_000u64)),
            "Time Limit Exceeded",
            9,
        ),
        (
            "clock",
            with(
                with(sh("sleep 5"), "cpuLimit", json!(1_000_000_000u64)),
                "clockLimit",
                json!(300_000_000u64),
            ),
            "Time Limit Exceeded",
            9,
        ),
        (
            "memory",
            with(
                base(&["/usr/bin/python3", "-c", "a = bytearray(200 << 20)"]),
                "memoryLimit",
                json!(64u64 << 20),
            ),
            "Memory Limit Exceeded",
            9,
        ),
        ("output", sh("exec yes"), "Output Limit Exceeded", 9),
        (
            "missing program",
            base(&["/no/such/program"]),
            "Internal Error",
            0,
        ),
        (
            "violation",
            with(
                base(&["./u"]),
                "copyIn",
                json!({"u": {"src": path_str(&unshare)}}),
            ),
            "Dangerous Syscall",
            31,
        ),
        (
            "missing copyOut",
            with(sh("true"), "copyOut", json!(["nothere"])),
            "File Error",
            0,
        ),
        (
            "optional copyOut",
            with(sh("true"), "copyOut", json!(["nothere?"])),
            "Accepted",
            0,
        ),
    ];
    assert!(unshare.starts_with(&fixtures));
    for (what, cmd, status, exit) in cases {
        let r = s.run(&one(cmd));
        let r = &r[0];
        assert_eq!(r["status"], status, "{what}: {r:#}");
        if status != "Internal Error" && status != "Dangerous Syscall" {
            assert_eq!(r["exitStatus"], exit, "{what}: {r:#}");
        }
        match what {
            "echo" => assert_eq!(r["files"]["stdout"], "hi\n"),
            "output" => {
                assert_eq!(r["files"]["stdout"].as_str().unwrap().len(), 10240, "{r:#}");
                assert_eq!(r["fileError"][0]["type"], "CollectSizeExceeded", "{r:#}");
            }
            "missing copyOut" => {
                assert_eq!(
                    r["fileError"],
                    json!([{"name": "nothere", "type": "CopyOutOpen", "message": "open nothere: no such file or directory"}])
                );
                assert_eq!(r["error"], "open nothere: no such file or directory");
            }
            "violation" => {
                assert_eq!(r["files"]["stdout"], "before\n");
                assert_eq!(r["moat"]["violation"]["syscall"], "unshare", "{r:#}");
            }
            "missing program" => assert!(
                r["error"].as_str().unwrap().contains("/no/such/program"),
                "{r:#}"
            ),
            "memory" | "cpu" | "clock" => {
                assert!(r["moat"]["limits"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty()));
            }
            _ => {}
        }
    }
}

#[test]
fn bad_requests_get_a_4xx_with_the_json_path_and_nothing_runs() {
    let s = Server::start(
        Caller::Current,
        &["--auth-token", "s3cret", "--max-body", "4KiB"],
    );
    let auth = [("Authorization", "Bearer s3cret")];
    let post = |body: &str| s.call("POST", "/run", &auth, body.as_bytes());
    let text = |b: Vec<u8>| serde_json::from_slice::<String>(&b).unwrap();
    let (st, b) = post("{");
    assert_eq!(st, 400);
    assert!(text(b).contains("EOF"));
    let (st, b) = post(r#"{"cmd":[{"args":["/bin/true"],"cpuLimit":"1s"}]}"#);
    assert_eq!(st, 400);
    assert!(text(b).starts_with("cmd[0].cpuLimit: "));
    let (st, b) = post(r#"{"cmd":[{"args":["/bin/true"],"files":[{"name":"stdin"}]}]}"#);
    assert_eq!(st, 400);
    assert!(text(b).starts_with("cmd[0].files[0]: "));
    let (st, b) = post(r#"{"cmd":[]}"#);
    assert_eq!((st, text(b)), (400, "no cmd provided".to_string()));
    let (st, b) = post(r#"{"cmd":[{"args":["/bin/cat"],"copyIn":{"x":{"src":"/etc/passwd"}}}]}"#);
    assert_eq!(st, 400);
    let b = text(b);
    assert!(
        b.starts_with("cmd[0].copyIn.x: ") && b.contains("not under --src-prefix"),
        "{b}"
    );
    let (st, b) = post(r#"{"cmd":[{"args":["/bin/cat"],"copyIn":{"x":{"fileId":"NOSUCHID"}}}]}"#);
    assert_eq!(st, 500);
    assert!(text(b).contains("NOSUCHID"));
    // Over --max-body: refused on the header alone, before the body is sent.
    let mut c = UnixStream::connect(&s.sock).unwrap();
    c.write_all(
        b"POST /run HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 10000000\r\n\r\n",
    )
    .unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(parse_response(&all).0, 413);
    // Without the token nothing runs; the public endpoints answer.
    let ok = r#"{"cmd":[{"args":["/bin/true"]}]}"#;
    assert_eq!(s.call("POST", "/run", &[], ok.as_bytes()).0, 401);
    assert_eq!(
        s.call(
            "POST",
            "/run",
            &[("Authorization", "Bearer s3cre7")],
            ok.as_bytes()
        )
        .0,
        401
    );
    assert_eq!(s.call("GET", "/file", &[], b"").0, 401);
    assert!(!s.metrics().contains("moat_runs_total{"), "{}", s.metrics());
    assert_eq!(s.call("GET", "/version", &[], b"").0, 200);
    assert_eq!(s.call("GET", "/healthz", &[], b""), (200, b"ok\n".to_vec()));
    assert_eq!(s.call("GET", "/nowhere", &auth, b"").0, 404);
    // With it, the same request runs.
    assert_eq!(post(ok).0, 200);
    assert!(s
        .metrics()
        .contains("moat_runs_total{status=\"Accepted\"} 1"));
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let out = Command::new(MOAT)
        .args([
            "serve",
            "--quiet",
            "--pre-fork",
            "0",
            "--listen",
            "tcp:0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --auth-token"));
    let out = Command::new(MOAT)
        .args(["serve", "--listen", "udp:x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unix:PATH or tcp:HOST:PORT"));
}

fn leftovers(caller: Caller) {
    let s = Server::start(caller, &[]);
    let prog = fixture("pool_leave");
    for name in ["pool_leave", "pool_leave_net"] {
        let cmd = |what: &str| {
            one(json!({
                "args": ["./p", what],
                "files": [{"content": ""}, {"name": "stdout", "max": 1000}],
                "copyIn": {"p": {"src": path_str(&prog)}},
                "moatProfile": profile(name),
            }))
        };
        let r = s.run(&cmd("leave"));
        assert_eq!(
            r[0]["files"]["stdout"], "tmp 1 work 1 shm 1 socket 1 child 1\n",
            "{caller:?} {name}: {r:#}"
        );
        let r = s.run(&cmd("look"));
        assert_eq!(
            r[0]["files"]["stdout"], "tmp 0 work 0 shm 0 socket 0 processes 2\n",
            "{caller:?} {name}: {r:#}"
        );
    }
    assert!(s.stop().success());
}

#[test]
fn nothing_one_run_leaves_reaches_the_next() {
    for caller in callers() {
        leftovers(caller);
    }
}

fn marked_processes(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(marker))
        .count()
}

#[test]
fn a_client_that_hangs_up_cancels_its_run() {
    let s = Server::start(Caller::Current, &[]);
    let marker = format!("hangup-marker-{}", std::process::id());
    let body = one(base(&["/bin/sh", "-c", &format!("sleep 30; : {marker}")])).to_string();
    let c = s.send_run(&body);
    let deadline = Instant::now() + Duration::from_secs(5);
    while marked_processes(&marker) == 0 {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while marked_processes(&marker) > 0
        || !s
            .metrics()
            .contains("moat_runs_total{status=\"Internal Error\"} 1")
    {
        assert!(
            Instant::now() < deadline,
            "the run went on: {}",
            s.metrics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_running_requests_finish_and_removes_the_socket() {
    let s = Server::start(Caller::Current, &["--drain", "10s"]);
    let sock = s.sock.clone();
    let body = one(base(&["/bin/sleep", "1"])).to_string();
    let mut c = s.send_run(&body);
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    assert!(began.elapsed() < Duration::from_secs(5));
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let (st, b) = parse_response(&all);
    assert_eq!(st, 200);
    let r: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(r[0]["status"], "Accepted");
    assert!(!Path::new(&sock).exists());
}
