//! Requests as a judge sends them (`moat exec`, `moat batch`): a C++ submission
//! compiled in one jail from a source put in, its binary cached and run on three inputs
//! in others; Python and Java solutions the same way; TLE, MLE, OLE and a crash with
//! their verdicts; an interactive problem through recording pipes; pipes that end
//! early, never read or flood; a batch of 200; bad requests named by their JSON path.
//! Every case runs as root and as an unprivileged caller.
mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `moat exec -` as `caller` with `request`: (exit code, the response, stderr).
fn exec(caller: Caller, request: &Value) -> (i32, Value, String) {
    let mut cmd = command(caller);
    cmd.args(["exec", "-"]);
    let out = spawn_with_stdin(cmd, request.to_string().as_bytes());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let response = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "moat exec gave no JSON ({e}): {text:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (
        out.status.code().unwrap_or(-1),
        response,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The response's results, checked to be one per command and the exit status 0.
#[track_caller]
fn results(code: i32, response: &Value, commands: usize) -> Vec<Value> {
    assert_eq!(code, 0, "{response:#}");
    let r = response["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(r.len(), commands, "{response:#}");
    r
}

#[track_caller]
fn assert_result(r: &Value, status: &str, exit_code: Value, stdout: &str) {
    assert!(
        r["status"] == status && r["exit_code"] == exit_code && r["stdout"] == stdout,
        "expected status={status} exit_code={exit_code} stdout={stdout:?}, got {r:#}"
    );
}

const SUM_CPP: &str = r#"#include <iostream>
int main() { long a, b; std::cin >> a >> b; std::cout << a + b << "\n"; return 0; }
"#;

/// A command that runs the binary cached as `bin` on `input`, under the cpp profile.
fn run_cached(input: &str, extra: Value) -> Value {
    let mut c = json!({
        "args": ["./a"], "profile": "cpp",
        "limits": {"cpu_time": "2s", "memory": "256MiB", "wall_time": "10s"},
        "files_in": {"a": {"cached": "bin"}},
        "stdin": {"content": input},
        "stdout": {"collect": "64KiB"}, "stderr": {"collect": "4KiB"}
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

/// The compile command: `src` into `a` with g++ (gcc profile), cached as `bin`.
fn compile(src: &str) -> Value {
    json!({
        "args": ["g++", "-O2", "-o", "a", "main.cpp"], "profile": "gcc",
        "files_in": {"main.cpp": {"content": src}},
        "stdout": {"collect": "64KiB"}, "stderr": {"collect": "64KiB"},
        "files_out": [{"path": "a", "cache": "bin"}]
    })
}

#[test]
fn a_judge_round_compiles_once_and_runs_three_tests() {
    for caller in callers() {
        let inputs = [("1 2\n", "3\n"), ("40 2\n", "42\n"), ("-7 7\n", "0\n")];
        let mut commands = vec![compile(SUM_CPP)];
        for (input, _) in inputs {
            commands.push(run_cached(input, json!({})));
        }
        let request = json!({"schema": 1, "id": "sub-42", "commands": commands});
        let (code, response, _) = exec(caller, &request);
        assert_eq!(response["id"], "sub-42");
        assert_eq!(response["schema"], 1);
        let r = results(code, &response, 4);
        assert_eq!(r[0]["status"], "ok", "{:#}", r[0]);
        assert_eq!(r[0]["files_out"]["a"]["cached"], "bin", "{:#}", r[0]);
        assert!(r[0]["files_out"]["a"]["size"].as_u64().unwrap() > 1000);
        assert_eq!(r[0]["file_errors"], json!([]));
        for (i, (_, want)) in inputs.iter().enumerate() {
            assert_result(&r[i + 1], "ok", json!(0), want);
            assert_eq!(r[i + 1]["stderr"], "");
            // The whole report of `moat run` is there too.
            for key in [
                "cpu_time_ms",
                "wall_time_ms",
                "peak_memory_kib",
                "limits",
                "signal",
            ] {
                assert!(r[i + 1].get(key).is_some(), "{key} missing: {:#}", r[i + 1]);
            }
        }
    }
}

#[test]
fn a_compile_error_is_a_nonzero_exit_with_its_diagnostics_and_no_binary() {
    for caller in callers() {
        let request = json!({"schema": 1, "commands": [
            compile("int main() { return undeclared; }\n"),
            run_cached("1 2\n", json!({})),
        ]});
        let (code, response, _) = exec(caller, &request);
        let r = results(code, &response, 2);
        assert_eq!(r[0]["status"], "nonzero_exit", "{:#}", r[0]);
        assert_eq!(r[0]["exit_code"], 1);
        assert!(
            r[0]["stderr"].as_str().unwrap().contains("undeclared"),
            "{:#}",
            r[0]
        );
        assert_eq!(
            r[0]["file_errors"],
            json!([{"path": "a", "reason": "missing"}])
        );
        // The run step finds no binary: a file_error, and it never started.
        assert_eq!(r[1]["status"], "file_error", "{:#}", r[1]);
        assert_eq!(
            r[1]["file_errors"],
            json!([{"path": "a", "reason": "`bin` is not in the cache"}])
        );
        assert_eq!(r[1]["exit_code"], Value::Null);
    }
}

#[test]
fn tle_mle_ole_and_a_crash_each_get_their_verdict() {
    let spin = "int main() { volatile unsigned long n = 0; for (;;) n++; }\n";
    let mem = r#"#include <cstdlib>
#include <cstring>
int main() { for (int i = 0; i < 64; i++) { char *p = (char *)malloc(16 << 20); if (!p) return 3; memset(p, 1, 16 << 20); } return 0; }
"#;
    let flood = r#"#include <cstdio>
int main() { for (;;) fputs("0123456789abcdef", stdout); }
"#;
    let crash = "int main() { volatile int *p = 0; return *p; }\n";
    for caller in callers() {
        for (src, status, signal) in [
            (spin, "cpu_time_limit", Value::Null),
            (mem, "memory_limit", Value::Null),
            (flood, "output_limit", Value::Null),
            (crash, "signaled", json!(libc::SIGSEGV)),
        ] {
            let run = run_cached(
                "",
                json!({"limits": {"cpu_time": "1s", "memory": "128MiB", "wall_time": "10s"},
                       "stdout": {"collect": "1MiB"}}),
            );
            let request = json!({"schema": 1, "commands": [compile(src), run]});
            let (code, response, _) = exec(caller, &request);
            let r = results(code, &response, 2);
            assert_eq!(r[0]["status"], "ok", "{:#}", r[0]);
            assert_eq!(r[1]["status"], status, "{caller:?} {src}: {:#}", r[1]);
            if status == "signaled" {
                assert_eq!(r[1]["signal"], signal);
            }
            if status == "output_limit" {
                // Cut exactly at the cap, and only whole copies of the pattern up to it.
                let out = r[1]["stdout"].as_str().unwrap();
                assert_eq!(out.len(), 1 << 20);
                assert!(out
                    .as_bytes()
                    .chunks(16)
                    .all(|c| c == &b"0123456789abcdef"[..c.len()]));
            }
        }
    }
}

#[test]
fn a_python_solution_runs_from_a_file_put_in() {
    let src = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n";
    for caller in callers() {
        let mut commands = Vec::new();
        for input in ["1 2\n", "40 2\n", "-7 7\n"] {
            commands.push(json!({
                "args": ["python3", "main.py"], "profile": "python",
                "files_in": {"main.py": {"content": src}},
                "stdin": {"content": input},
                "stdout": {"collect": "1KiB"}, "stderr": {"collect": "4KiB"}
            }));
        }
        let (code, response, _) = exec(caller, &json!({"schema": 1, "commands": commands}));
        let r = results(code, &response, 3);
        for (r, want) in r.iter().zip(["3\n", "42\n", "0\n"]) {
            assert_result(r, "ok", json!(0), want);
        }
    }
}

#[test]
fn a_java_solution_runs_from_a_class_put_in_as_base64() {
    use base64::Engine;
    let dir = scratch();
    let src = dir.path().join("Main.java");
    std::fs::write(
        &src,
        "import java.util.*;\nclass Main { public static void main(String[] a) { Scanner s = new Scanner(System.in); long x = s.nextLong(), y = s.nextLong(); System.out.println(x + y); } }\n",
    )
    .unwrap();
    let javac = std::process::Command::new("javac")
        .arg("-d")
        .arg(dir.path())
        .arg(&src)
        .output()
        .expect("javac is needed (the CI installs openjdk-17-jdk-headless)");
    assert!(javac.status.success(), "{javac:?}");
    let class = std::fs::read(dir.path().join("Main.class")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(class);
    for caller in callers() {
        let mut commands = Vec::new();
        for input in ["1 2\n", "40 2\n", "-7 7\n"] {
            commands.push(json!({
                "args": ["java", "Main"], "profile": "java",
                "limits": {"memory": "512MiB"},
                "files_in": {"Main.class": {"base64": b64}},
                "stdin": {"content": input},
                "stdout": {"collect": "1KiB"}, "stderr": {"collect": "64KiB"}
            }));
        }
        let (code, response, _) = exec(caller, &json!({"schema": 1, "commands": commands}));
        let r = results(code, &response, 3);
        for (r, want) in r.iter().zip(["3\n", "42\n", "0\n"]) {
            assert_result(r, "ok", json!(0), want);
        }
    }
}

/// The guesses and answers of the binary search the guesser makes against the
/// interactor's secrets (`seed`), as they pass through the pipes.
fn transcript(seed: i64, rounds: usize) -> (String, String) {
    let (mut guesses, mut answers) = (String::new(), String::new());
    for r in 0..rounds as i64 {
        let secret = (seed * (r + 7) * 7919) % 1000 + 1;
        let (mut lo, mut hi) = (1, 1000);
        loop {
            let g = (lo + hi) / 2;
            guesses += &format!("{g}\n");
            if g == secret {
                answers += "=\n";
                break;
            }
            if secret < g {
                answers += "<\n";
                hi = g - 1;
            } else {
                answers += ">\n";
                lo = g + 1;
            }
        }
    }
    (guesses, answers)
}

/// Solution and interactor joined both ways through recording pipes.
fn interactive(solution: &[&str], interactor: &[&str], walls: (&str, &str)) -> Value {
    let guesser = fixture("rq_guesser");
    let judge = fixture("rq_interactor");
    let mut sol_args = vec![path_str(&guesser).to_string()];
    sol_args.extend(solution.iter().map(|s| s.to_string()));
    let mut int_args = vec![path_str(&judge).to_string()];
    int_args.extend(interactor.iter().map(|s| s.to_string()));
    json!({"schema": 1, "id": "interactive",
        "commands": [
            {"args": sol_args, "profile": "c", "limits": {"wall_time": walls.0},
             "stdin": {"pipe": "to_sol"}, "stdout": {"pipe": "to_int"}},
            {"args": int_args, "profile": "c", "limits": {"wall_time": walls.1},
             "stdin": {"pipe": "to_int"}, "stdout": {"pipe": "to_sol"},
             "stderr": {"collect": "4KiB"}}],
        "pipes": [{"name": "to_int", "record": "64KiB"}, {"name": "to_sol", "record": "64KiB"}]})
}

#[test]
fn an_interactive_problem_is_one_request_with_its_transcript() {
    for caller in callers() {
        let (code, response, _) = exec(
            caller,
            &interactive(&["normal"], &["normal", "17"], ("5s", "5s")),
        );
        let r = results(code, &response, 2);
        assert_eq!(
            (r[0]["status"].as_str(), r[0]["exit_code"].as_i64()),
            (Some("ok"), Some(0)),
            "{:#}",
            r[0]
        );
        assert_eq!(r[0].get("stdout"), None, "stdout went into the pipe");
        assert_eq!(r[1]["status"], "ok", "{:#}", r[1]);
        let (guesses, answers) = transcript(17, 10);
        assert_eq!(response["pipes"]["to_int"], guesses.as_str());
        assert_eq!(response["pipes"]["to_sol"], answers.as_str());
        assert_eq!(response["pipe_bytes"]["to_int"], guesses.len());
    }
}

/// Runs solution and interactor (see `interactive`) and checks the request ended well
/// before any limit it does not owe to the sides' own wall limits.
fn ended(
    caller: Caller,
    solution: &[&str],
    interactor: &[&str],
    walls: (&str, &str),
) -> (Vec<Value>, Value) {
    let started = Instant::now();
    let (code, response, _) = exec(caller, &interactive(solution, interactor, walls));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    (results(code, &response, 2), response)
}

#[track_caller]
fn assert_ended(r: &Value, status: &str, exit_code: Option<i64>) {
    assert_eq!(
        (r["status"].as_str(), r["exit_code"].as_i64()),
        (Some(status), exit_code),
        "{r:#}"
    );
}

#[test]
fn pipes_end_cleanly_when_a_side_stops_never_reads_or_both_flood() {
    for caller in callers() {
        // The interactor stops after three rounds: the solution sees its end (EOF or
        // EPIPE, it exits 3), long before any limit.
        let (r, response) = ended(caller, &["normal"], &["quit3", "5"], ("20s", "20s"));
        assert_ended(&r[0], "nonzero_exit", Some(3));
        assert_ended(&r[1], "ok", Some(0));
        let (guesses, answers) = transcript(5, 3);
        assert_eq!(response["pipes"]["to_sol"], answers.as_str());
        assert!(response["pipes"]["to_int"]
            .as_str()
            .unwrap()
            .starts_with(&guesses));

        // The solution never reads nor writes: it is ended at its own wall limit, and
        // the interactor, waiting for a guess, sees the end of its input right then.
        let (r, _) = ended(caller, &["sleep"], &["normal", "5"], ("1s", "30s"));
        assert_ended(&r[0], "wall_time_limit", None);
        assert_ended(&r[1], "nonzero_exit", Some(2));

        // Both flood and neither reads: each blocks on a full pipe; the solution's wall
        // limit ends it, and the interactor gets EPIPE at once (exit 4).
        let (r, response) = ended(caller, &["flood"], &["flood", "5"], ("1s", "30s"));
        assert_ended(&r[0], "wall_time_limit", None);
        assert_ended(&r[1], "nonzero_exit", Some(4));
        // What passed is recorded up to the cap, and counted beyond it.
        assert_eq!(
            response["pipes"]["to_sol"].as_str().unwrap().len(),
            64 << 10
        );
        assert!(response["pipe_bytes"]["to_sol"].as_u64().unwrap() >= 64 << 10);
    }
}

#[test]
fn a_direct_pipe_joins_fd_n_to_fd_m() {
    // The writer writes to its fd 3 (not stdout), the reader reads its fd 0; no proxy.
    for caller in callers() {
        let request = json!({"schema": 1, "commands": [
            {"args": ["/bin/sh", "-c", "echo through fd 3 >&3; echo own stdout"], "profile": "sh",
             "stdout": {"collect": "1KiB"}},
            {"args": ["/bin/cat"], "profile": "sh", "stdout": {"collect": "1KiB"}}],
            "pipes": [{"name": "side", "from": {"command": 0, "fd": 3}, "to": {"command": 1, "fd": 0}}]});
        let (code, response, _) = exec(caller, &request);
        let r = results(code, &response, 2);
        assert_result(&r[0], "ok", json!(0), "own stdout\n");
        assert_result(&r[1], "ok", json!(0), "through fd 3\n");
        assert_eq!(response.get("pipes"), None, "nothing recorded");
    }
}

#[test]
fn a_batch_of_200_answers_every_request_in_order() {
    for caller in callers() {
        let mut lines = vec![json!({"schema": 1, "id": "compile", "commands": [compile(SUM_CPP)]})];
        for i in 1..200 {
            lines.push(json!({"schema": 1, "id": format!("t{i}"),
                "commands": [run_cached(&format!("{i} {}\n", i * 3), json!({}))]}));
        }
        let input: String = lines.iter().map(|l| l.to_string() + "\n").collect();
        let mut cmd = command(caller);
        cmd.args(["batch", "--parallel", "2"]);
        let started = Instant::now();
        let out = spawn_with_stdin(cmd, input.as_bytes());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let responses: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(responses.len(), 200);
        assert_eq!(responses[0]["id"], "compile");
        assert_eq!(
            responses[0]["results"][0]["status"], "ok",
            "{:#}",
            responses[0]
        );
        for (i, r) in responses.iter().enumerate().skip(1) {
            assert_eq!(r["id"], format!("t{i}"));
            assert_result(&r["results"][0], "ok", json!(0), &format!("{}\n", i * 4));
        }
        eprintln!("{caller:?}: 200 requests in {:?}", started.elapsed());
    }
}

#[test]
fn a_batch_answers_a_bad_line_and_goes_on() {
    for caller in callers() {
        let input = format!(
            "{}\nnot json\n\n{}\n{}\n",
            json!({"schema": 1, "id": 1, "commands": [{"args": ["/bin/true"]}]}),
            json!({"schema": 1, "id": "two", "commands": [{"args": ["/bin/true"], "limits": {"memory": -5}}]}),
            json!({"schema": 1, "id": 3, "commands": [{"args": ["/bin/false"]}]}),
        );
        let mut cmd = command(caller);
        cmd.args(["batch"]);
        let out = spawn_with_stdin(cmd, input.as_bytes());
        assert_eq!(out.status.code(), Some(0));
        let responses: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(responses.len(), 4, "{responses:#?}");
        assert_eq!(responses[0]["results"][0]["status"], "ok");
        assert_eq!(responses[1]["id"], Value::Null);
        assert_eq!(responses[1]["error"]["path"], "");
        assert_eq!(responses[2]["id"], "two");
        assert_eq!(responses[2]["error"]["path"], "commands[0].limits.memory");
        assert_eq!(responses[3]["id"], 3);
        assert_eq!(responses[3]["results"][0]["status"], "nonzero_exit");
        assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 4 requests were bad"));
    }
}

#[test]
fn bad_requests_name_the_json_path_and_nothing_runs() {
    let marker = marker("rq", "bad");
    let ok = json!({"args": ["/bin/sh", "-c", "sleep 30", &marker], "profile": "sh"});
    let cases = [
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "bogus": 1}]}),
            "commands[1].bogus",
            "unknown field `bogus`",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "limits": {"cpu_time": "-1s"}}]}),
            "commands[1].limits.cpu_time",
            "not a valid duration",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "limits": {"processes": -1}}]}),
            "commands[1].limits.processes",
            "must be at least 1",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "stdin": {"pipe": "p"}}]}),
            "commands[1].stdin.pipe",
            "no pipe named `p`",
        ),
        (
            json!({"schema": 1, "commands": [ok], "pipes": [{"name": "p", "from": {"command": 0, "fd": 1}, "to": {"command": 4, "fd": 0}}]}),
            "pipes[0].to.command",
            "there is no command 4",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"]}], "pipes": [{"name": "p", "from": {"command": 0, "fd": -1}, "to": {"command": 1, "fd": 0}}]}),
            "pipes[0].from.fd",
            "not a descriptor number",
        ),
        (
            json!({"schema": 1, "commands": [ok], "pipes": [{"name": "p", "from": {"command": 0, "fd": 1}, "to": {"command": 0, "fd": 0}}]}),
            "pipes[0]",
            "joins command 0 to itself",
        ),
        (
            json!({"schema": 1, "commands": [
            {"args": ["/bin/true"], "stdout": {"pipe": "p"}, "files_out": [{"path": "x", "cache": "c"}]},
            {"args": ["/bin/true"], "stdin": {"pipe": "p"}, "files_in": {"x": {"cached": "c"}}}],
            "pipes": [{"name": "p"}]}),
            "commands[1].files_in.x.cached",
            "a cycle that cannot start",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "files_in": {"../etc/passwd": {"content": "x"}}}]}),
            "commands[1].files_in[\"../etc/passwd\"]",
            "climbs out with `..`",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "files_in": {"/etc/passwd": {"content": "x"}}}]}),
            "commands[1].files_in[\"/etc/passwd\"]",
            "is absolute",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "files_out": [{"path": "../../x"}]}]}),
            "commands[1].files_out[0].path",
            "climbs out",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "stdin": {"content": "a", "base64": "YQ=="}}]}),
            "commands[1].stdin",
            "give only one of",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "stdout": {"collect": -1}}]}),
            "commands[1].stdout.collect",
            "not a size",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "profile": "no-such-profile"}]}),
            "commands[1].profile",
            "no profile named",
        ),
        (
            json!({"schema": 1, "commands": [ok, {"args": ["/bin/true"], "profile": "gcc", "workdir": "/tmp/w"}]}),
            "commands[1].workdir",
            "overlaps /tmp, which the profile mounts",
        ),
        (
            json!({"schema": 2, "commands": [ok]}),
            "schema",
            "reads schema 1",
        ),
        (
            json!({"schema": 1, "commands": []}),
            "commands",
            "at least one command",
        ),
    ];
    for caller in callers() {
        for (request, path, message) in &cases {
            let (code, response, stderr) = exec(caller, request);
            assert_eq!(code, 2, "{response:#}");
            assert_eq!(response["error"]["path"], *path, "{response:#}");
            let got = response["error"]["message"].as_str().unwrap();
            assert!(got.contains(message), "{path}: {got}");
            assert!(stderr.contains(path), "{stderr}");
            assert_eq!(response.get("results"), None);
            assert!(
                marked_pids(&marker).is_empty(),
                "a command of a bad request ran"
            );
        }
        // Text that is not JSON at all: located by line and column.
        let mut cmd = command(caller);
        cmd.args(["exec", "-"]);
        let out = spawn_with_stdin(cmd, b"{\"schema\": 1, \"commands\": [");
        let response: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            response["error"]["message"]
                .as_str()
                .unwrap()
                .contains("line 1"),
            "{response:#}"
        );
    }
}

