//! The report and moat's exit status: `--report -` and /dev/stdout write through the
//! descriptor moat holds (also as uid 65534 into a pipe a root caller owns); every
//! report carries `"schema": 1` and validates against docs/report.schema.json, for
//! every verdict; `--exit-status verdict` gives one fixed code per verdict, where the
//! default passes a program's own 124 or 137 through as timeout(1) would.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;

/// The shipped JSON Schema of the report, compiled.
fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, report: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: report does not fit the schema: {errors:#?}\n{report:#}"
    );
}

#[test]
fn report_dash_goes_to_stdout_after_the_programs_output() {
    let prog = fixture("hello");
    for caller in callers() {
        let dir = scratch();
        let out = command(caller)
            .current_dir(dir.path())
            .args(["run", "--report", "-", "--"])
            .arg(&prog)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(0), "{caller:?}: {stdout}");
        let (program, report) = stdout.split_once('{').expect("a report on stdout");
        assert_eq!(program, "hello from the jail\n", "{caller:?}");
        let report: Value = serde_json::from_str(&format!("{{{report}")).unwrap();
        assert_eq!(report["schema"], 1);
        assert_eq!(report["status"], "ok");
        // No file named `-` was made.
        assert!(!dir.path().join("-").exists(), "{caller:?}");
    }
}

#[test]
fn report_to_a_pipe_of_another_user_is_written_through_the_held_descriptor() {
    // The test process owns the pipe moat's stdout is; as uid 65534 moat may not open
    // it again through /proc (it is root's when the tests run as root), but it holds it.
    let prog = fixture("hello");
    for caller in callers() {
        for path in ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"] {
            let out = command(caller)
                .args(["run", "--stdout", "/dev/null", "--report", path, "--"])
                .arg(&prog)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{caller:?} {path}: {stderr}");
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report["status"], "ok", "{caller:?} {path}");
        }
        let out = command(caller)
            .args(["run", "--report", "/dev/stderr", "--"])
            .arg(&prog)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello from the jail\n"
        );
        let report: Value = serde_json::from_slice(&out.stderr).unwrap();
        assert_eq!(report["status"], "ok", "{caller:?}");
    }
}

#[test]
fn a_report_to_a_closed_descriptor_is_exit_125_not_a_success() {
    let prog = fixture("hello");
    let out = command(Caller::Current)
        .args(["run", "--report", "/dev/fd/9", "--"])
        .arg(&prog)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write the report to /dev/fd/9"),
        "{out:?}"
    );
}

