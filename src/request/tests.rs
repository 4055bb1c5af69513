//! The request's form and checks, without running anything.

use super::check::check;
use super::*;
use crate::report::outcome::{ErrorKind, Outcome};

/// The request of the issue that asked for requests, as written there.
const EXAMPLE: &str = r#"{"schema": 1, "id": "sub-42",
 "commands": [
   {"args": ["./a"], "profile": "cpp", "env": {"K": "V"},
    "limits": {"cpu_time": "1s", "memory": "256MiB"},
    "workdir_size": "64MiB",
    "stdin":  {"content": "1 2\n"},
    "stdout": {"collect": "64KiB"},
    "stderr": {"collect": "4KiB"},
    "files_in":  {"a": {"cached": "ID"}, "in.txt": {"content": "x"}, "b.bin": {"base64": "AAEC"}, "t": {"host": "/srv/t"}},
    "files_out": [{"path": "out.txt", "max": "1MiB", "optional": false, "cache": false}]}],
 "pipes": []}"#;

fn err(text: &str) -> RequestError {
    Request::from_json(text).unwrap_err()
}

fn checked(v: serde_json::Value) -> Result<check::Schedule, RequestError> {
    check(&Request::from_json(&v.to_string()).unwrap())
}

#[test]
fn the_example_reads_as_written() {
    let r = Request::from_json(EXAMPLE).unwrap();
    assert_eq!(r.id, Some(serde_json::json!("sub-42")));
    let c = &r.commands[0];
    assert_eq!(c.args, ["./a"]);
    assert_eq!(c.profile, "cpp");
    assert_eq!(c.env.get("K").map(String::as_str), Some("V"));
    assert_eq!(c.limits.cpu_time, Some(std::time::Duration::from_secs(1)));
    assert_eq!(c.limits.memory, Some(256 << 20));
    assert_eq!(c.workdir_size, 64 << 20);
    assert_eq!(c.workdir, std::path::Path::new("/w"));
    assert_eq!(c.stdin, Input::Bytes(b"1 2\n".to_vec().into()));
    assert_eq!(
        (&c.stdout, &c.stderr),
        (&Output::Collect(64 << 10), &Output::Collect(4 << 10))
    );
    assert_eq!(
        c.files_in["a"],
        FileSource::Cached {
            id: "ID".into(),
            mode: None
        }
    );
    assert_eq!(
        c.files_in["b.bin"],
        FileSource::Bytes {
            data: vec![0, 1, 2].into(),
            mode: 0o644
        }
    );
    assert_eq!(
        c.files_in["t"],
        FileSource::Host {
            path: "/srv/t".into(),
            mode: None
        }
    );
    assert_eq!(
        c.files_out,
        [CopyOut {
            path: "out.txt".into(),
            max: Some(1 << 20),
            optional: false,
            cache: CacheAs::No
        }]
    );
    assert_eq!(check(&r).unwrap().groups, [vec![0]]);
}

