//! `moat learn`: it writes a profile that lets the program run, and nothing more.
mod common;
use common::*;
use std::process::Command;

#[test]
fn learned_profile_runs_the_program_and_stops_one_more_call() {
    let prog = fixture("learn_prog");
    let p = path_str(&prog);
    for caller in callers() {
        let dir = scratch();
        let data = dir.path().join("data.txt");
        std::fs::write(&data, "payload\n").unwrap();
        let saved = dir.path().join("learned.toml");
        let out = command(caller)
            .arg("learn")
            .arg("--save")
            .arg(&saved)
            .args(["--", p, "base"])
            .arg(&data)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{err}");
        // Learning let the calls through: the run itself worked (the file was not in
        // the jail yet).
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "socket=ok pipe=ok file=missing\n"
        );
        let text = std::fs::read_to_string(&saved).unwrap();
        assert!(text.contains("extends = \"default\""), "{text}");
        assert!(text.contains("allow = [\"pipe2\", \"socket\"]"), "{text}");
        assert!(
            text.contains(&format!("src = \"{}\"", data.display())),
            "{text}"
        );
        assert!(
            err.contains("2 syscalls beyond default, 1 files to bind"),
            "{err}"
        );

        let profile = saved.display().to_string();
        let data = data.display().to_string();
        let run = moat_run(caller, &["--profile", &profile, "--", p, "base", &data]);
        assert_run(&run, "ok", 0, "socket=ok pipe=ok file=payload\n");
        // One more call than was learned is a violation that says how to allow it.
        let run = moat_run(caller, &["--profile", &profile, "--", p, "more", &data]);
        assert_eq!((run.status(), run.code), ("violation", 159), "{run:#?}");
        assert_eq!(run.report["violation"]["syscall"], "eventfd2");
        assert!(
            run.stderr
                .contains("eventfd2 (nr 290, arch x86_64) is not allowed by profile")
                && run
                    .stderr
                    .contains("add it to [syscalls] allow (or the group `pipes` under groups)")
                && run.stderr.contains("moat learn"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn learning_never_allows_the_core() {
    let prog = fixture("learn_prog");
    for caller in callers() {
        let dir = scratch();
        let saved = dir.path().join("learned.toml");
        let out = moat_learn(caller, &saved, &[path_str(&prog), "ptrace"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(159), "{err}");
        assert!(
            err.contains("ptrace (nr 101, arch x86_64) is not allowed")
                && err.contains("always-denied core"),
            "{err}"
        );
        let text = std::fs::read_to_string(&saved).unwrap();
        assert!(!text.contains("\"ptrace\""), "{text}");
    }
}

#[test]
fn learned_profile_takes_the_template_for_etc_files() {
    // /usr/bin/id reads /etc/passwd: the learned profile takes the template rather
    // than the host's file, and the user is the jail's own.
    let dir = scratch();
    let saved = dir.path().join("id.toml");
    let out = Command::new(MOAT)
        .arg("learn")
        .arg("--save")
        .arg(&saved)
        .args(["--", "/usr/bin/id", "-un"])
        .output()
        .unwrap();
    // The learning run had no /etc/passwd: `id` fails there, and learn passes that on.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot find name for user ID 1000"), "{err}");
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.contains("template = \"base\"") && !text.contains("src = \"/etc/passwd\""),
        "{text}"
    );
    for caller in callers() {
        let run = moat_run(
            caller,
            &[
                "--profile",
                &saved.display().to_string(),
                "--",
                "/usr/bin/id",
                "-un",
            ],
        );
        assert_run(&run, "ok", 0, "sandbox\n");
    }
}