/// One real run per verdict (and a learning run), each report checked against the
/// schema; the schema in turn refuses reports that are not moat's.
#[test]
fn every_verdicts_report_fits_the_shipped_schema() {
    let v = schema();
    let hello = fixture("hello");
    let code = fixture("mon_exit_code");
    let spin = fixture("lim_spin");
    let mem = fixture("lim_mem");
    let output = fixture("lim_output");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("ok", vec![path_str(&hello).into()]),
        (
            "nonzero_exit",
            vec![
                path_str(&code).into(),
                "x".into(),
                "3".into(),
                "0".into(),
                "exit".into(),
            ],
        ),
        (
            "violation",
            vec![
                path_str(&code).into(),
                "x".into(),
                "0".into(),
                "0".into(),
                "socket".into(),
            ],
        ),
        (
            "cpu_time_limit",
            vec![
                "--cpu-time".into(),
                "300ms".into(),
                "--".into(),
                path_str(&spin).into(),
            ],
        ),
        (
            "wall_time_limit",
            vec![
                "--wall-time".into(),
                "300ms".into(),
                "--".into(),
                path_str(&code).into(),
                "x".into(),
                "0".into(),
                "0".into(),
                "hang".into(),
            ],
        ),
        (
            "memory_limit",
            vec![
                "--memory".into(),
                "32MiB".into(),
                "--".into(),
                path_str(&mem).into(),
                "heap".into(),
                "200".into(),
            ],
        ),
        (
            "output_limit",
            vec![
                "--output".into(),
                "1KiB".into(),
                "--".into(),
                path_str(&output).into(),
                "flood".into(),
            ],
        ),
        ("setup_error", vec!["/nonexistent/program".into()]),
    ];
    for caller in callers() {
        for (status, args) in &cases {
            let mut argv: Vec<&str> = Vec::new();
            if !args.contains(&"--".to_string()) {
                argv.push("--");
            }
            argv.extend(args.iter().map(String::as_str));
            let run = moat_run(caller, &argv);
            assert_eq!(run.status(), *status, "{caller:?}: {run:#?}");
            assert_eq!(run.report["schema"], 1);
            assert_valid(&v, &run.report, status);
        }
        // A learning run's report has the extra `learned` key.
        let dir = scratch();
        let report = dir.path().join("learn.json");
        let out = command(caller)
            .arg("learn")
            .arg("--save")
            .arg(dir.path().join("learned.toml"))
            .arg("--report")
            .arg(&report)
            .arg("--")
            .arg(&code)
            .args(["x", "0", "0", "socket"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let learned: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert!(learned["learned"]["syscalls"]
            .as_array()
            .is_some_and(|s| !s.is_empty()));
        assert_valid(&v, &learned, "learn");
    }
    // The schema is not a yes to everything.
    let mut bad = moat_run(Caller::Current, &["--", path_str(&hello)]).report;
    bad["status"] = "bogus".into();
    assert!(!v.is_valid(&bad));
    let mut bad = moat_run(Caller::Current, &["--", path_str(&hello)]).report;
    bad.as_object_mut().unwrap().remove("schema");
    assert!(!v.is_valid(&bad));
}

/// Every key a report has is described by the schema (a new key lands in both).
#[test]
fn the_schema_describes_every_key_a_report_has() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let described = schema["properties"].as_object().unwrap();
    let report = moat_run(Caller::Current, &["--", path_str(&fixture("hello"))]).report;
    for key in report.as_object().unwrap().keys() {
        assert!(
            described.contains_key(key),
            "report key {key} is not in the schema"
        );
    }
}

#[test]
fn exit_status_verdict_gives_one_code_per_verdict_whatever_the_program_exits_with() {
    let code = fixture("mon_exit_code");
    let c = path_str(&code);
    let mem = fixture("lim_mem");
    for caller in callers() {
        // (args, status, default exit, --exit-status verdict exit)
        let cases: Vec<(Vec<&str>, &str, i32, i32)> = vec![
            (vec!["--", c, "x", "0", "0", "exit"], "ok", 0, 0),
            // The program's own 124 and 137 look like timeout(1)'s and the OOM killer's
            // by default; under `verdict` they are plain nonzero exits.
            (
                vec!["--", c, "x", "124", "0", "exit"],
                "nonzero_exit",
                124,
                1,
            ),
            (
                vec!["--", c, "x", "137", "0", "exit"],
                "nonzero_exit",
                137,
                1,
            ),
            (
                vec!["--wall-time", "200ms", "--", c, "x", "0", "0", "hang"],
                "wall_time_limit",
                124,
                5,
            ),
            (
                vec!["--memory", "32MiB", "--", path_str(&mem), "heap", "200"],
                "memory_limit",
                137,
                6,
            ),
            (vec!["--", c, "x", "0", "0", "socket"], "violation", 159, 3),
            (vec!["--", "/nonexistent/program"], "setup_error", 127, 127),
        ];
        for (args, status, program, verdict) in cases {
            let run = moat_run(caller, &args);
            assert_eq!(
                (run.status(), run.code),
                (status, program),
                "{caller:?} {args:?}: {run:#?}"
            );
            let mut with = vec!["--exit-status", "verdict"];
            with.extend(&args);
            let run = moat_run(caller, &with);
            assert_eq!(
                (run.status(), run.code),
                (status, verdict),
                "{caller:?} {with:?}: {run:#?}"
            );
            let mut with = vec!["--exit-status", "program"];
            with.extend(&args);
            assert_eq!(moat_run(caller, &with).code, program);
        }
    }
    let out = command(Caller::Current)
        .args(["run", "--exit-status", "loud", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: program, verdict"));
}