#[test]
fn form_faults_are_named_by_their_path() {
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"], "stdout": {"collect": "64KiB", "pipe": "p"}}]}"#,
    );
    assert_eq!(e.path, "commands[0].stdout");
    assert!(e.message.contains("give only one of"), "{e}");
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"], "files_in": {"a": {"content": "x", "mode": 755}}}]}"#,
    );
    assert_eq!(e.path, "commands[0].files_in.a.mode");
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"], "files_in": {"a": {"content": "x", "mode": "4755"}}}]}"#,
    );
    assert!(e.message.contains("set-id"), "{e}");
    let e = err(r#"{"schema": 1, "commands": [{"args": ["x"], "stdin": {"base64": "!!"}}]}"#);
    assert_eq!(e.path, "commands[0].stdin.base64");
    let e = err(r#"{"schema": 1, "commands": [{"args": ["x"], "limits": {"cpu_time": 5}}]}"#);
    assert_eq!(
        (e.path.as_str(), e.message.as_str()),
        (
            "commands[0].limits.cpu_time",
            "expected a string such as \"2s\""
        )
    );
    let e = err(r#"{"schema": 1, "commands": [{"args": ["x"], "limits": {"speed": "1s"}}]}"#);
    assert!(e.message.starts_with("unknown limit"), "{e}");
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"], "files_out": [{"path": "a", "cache": 3}]}]}"#,
    );
    assert_eq!(e.path, "commands[0].files_out[0].cache");
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"]}], "pipes": [{"name": "p", "from": {"command": -1, "fd": 1}}]}"#,
    );
    assert_eq!(e.path, "pipes[0].from.command");
    let e = err(r#"{"schema": 1, "commands": [{"args": ["x"]}]} trailing"#);
    assert!(e.message.contains("after the request"), "{e}");
    let e = err(r#"{"commands": []}"#);
    assert!(e.message.contains("missing field `schema`"), "{e}");
    let e = err(r#"{"schema": 1, "id": [1], "commands": []}"#);
    assert_eq!(e.path, "id");
    assert_eq!(
        e.to_string(),
        "id: must be a string or a whole number within 64 bits"
    );
    let e = err(r#"{"schema": 1, "id": 18446744073709551616, "commands": []}"#);
    assert_eq!(e.path, "id");
    let e = err(r#"{"schema": 1, "commands": [{"args": ["x"], "env": {"A": "1", "A": "2"}}]}"#);
    assert_eq!(
        (e.path.as_str(), e.message.starts_with("`A` is given twice")),
        ("commands[0].env", true),
        "{e}"
    );
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"], "limits": {"cpu_time": "1s", "cpu_time": "2s"}}]}"#,
    );
    assert_eq!(e.path, "commands[0].limits");
    let e = err(
        r#"{"schema": 1, "commands": [{"args": ["x"], "files_in": {"a": {"content": ""}, "a": {"content": ""}}}]}"#,
    );
    assert_eq!(e.path, "commands[0].files_in");
}

#[test]
fn pipes_need_one_writer_one_reader_on_two_commands() {
    use serde_json::json;
    let two = |pipes: serde_json::Value, a: serde_json::Value, b: serde_json::Value| {
        let mut a = a;
        a["args"] = json!(["x"]);
        let mut b = b;
        b["args"] = json!(["y"]);
        checked(json!({"schema": 1, "commands": [a, b], "pipes": pipes}))
    };
    let s = two(
        json!([{"name": "p"}, {"name": "q", "from": {"command": 1, "fd": 5}, "to": {"command": 0, "fd": 7}}]),
        json!({"stdout": {"pipe": "p"}}),
        json!({"stdin": {"pipe": "p"}}),
    )
    .unwrap();
    assert_eq!(s.groups, [vec![0, 1]]);
    assert_eq!(s.ends.len(), 2);
    assert_eq!((s.ends[1].0.fd, s.ends[1].1.fd), (5, 7));
    let e = two(
        json!([{"name": "p"}]),
        json!({"stdout": {"pipe": "p"}}),
        json!({"stdout": {"pipe": "p"}}),
    )
    .unwrap_err();
    assert_eq!(e.path, "commands[1].stdout.pipe");
    assert!(e.message.contains("one writing end"), "{e}");
    let e = two(
        json!([{"name": "p"}]),
        json!({"stdout": {"pipe": "p"}}),
        json!({}),
    )
    .unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.message.contains("no command reads from")),
        ("pipes[0]", true)
    );
    let e = two(
        json!([{"name": "p", "from": {"command": 0, "fd": 1}, "to": {"command": 1, "fd": 0}}]),
        json!({"stdout": {"collect": 10}}),
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e.path, "pipes[0].from.fd");
    assert!(e.message.contains("already its stdout"), "{e}");
    let e = two(
        json!([{"name": "p", "from": {"command": 0, "fd": 3}, "to": {"command": 1, "fd": 0}},
               {"name": "q", "from": {"command": 0, "fd": 3}, "to": {"command": 1, "fd": 4}}]),
        json!({}),
        json!({}),
    )
    .unwrap_err();
    assert!(e.message.contains("an end of pipe `p` already"), "{e}");
    let e = two(
        json!([{"name": "p", "from": {"command": 0, "fd": 300}, "to": {"command": 1, "fd": 0}}]),
        json!({}),
        json!({}),
    )
    .unwrap_err();
    assert_eq!(e.path, "pipes[0].from.fd");
    let many: Vec<_> = (3..70)
        .map(|fd| json!({"name": format!("p{fd}"), "from": {"command": 0, "fd": fd}, "to": {"command": 1, "fd": fd}}))
        .collect();
    let e = two(json!(many), json!({}), json!({})).unwrap_err();
    assert!(e.message.contains("more than 64 descriptors"), "{e}");
    assert_eq!(e.path, "pipes[61].from");
    let e = two(json!([{"name": "bad name"}]), json!({}), json!({})).unwrap_err();
    assert_eq!(e.path, "pipes[0].name");
    let e = two(json!([{"name": "x_base64"}]), json!({}), json!({})).unwrap_err();
    assert_eq!(e.path, "pipes[0].name");
    let e = two(json!([{"name": "p"}, {"name": "p"}]), json!({}), json!({})).unwrap_err();
    assert_eq!(e.path, "pipes[1].name");
}

#[test]
fn groups_run_in_order_and_cached_files_are_made_first() {
    use serde_json::json;
    let s = checked(json!({"schema": 1, "commands": [
        {"args": ["compile"], "files_out": [{"path": "a", "cache": "bin"}]},
        {"args": ["sol"], "files_in": {"a": {"cached": "bin"}}, "stdout": {"pipe": "p"}},
        {"args": ["other"]},
        {"args": ["int"], "stdin": {"pipe": "p"}}],
        "pipes": [{"name": "p"}]}))
    .unwrap();
    assert_eq!(s.groups, [vec![0], vec![1, 3], vec![2]]);
    let e = checked(json!({"schema": 1, "commands": [
        {"args": ["sol"], "stdin": {"cached": "out"}},
        {"args": ["later"], "files_out": [{"path": "a", "cache": "out"}]}]}))
    .unwrap_err();
    assert_eq!(e.path, "commands[0].stdin.cached");
    assert!(e.message.contains("runs after this one"), "{e}");
    // An id no command of the request makes may come from the cache: not checked here.
    assert!(checked(
        json!({"schema": 1, "commands": [{"args": ["x"], "stdin": {"cached": "elsewhere"}}]})
    )
    .is_ok());
}

#[test]
fn command_faults_are_named() {
    use serde_json::json;
    let one = |c: serde_json::Value| checked(json!({"schema": 1, "commands": [c]})).unwrap_err();
    assert_eq!(one(json!({"args": []})).path, "commands[0].args");
    assert_eq!(
        one(json!({"args": ["a\u{0}b"]})).path,
        "commands[0].args[0]"
    );
    assert_eq!(
        one(json!({"args": ["x"], "env": {"A=B": "c"}})).path,
        "commands[0].env[\"A=B\"]"
    );
    assert_eq!(
        one(json!({"args": ["x"], "workdir": "/"})).path,
        "commands[0].workdir"
    );
    assert_eq!(
        one(json!({"args": ["x"], "workdir": "w"})).path,
        "commands[0].workdir"
    );
    assert_eq!(
        one(json!({"args": ["x"], "workdir_size": 0})).path,
        "commands[0].workdir_size"
    );
    assert_eq!(
        one(json!({"args": ["x"], "cwd": "rel"})).path,
        "commands[0].cwd"
    );
    assert_eq!(
        one(json!({"args": ["x"], "stdin": {"file": "in"}})).path,
        "commands[0].stdin.file"
    );
    assert_eq!(
        one(json!({"args": ["x"], "stdout": {"file": "../o"}})).path,
        "commands[0].stdout.file"
    );
    assert_eq!(
        one(json!({"args": ["x"], "stdout": {"collect": "2GiB"}})).path,
        "commands[0].stdout.collect"
    );
    assert_eq!(
        one(json!({"args": ["x"], "files_in": {"a": {"host": "rel"}}})).path,
        "commands[0].files_in.a.host"
    );
    assert_eq!(
        one(json!({"args": ["x"], "files_in": {"a": {"cached": ""}}})).path,
        "commands[0].files_in.a.cached"
    );
    let e = one(json!({"args": ["x"], "files_in": {"d": {"content": ""}, "d/e": {"content": ""}}}));
    assert_eq!(e.path, "commands[0].files_in[\"d/e\"]");
    let e = one(json!({"args": ["x"], "files_in": {"a".repeat(256): {"content": ""}}}));
    assert!(e.message.contains("at most 255"), "{e}");
    let e = one(
        json!({"args": ["x"], "files_in": {"in": {"content": ""}}, "stdin": {"file": "in"}, "stdout": {"file": "in"}}),
    );
    assert_eq!(e.path, "commands[0].stdout.file");
    let e = one(json!({"args": ["x"], "files_out": [{"path": "a", "max": "2GiB"}]}));
    assert_eq!(e.path, "commands[0].files_out[0].max");
    let e = one(json!({"args": ["x"], "files_out": [{"path": "a"}, {"path": "a"}]}));
    assert_eq!(e.path, "commands[0].files_out[1].path");
    let many: Vec<_> = (0..65).map(|_| json!({"args": ["x"]})).collect();
    assert_eq!(
        checked(json!({"schema": 1, "commands": many}))
            .unwrap_err()
            .path,
        "commands"
    );
}

#[test]
fn responses_give_text_as_text_and_other_bytes_as_base64() {
    let mut outcome = Outcome::setup_error(ErrorKind::Setup, "x".into());
    outcome.status = crate::report::outcome::Status::Ok;
    let r = Response {
        id: Some(serde_json::json!(7)),
        results: vec![CommandResult {
            outcome,
            stdout: Some(b"3\n".to_vec()),
            stderr: Some(vec![0xff, 0]),
            files_out: [
                ("t".to_string(), FileOutResult::Bytes(b"text".to_vec())),
                ("b".to_string(), FileOutResult::Bytes(vec![0xff])),
                (
                    "a".to_string(),
                    FileOutResult::Cached {
                        id: "bin".into(),
                        size: 9,
                    },
                ),
            ]
            .into_iter()
            .collect(),
            file_errors: vec![FileError {
                path: "x".into(),
                reason: "missing".into(),
            }],
        }],
        pipes: [
            (
                "p".to_string(),
                Recorded {
                    bytes: b"hi".to_vec(),
                    total: 5,
                },
            ),
            (
                "q".to_string(),
                Recorded {
                    bytes: vec![0xfe],
                    total: 1,
                },
            ),
        ]
        .into_iter()
        .collect(),
        error: None,
    };
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["schema", "id", "results", "pipes", "pipe_bytes"]);
    let res = &v["results"][0];
    assert_eq!(res["status"], "ok");
    assert_eq!(res["stdout"], "3\n");
    assert_eq!(res.get("stderr"), None);
    assert_eq!(res["stderr_base64"], "/wA=");
    assert_eq!(
        res["files_out"]["t"],
        serde_json::json!({"content": "text"})
    );
    assert_eq!(res["files_out"]["b"], serde_json::json!({"base64": "/w=="}));
    assert_eq!(
        res["files_out"]["a"],
        serde_json::json!({"cached": "bin", "size": 9})
    );
    assert_eq!(
        res["file_errors"],
        serde_json::json!([{"path": "x", "reason": "missing"}])
    );
    assert_eq!(
        v["pipes"],
        serde_json::json!({"p": "hi", "q_base64": "/g=="})
    );
    assert_eq!(v["pipe_bytes"], serde_json::json!({"p": 5, "q": 1}));
    let bad = Response {
        id: None,
        results: Vec::new(),
        pipes: Default::default(),
        error: Some(RequestError::at("commands[0]", "no")),
    };
    assert_eq!(
        bad.to_json(),
        r#"{"schema":1,"id":null,"error":{"path":"commands[0]","message":"no"}}"#
    );
}
