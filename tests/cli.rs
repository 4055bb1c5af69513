//! The habits of the command line: sizes in SI and IEC units, exactly, and the
//! ambiguous ones refused with the question to answer; a `--cwd` the jail does not show
//! refused before anything runs; a relative program path taken from the jail's working
//! directory through the bind that shows it, alike in the library and the CLI.

mod common;
use common::*;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

/// The report's `limits` entry named `name`.
fn limit_value(run: &Run, name: &str) -> String {
    run.report["limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .map(|l| l["value"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no {name} limit in {:#}", run.report))
}

#[test]
fn sizes_take_si_and_iec_units_exactly() {
    let hello = fixture("hello");
    let h = path_str(&hello);
    for (given, written) in [
        ("64MB", "64MB"),
        ("64MiB", "64MiB"),
        ("64M", "64MiB"),
        ("1.5GiB", "1536MiB"),
        ("65536KiB", "64MiB"),
        ("64000kB", "64MB"),
    ] {
        let run = moat_run(
            Caller::Current,
            &["--memory", given, "--file-size", given, "--", h],
        );
        assert_eq!(run.status(), "ok", "{given}: {run:#?}");
        assert_eq!(limit_value(&run, "memory"), written, "{given}");
        assert_eq!(limit_value(&run, "file_size"), written, "{given}");
    }
    // The file-size limit is the exact byte count asked for, SI or IEC: the program
    // may write exactly that many bytes, and not one more.
    let dir = scratch();
    for (given, bytes) in [("10kB", 10_000u64), ("10KiB", 10_240)] {
        for (n, status) in [(bytes, "ok"), (bytes + 1, "output_limit")] {
            let script = format!("exec head -c {n} /dev/zero > {}/f", dir.path().display());
            let run = moat_run(
                Caller::Current,
                &[
                    "--profile",
                    "sh",
                    "--bind-rw",
                    path_str(dir.path()),
                    "--file-size",
                    given,
                    "--",
                    "/bin/sh",
                    "-c",
                    &script,
                ],
            );
            assert_eq!(run.status(), status, "{given} {n}: {run:#?}");
        }
    }
    for (bad, hint) in [
        ("64mb", "did you mean `64MiB` or `64MB`?"),
        ("64Mb", "did you mean `64MiB` or `64MB`?"),
        ("2gib", "did you mean `2GiB` or `2GB`?"),
        ("64", "a unit is required, e.g. `64MiB`"),
        ("64 furlongs", "unknown unit `furlongs`"),
    ] {
        let out = command(Caller::Current)
            .args(["run", "--memory", bad, "--", h])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains(hint), "{bad}: {stderr}");
    }
    // `--help` says which units mean what.
    let out = command(Caller::Current)
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("KiB, MiB, GiB, TiB (IEC: powers of 1024)"),
        "{help}"
    );
    assert!(help.contains("MB, GB, TB (SI: powers of 1000)"), "{help}");
}

