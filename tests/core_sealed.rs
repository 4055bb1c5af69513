//! The always-denied core cannot be lifted through the library: every route the public
//! API offers to allow `ptrace`, `bpf`, `io_uring_setup`, `userfaultfd` or a
//! namespace-flag `clone` is either refused with an error naming the core, or ends in
//! a violation of that call (only an errno may be chosen, and it then holds).

mod common;
use common::*;
use moat::{Overrides, Plan, Policy, Status};
use std::ffi::OsString;
use std::path::Path;

/// The core calls the fixture makes, and the syscall each is reported as.
const CALLS: [(&str, &str); 5] = [
    ("ptrace", "ptrace"),
    ("bpf", "bpf"),
    ("io_uring_setup", "io_uring_setup"),
    ("userfaultfd", "userfaultfd"),
    ("clone_newuser", "clone"),
];

fn argv(call: &str) -> Vec<OsString> {
    vec![fixture("core_calls").into(), call.into()]
}

/// Runs the fixture making `call` under `policy` through the library.
fn run(policy: Policy, call: &str) -> moat::Outcome {
    let plan = Plan::build(policy, &argv(call)).unwrap();
    moat::run(&plan).unwrap_or_else(|e| panic!("{call}: {e}"))
}

#[track_caller]
fn assert_violation(out: &moat::Outcome, syscall: &str, route: &str) {
    assert_eq!(out.status, Status::Violation, "{route}: {out:#?}");
    let v = out.violation.as_ref().unwrap();
    assert_eq!(
        (v.syscall.as_str(), v.arch.as_str()),
        (syscall, "x86_64"),
        "{route}"
    );
}

/// A profile on top of `default` (the startup calls every program needs) saying `text`.
fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("extends = \"default\"\n{text}")).unwrap();
    path.display().to_string()
}

#[test]
fn profiles_that_allow_a_core_call_are_refused_at_load() {
    let dir = scratch();
    for (_, syscall) in CALLS.iter().filter(|(_, s)| *s != "clone") {
        let routes = [
            ("allow", format!("[syscalls]\nallow = [\"{syscall}\"]\n")),
            (
                "rule",
                format!("[[syscalls.rule]]\nname = \"{syscall}\"\nwhen = [\"arg0 == 0\"]\n"),
            ),
        ];
        for (route, text) in routes {
            let path = write(dir.path(), &format!("{syscall}-{route}.toml"), &text);
            let err = Policy::load(&path, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains("always-denied core"),
                "{syscall} by {route}: {err}"
            );
            // A profile that extends one which allows it fails the same way.
            let top = dir.path().join(format!("{syscall}-{route}-top.toml"));
            std::fs::write(&top, format!("extends = \"{path}\"\n")).unwrap();
            let top = top.display().to_string();
            let err = Policy::load(&top, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains("always-denied core"),
                "{syscall} by extending {route}: {err}"
            );
        }
    }
}

#[test]
fn learning_never_lets_a_core_call_through() {
    let learning = Overrides {
        learn: true,
        ..Default::default()
    };
    for (call, syscall) in CALLS {
        let policy = Policy::load("default", &learning).unwrap();
        let out = run(policy, call);
        assert_violation(&out, syscall, "learning");
        assert!(
            !out.learned.unwrap().syscalls.contains(syscall),
            "{syscall} was learned"
        );
    }
}

#[test]
fn an_allowed_clone_still_refuses_namespace_flags() {
    let dir = scratch();
    let routes = [
        ("allow", "[syscalls]\nallow = [\"clone\"]\n"),
        (
            "rule",
            "[[syscalls.rule]]\nname = \"clone\"\nwhen = [\"arg0 & CLONE_NEWUSER == CLONE_NEWUSER\"]\n",
        ),
        ("group", "[syscalls]\ngroups = [\"fork\", \"threads\"]\n"),
    ];
    for (route, text) in routes {
        let path = write(dir.path(), &format!("clone-{route}.toml"), text);
        for learn in [false, true] {
            let overrides = Overrides {
                learn,
                ..Default::default()
            };
            let policy = Policy::load(&path, &overrides).unwrap();
            let out = run(policy, "clone_newuser");
            assert_violation(&out, "clone", &format!("{route} (learn {learn})"));
            assert_eq!(out.exit_code(), 159);
        }
    }
}

#[test]
fn an_errno_is_the_one_thing_a_profile_may_give_the_core() {
    let dir = scratch();
    for (call, syscall) in CALLS.iter().filter(|(_, s)| *s != "clone") {
        let path = write(
            dir.path(),
            &format!("{syscall}-errno.toml"),
            &format!("[syscalls.errno]\n{syscall} = \"EPERM\"\n"),
        );
        let out = run(Policy::load(&path, &Overrides::default()).unwrap(), call);
        assert_eq!(out.status, Status::Ok, "{syscall}: {out:#?}");
        assert!(out.violation.is_none());
    }
    // The CLI shows what the program saw: the call failed with EPERM, it never ran.
    let path = write(
        dir.path(),
        "ptrace-errno.toml",
        "[syscalls.errno]\nptrace = \"EPERM\"\n",
    );
    for caller in callers() {
        let prog = fixture("core_calls");
        let run = moat_run(
            caller,
            &["--profile", &path, "--", path_str(&prog), "ptrace"],
        );
        assert_run(&run, "ok", 0, "before ptrace\nptrace: -1 1\n");
    }
}

#[test]
fn the_cli_learning_run_refuses_the_core_for_every_caller() {
    let prog = fixture("core_calls");
    for caller in callers() {
        for (call, syscall) in CALLS {
            let dir = scratch();
            let saved = dir.path().join("learned.toml");
            let out = moat_learn(caller, &saved, &[path_str(&prog), call]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(159), "{caller:?} {call}: {err}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("before {call}\n"),
                "{caller:?} {call}: the call must not return"
            );
            assert!(err.contains(&format!("{syscall} (nr ")), "{err}");
        }
    }
}