#[test]
fn nothing_is_left_behind_by_a_request() {
    for caller in callers() {
        let marker = marker("rq", "left");
        let before = mount_count();
        let request = interactive(&["flood", &marker], &["flood", "5", &marker], ("1s", "2s"));
        let (code, _, _) = exec(caller, &request);
        assert_eq!(code, 0);
        assert_none_alive(&marker, "interactive flood");
        assert_eq!(mount_count(), before);
        // Each run's cgroup is removed (moat names them moat-PID-…).
        let left: Vec<_> = cgroup_dirs("moat-")
            .into_iter()
            .filter(|d| {
                d.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.split('-').nth(1))
                    .and_then(|pid| pid.parse::<i32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn files_put_in_are_not_the_programs_memory() {
    // 96 MiB put in under a 64 MiB memory limit: moat wrote them before the program
    // started, so they count neither against the limit nor in its peak; what the
    // program itself writes to the work dir does.
    let dir = scratch();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![7u8; 96 << 20]).unwrap();
    open_up(dir.path());
    for caller in callers() {
        let request = json!({"schema": 1, "commands": [
            {"args": ["/bin/sh", "-c", "wc -c < big"], "profile": "sh",
             "workdir_size": "256MiB", "limits": {"memory": "64MiB"},
             "files_in": {"big": {"host": path_str(&big)}},
             "stdout": {"collect": "1KiB"}},
            {"args": ["/bin/sh", "-c", "head -c 100000000 /dev/zero > mine; echo done"],
             "profile": "sh", "workdir_size": "256MiB", "limits": {"memory": "64MiB"},
             "stdout": {"collect": "1KiB"}}]});
        let (code, response, _) = exec(caller, &request);
        let r = results(code, &response, 2);
        assert_result(&r[0], "ok", json!(0), &format!("{}\n", 96 << 20));
        assert!(
            r[0]["peak_memory_kib"].as_u64().unwrap() < 32 << 10,
            "{:#}",
            r[0]
        );
        assert_eq!(r[1]["status"], "memory_limit", "{caller:?}: {:#}", r[1]);
    }
}

#[test]
fn a_jail_that_fails_to_build_is_reported_at_once_and_its_partner_sees_the_end() {
    // /lib64 is a symlink in the jail's root: a work dir under it cannot be mounted,
    // which only init, building the root, finds out.
    for caller in callers() {
        let started = Instant::now();
        let request = json!({"schema": 1, "commands": [
            {"args": ["/bin/cat"], "workdir": "/lib64/w",
             "stdin": {"pipe": "in"}, "stdout": {"pipe": "out"}},
            {"args": ["/bin/sh", "-c", "yes | head -c 1000000; cat >/dev/null; echo eof >&2"], "profile": "sh",
             "stdin": {"pipe": "out"}, "stdout": {"pipe": "in"}, "stderr": {"collect": "1KiB"}}],
            "pipes": [{"name": "in"}, {"name": "out", "record": "1KiB"}]});
        let (code, response, _) = exec(caller, &request);
        let r = results(code, &response, 2);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r[0]["status"], "setup_error", "{:#}", r[0]);
        let why = r[0]["error"]["message"].as_str().unwrap();
        assert!(
            why.starts_with("tmpfs /lib64/w") && why.contains("No such file"),
            "{why}"
        );
        // The partner is not left waiting: its writes fail, its reads end.
        assert_eq!(
            (r[1]["status"].as_str(), r[1]["stderr"].as_str()),
            (Some("ok"), Some("eof\n")),
            "{:#}",
            r[1]
        );
    }
}

#[test]
fn a_batch_sees_the_cache_as_in_order_whatever_its_parallelism() {
    // use1 reads `bin` while it is `first`; remk re-caches it (it must wait for use1),
    // use2 reads the new one.
    let lines = [
        json!({"schema": 1, "id": "mk", "commands": [{"args": ["/bin/sh", "-c", "sleep 0.3; printf first > a"], "profile": "sh", "files_out": [{"path": "a", "cache": "bin"}]}]}),
        json!({"schema": 1, "id": "use1", "commands": [{"args": ["/bin/sleep", "1"], "profile": "sh"}, {"args": ["/bin/cat"], "profile": "sh", "stdin": {"cached": "bin"}, "stdout": {"collect": 100}}]}),
        json!({"schema": 1, "id": "remk", "commands": [{"args": ["/bin/sh", "-c", "printf second > a"], "profile": "sh", "files_out": [{"path": "a", "cache": "bin"}]}]}),
        json!({"schema": 1, "id": "use2", "commands": [{"args": ["/bin/cat"], "profile": "sh", "stdin": {"cached": "bin"}, "stdout": {"collect": 100}}]}),
    ];
    let input: String = lines.iter().map(|l| l.to_string() + "\n").collect();
    for caller in callers() {
        let mut cmd = command(caller);
        cmd.args(["batch", "--parallel", "4"]);
        let out = spawn_with_stdin(cmd, input.as_bytes());
        let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[1]["results"][1]["stdout"], "first", "{:#}", got[1]);
        assert_eq!(got[3]["results"][0]["stdout"], "second", "{:#}", got[3]);
    }
}

/// `moat batch` as `caller`, its stdin given `n` requests to sleep a second and kept
/// open (the caller drops it to end the input); stdout piped, stderr dropped.
fn sleepers_batch(caller: Caller, n: usize) -> (std::process::Child, std::process::ChildStdin) {
    let line = json!({"schema": 1, "commands": [{"args": ["/bin/sleep", "1"], "profile": "sh"}]});
    let input: String = (0..n).map(|_| line.to_string() + "\n").collect();
    let mut cmd = command(caller);
    cmd.arg("batch")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, input.as_bytes()).unwrap();
    (child, stdin)
}

#[test]
fn a_batch_whose_output_is_gone_runs_nothing_more() {
    use std::io::Read;
    for caller in callers() {
        let started = Instant::now();
        let (mut child, stdin) = sleepers_batch(caller, 8);
        drop(stdin);
        let mut first = [0u8; 10];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        // The reader is gone after the first response.
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(125));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_signalled_batch_answers_every_request_it_read() {
    use std::io::{BufRead, BufReader};
    for caller in callers() {
        // The input stays open: moat must not wait for its end once signalled.
        let (mut child, stdin) = sleepers_batch(caller, 6);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        // SAFETY: kill with a plain pid and signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
        let status = child.wait().unwrap();
        drop(stdin);
        assert_eq!(status.code(), Some(128 + libc::SIGTERM));
        assert_eq!(rest.len(), 5, "{rest:?}");
        for l in rest {
            let v: Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["results"][0]["status"], "cancelled", "{v:#}");
        }
    }
}