#[test]
fn a_cwd_the_jail_does_not_show_is_refused_before_the_run() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("judge")).unwrap();
    let d = path_str(dir.path());
    let typo = format!("{d}/jugde");
    let good = format!("{d}/judge");
    for caller in callers() {
        // A typo below a bound directory.
        let run = moat_run(
            caller,
            &[
                "--profile",
                "sh",
                "--bind",
                d,
                "--cwd",
                &typo,
                "--",
                "/bin/pwd",
            ],
        );
        assert_eq!(
            (run.status(), run.code),
            ("setup_error", 125),
            "{caller:?}: {run:#?}"
        );
        assert!(
            run.stderr
                .contains(&format!("--cwd {typo}: not a directory in the jail")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
        // Below a tmpfs, and somewhere nothing mounts.
        let run = moat_run(
            caller,
            &["--profile", "sh", "--cwd", "/tmp/jugde", "--", "/bin/pwd"],
        );
        assert_eq!(run.status(), "setup_error", "{caller:?}: {run:#?}");
        assert!(
            run.stderr.contains("/tmp is a fresh, empty tmpfs"),
            "{}",
            run.stderr
        );
        let run = moat_run(
            caller,
            &["--profile", "sh", "--cwd", "/nowhere", "--", "/bin/pwd"],
        );
        assert_eq!(run.status(), "setup_error", "{caller:?}: {run:#?}");
        assert!(
            run.stderr.contains("bind the directory first"),
            "{}",
            run.stderr
        );
        // The tmpfs itself is there.
        let run = moat_run(
            caller,
            &["--profile", "sh", "--cwd", "/tmp", "--", "/bin/pwd"],
        );
        assert_run(&run, "ok", 0, "/tmp\n");
        // A directory below a bound one that is there, a bound one, and `/`.
        for (cwd, shown) in [(good.as_str(), good.as_str()), (d, d), ("/", "/")] {
            let run = moat_run(
                caller,
                &[
                    "--profile",
                    "sh",
                    "--bind",
                    d,
                    "--cwd",
                    cwd,
                    "--",
                    "/bin/pwd",
                ],
            );
            assert_run(&run, "ok", 0, &format!("{shown}\n"));
        }
    }
}

#[test]
fn a_relative_program_is_taken_from_the_jails_working_directory() {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::copy(fixture("hello"), dir.path().join("sol")).unwrap();
    let src = format!("{}:/w", dir.path().display());
    for caller in callers() {
        // moat runs from a directory that has no `sol`: the bind's is the one run.
        for (cwd, prog) in [("/w", "./sol"), ("/w/sub", "../sol"), ("/w", "sol/../sol")] {
            let run = moat_run_with(caller, &["--bind", &src, "--cwd", cwd, "--", prog], |c| {
                c.current_dir("/");
            });
            assert_run(&run, "ok", 0, "hello from the jail\n");
        }
        // Out of every bind: not found, saying where it looked.
        let run = moat_run_with(
            caller,
            &["--bind", &src, "--cwd", "/w", "--", "../sol"],
            |c| {
                c.current_dir("/");
            },
        );
        assert_eq!((run.status(), run.code), ("setup_error", 127), "{run:#?}");
        assert!(
            run.stderr
                .contains("/sol in the jail (from the working directory /w)"),
            "{}",
            run.stderr
        );
        // With no bind showing the cwd, the caller's own directory is where it is.
        let run = moat_run_with(caller, &["--", "./sol"], |c| {
            c.current_dir(dir.path());
        });
        assert_run(&run, "ok", 0, "hello from the jail\n");
    }
}

#[test]
fn the_library_resolves_a_relative_program_as_the_cli_does() {
    let dir = scratch();
    std::fs::copy(fixture("hello"), dir.path().join("sol")).unwrap();
    // This process's directory is the crate's, where no `sol` is.
    assert!(!Path::new("sol").exists());
    let overrides = moat::Overrides {
        binds: vec![moat::Bind::parse(
            &format!("{}:/w", dir.path().display()),
            false,
            Path::new("/"),
        )
        .unwrap()],
        cwd: Some("/w".into()),
        ..Default::default()
    };
    let plan = moat::prepare("default", &overrides, &[OsString::from("./sol")], None).unwrap();
    assert_eq!(plan.program(), dir.path().join("sol"));
    let outcome = moat::run(&plan).unwrap();
    assert_eq!(
        (outcome.status, outcome.exit_code),
        (moat::Status::Ok, Some(0))
    );
    // The library refuses the typo'd cwd as the CLI does.
    let typo = moat::Overrides {
        cwd: Some("/w/nowhere".into()),
        ..overrides
    };
    let err = moat::prepare("default", &typo, &[OsString::from("./sol")], None).unwrap_err();
    assert!(
        err.to_string()
            .contains("--cwd /w/nowhere: not a directory in the jail"),
        "{err}"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = command(Caller::Current).arg("--version").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = env!("MOAT_GIT_COMMIT");
    assert_eq!(
        text,
        format!("moat {} (commit {commit})\n", env!("CARGO_PKG_VERSION"))
    );
    // Built from this checkout: the commit is git's own name for HEAD at build time.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if root.join(".git").exists() && std::env::var_os("MOAT_GIT_COMMIT").is_none() {
        assert_eq!(commit.len(), 12, "{commit}");
        assert!(commit.bytes().all(|b| b.is_ascii_hexdigit()), "{commit}");
        let known = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["cat-file", "-t", commit])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&known.stdout).trim(), "commit");
    }
}

#[test]
fn completions_for_each_shell_come_from_the_cli_definition() {
    for (shell, check) in [
        ("bash", "_moat()"),
        ("zsh", "#compdef moat"),
        ("fish", "complete -c moat"),
    ] {
        let out = command(Caller::Current)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(check), "{shell}: {script}");
        for word in ["exit-status", "memory", "serve", "completions"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    // The bash script parses.
    let out = command(Caller::Current)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let dir = scratch();
    let path = dir.path().join("moat.bash");
    std::fs::write(&path, &out.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(check.success());
    let out = command(Caller::Current)
        .args(["completions", "tcsh-ish"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_come_from_the_cli_definition() {
    let out = command(Caller::Current).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH moat 1"), "{page}");
    assert!(page.contains(env!("MOAT_GIT_COMMIT")));
    let dir = scratch();
    let man1 = dir.path().join("share/man/man1");
    let out = command(Caller::Current)
        .args(["man", "--dir"])
        .arg(&man1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let run = std::fs::read_to_string(man1.join("moat-run.1")).unwrap();
    assert!(run.contains(".TH moat-run 1"), "{run}");
    for flag in ["exit\\-status", "memory", "report"] {
        assert!(run.contains(flag), "moat-run.1 has no {flag}");
    }
    for page in [
        "moat.1",
        "moat-serve.1",
        "moat-check.1",
        "moat-completions.1",
    ] {
        assert!(man1.join(page).is_file(), "{page}");
    }
    // An unwritable directory is an error that says so.
    let out = command(Caller::Current)
        .args(["man", "--dir", "/proc/nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write the man pages into /proc/nope")
    );
}

/// `moat ARGS…` as `caller` with `env`, stdin empty: (exit code, stdout, stderr).
fn moat_with_env(caller: Caller, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = command(caller);
    cmd.args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn by_default_stderr_is_the_programs_own_and_errors_only() {
    let script = [
        "--profile",
        "sh",
        "--",
        "/bin/sh",
        "-c",
        "echo out; echo err >&2",
    ];
    for caller in callers() {
        let mut args = vec!["run"];
        args.extend(script);
        let (code, out, err) = moat_with_env(caller, &args, &[]);
        assert_eq!(
            (code, out.as_str(), err.as_str()),
            (0, "out\n", "err\n"),
            "{caller:?}"
        );
        // An error is still said, as `moat: …`, and so is why a run failed; -q keeps
        // moat's own failures only (whatever RUST_LOG says).
        let (code, _, err) = moat_with_env(caller, &["run", "--", "/nonexistent/prog"], &[]);
        assert_eq!(code, 127);
        assert!(
            err.starts_with("moat: program `/nonexistent/prog` not found"),
            "{err}"
        );
        let (code, _, err) = moat_with_env(
            caller,
            &["run", "-q", "--", "/nonexistent/prog"],
            &[("RUST_LOG", "trace")],
        );
        assert_eq!(code, 127);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("moat: program `/nonexistent/prog` not found"),
            "{err}"
        );
        let calls = fixture("sc_calls");
        let violation = ["run", "--", path_str(&calls), "socket"];
        let (code, _, err) = moat_with_env(caller, &violation, &[]);
        assert_eq!(code, 159);
        assert!(err.starts_with("moat: violation: socket"), "{err}");
        let (code, _, err) = moat_with_env(
            caller,
            &[&["-q"], &violation[..]].concat(),
            &[("RUST_LOG", "info")],
        );
        assert_eq!((code, err.as_str()), (159, ""));
    }
}

#[test]
fn verbose_says_what_moat_decided_and_why() {
    let dir = scratch();
    let profile = dir.path().join("mine.toml");
    std::fs::write(&profile, "extends = \"sh\"\n[limits]\nmemory = \"64MB\"\n").unwrap();
    let p = path_str(&profile);
    for caller in callers() {
        let run = [
            "run",
            "--profile",
            p,
            "--no-cache",
            "--",
            "/bin/sh",
            "-c",
            "echo err >&2",
        ];
        let (code, _, err) = moat_with_env(caller, &[&["-v"], &run[..]].concat(), &[]);
        assert_eq!(code, 0, "{err}");
        for want in [
            format!("moat: info profile built-in:sh <- {p} (plan built afresh)"),
            "moat: info program /bin/sh (loader ".into(),
            "moat: info limit memory 64MB: ".into(),
            "moat: info stage ".into(),
            "init builds the root".into(),
            "moat: info verdict ok exit=0".into(),
        ] {
            assert!(err.contains(&want), "{caller:?}: no {want:?} in\n{err}");
        }
        // The program's own line is there, apart from moat's.
        assert!(err.lines().any(|l| l == "err"), "{err}");
        assert!(!err.contains("moat: debug"), "{err}");
        // A caller without a cgroup is told why the monitor enforces the memory limit.
        if caller == Caller::Unprivileged {
            let line = err
                .lines()
                .find(|l| l.contains("limit memory 64MB"))
                .unwrap();
            assert!(line.contains("monitor"), "{line}");
        }
        // -vv adds each file and mount step; RUST_LOG does what -v does when no flag is
        // given.
        let (_, _, err) = moat_with_env(caller, &[&["-vv"], &run[..]].concat(), &[]);
        assert!(
            err.contains("moat: debug file for the program: /bin/sh"),
            "{err}"
        );
        assert!(err.contains("moat: debug mount step: bind "), "{err}");
        let (_, _, err) = moat_with_env(caller, &run, &[("RUST_LOG", "info")]);
        assert!(err.contains("moat: info verdict ok"), "{err}");
        assert!(!err.contains("moat: debug"), "{err}");
        let (_, _, err) = moat_with_env(caller, &run, &[("RUST_LOG", "moat=debug")]);
        assert!(err.contains("moat: debug mount step"), "{err}");
    }
    let (code, _, err) = moat_with_env(
        Caller::Current,
        &["run", "-v", "-q", "--", "/bin/true"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}
