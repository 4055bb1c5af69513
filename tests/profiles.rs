//! Profiles through the command line: errors located in the file, the built-in profiles
//! embedded in the binary, name look-up, and `moat plan` / `moat check`.
mod common;
use common::*;
use std::process::Command;

fn write_profile(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn unknown_keys_are_rejected_with_file_line_and_column() {
    let dir = scratch();
    let path = write_profile(
        dir.path(),
        "typo.toml",
        "[process]\nhostname = \"box\"\nhostnmae = \"oops\"\n",
    );
    for caller in callers() {
        let run = moat_run(caller, &["--profile", &path, "--", "/bin/true"]);
        assert_eq!((run.code, run.status()), (125, "setup_error"), "{run:#?}");
        assert!(
            run.stderr.contains(&format!("{path}:3:1:")) && run.stderr.contains("hostnmae"),
            "{}",
            run.stderr
        );
        let msg = run.report["error"]["message"].as_str().unwrap();
        assert!(msg.contains(":3:1:"), "{msg}");
    }
}

#[test]
fn bad_values_name_the_key_and_place() {
    let dir = scratch();
    for (name, text, located) in [
        (
            "bad.toml",
            "[limits]\nwall_time = \"soon\"\n",
            ":2:13: limits.wall_time:",
        ),
        (
            "core.toml",
            "[syscalls]\nallow = [\"bpf\"]\n",
            ":2:10: syscalls.allow: `bpf` is in moat's always-denied core",
        ),
    ] {
        let path = write_profile(dir.path(), name, text);
        let run = moat_run(Caller::Current, &["--profile", &path, "--", "/bin/true"]);
        assert_eq!(run.code, 125);
        assert!(
            run.stderr.contains(&format!("{path}{located}")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn built_in_profiles_need_no_data_files() {
    // The copy of the binary lives far from the source tree, and HOME/XDG point at
    // empty directories: the default profile must come from the binary itself.
    let empty = scratch();
    for caller in callers() {
        let mut cmd = command(caller);
        cmd.current_dir(empty.path())
            .env("HOME", empty.path())
            .env("XDG_CONFIG_HOME", empty.path())
            .args(["run", "--", "/bin/echo", "embedded"]);
        let out = cmd.output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "embedded\n");
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn names_are_looked_up_in_the_users_directory_first() {
    let xdg = scratch();
    let dir = xdg.path().join("moat/profiles");
    std::fs::create_dir_all(&dir).unwrap();
    open_up(&dir);
    write_profile(
        &dir,
        "default.toml",
        "[process]\nhostname = \"from-xdg\"\n[syscalls]\ngroups = [\"exit\", \"startup\", \"memory\", \"read\", \"write\", \"files\", \"process_info\", \"futex\", \"signals\"]\n",
    );
    write_profile(&dir, "mine.toml", "[process]\nhostname = \"mine\"\n[syscalls]\ngroups = [\"exit\", \"startup\", \"memory\", \"write\", \"process_info\"]\n");
    for caller in callers() {
        // `moat run --profile NAME -- PROG` as `caller`, with the scratch XDG directory.
        let run_named = |name: &str, prog: &str| {
            command(caller)
                .env("XDG_CONFIG_HOME", xdg.path())
                .args(["run", "--profile", name, "--", prog])
                .output()
                .unwrap()
        };
        for (name, expect) in [("default", "from-xdg\n"), ("mine", "mine\n")] {
            let out = run_named(name, "/bin/hostname");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                expect,
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A name found nowhere lists where it looked and the built-in names.
        let out = run_named("nope", "/bin/true");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125));
        assert!(
            err.contains("no profile named `nope`") && err.contains("/etc/moat/profiles"),
            "{err}"
        );
    }
}

#[test]
fn plan_prints_everything_and_runs_nothing() {
    let dir = scratch();
    let marker = dir.path().join("ran");
    let out = Command::new(MOAT)
        .args(["plan", "--bind-rw"])
        .arg(dir.path())
        .args(["--env", "LANG=C", "--wall-time", "3s", "--", "/bin/touch"])
        .arg(&marker)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists(), "plan must not run the program");
    for want in [
        "namespaces  user, pid, mount, ipc, uts, net, cgroup",
        "uid_map     1000 ",
        "hostname    sandbox",
        "  LANG=C",
        "  PATH=/usr/local/bin:/usr/bin:/bin",
        "loader      /lib64/ld-linux-x86-64.so.2",
        "bind     /usr/bin/touch (ro,nosuid,nodev)",
        "tmpfs    /dev (size=64KiB,mode=755,nosuid,nodev,noexec)",
        "bind     /dev/null (rw,nosuid,noexec)",
        "remount  /dev (ro)",
        "wall_time=3s",
        "  read                   allow",
        "  core: always denied: ptrace, bpf, mount",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let bind = format!(
        "bind     {} (rw,nosuid,nodev,noexec,rec)",
        dir.path().display()
    );
    assert!(text.contains(&bind), "missing {bind:?} in:\n{text}");
}

#[test]
fn plan_reports_a_missing_program() {
    let out = Command::new(MOAT)
        .args(["plan", "--", "no-such-program-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("program `no-such-program-xyz` not found")
    );
    let run = moat_run(Caller::Current, &["--", "/etc/hostname"]);
    assert_eq!((run.code, run.status()), (126, "setup_error"), "{run:#?}");
    assert_eq!(run.report["error"]["kind"], "program_not_executable");
    let run = moat_run(Caller::Current, &["--", "/no/such/prog"]);
    assert_eq!((run.code, run.status()), (127, "setup_error"), "{run:#?}");
    assert_eq!(run.report["error"]["kind"], "program_not_found");
}

#[test]
fn check_reports_this_host() {
    for caller in callers() {
        let out = command(caller).arg("check").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(text.contains("user_namespaces"), "{text}");
        let out = command(caller).args(["check", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let userns = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "user_namespaces")
            .unwrap();
        assert_eq!(userns["state"], "ok");
    }
}

#[test]
fn blocked_user_namespaces_are_explained() {
    // Inside a user namespace of our own, its root may forbid further user namespaces
    // without touching the host: moat must say why and how to fix it, not just EPERM.
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {} run -- /bin/true",
        moat_bin().display()
    );
    let out = Command::new("unshare")
        .args(["-Ur", "sh", "-c", &script])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains("user.max_user_namespaces is 0"), "{err}");
    assert!(err.contains("sysctl -w user.max_user_namespaces="), "{err}");
}

#[test]
fn profiles_lists_built_in_and_user_profiles() {
    let xdg = scratch();
    let dir = xdg.path().join("moat/profiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("judge.toml"), "description = \"my judge\"\n").unwrap();
    std::fs::write(dir.join("broken.toml"), "nonsense = 1\n").unwrap();
    let out = Command::new(MOAT)
        .arg("profiles")
        .env("XDG_CONFIG_HOME", xdg.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_string()
    };
    assert!(
        line("default").contains("built-in") && line("default").contains("one native"),
        "{text}"
    );
    assert!(line("judge").ends_with("my judge"), "{text}");
    assert!(
        line("broken").contains("does not load") && line("broken").contains("nonsense"),
        "{text}"
    );
}

#[test]
fn profile_arguments_follow_the_run_limits() {
    let dir = scratch();
    let path = write_profile(
        dir.path(),
        "args.toml",
        "extends = \"default\"\n[process]\nargs = [\"fixed\", \"heap={memory_mib*3/4}m\", \"stack={stack_mib}m\"]\n",
    );
    for caller in callers() {
        let run = moat_run(
            caller,
            &[
                "--profile",
                &path,
                "--memory",
                "256MiB",
                "--",
                "/bin/echo",
                "user",
            ],
        );
        assert_run(&run, "ok", 0, "fixed heap=192m user\n");
        // Without the limit, the argument that needs it is left out.
        let run = moat_run(caller, &["--profile", &path, "--", "/bin/echo", "user"]);
        assert_run(&run, "ok", 0, "fixed user\n");
    }
    let bad = write_profile(
        dir.path(),
        "bad-args.toml",
        "[process]\nargs = [\"-Xmx{memroy_mib}m\"]\n",
    );
    let run = moat_run(Caller::Current, &["--profile", &bad, "--", "/bin/true"]);
    assert_eq!(run.code, 125);
    assert!(
        run.stderr
            .contains("bad-args.toml:2:9: process.args: `{memroy_mib}`: unknown value"),
        "{}",
        run.stderr
    );
}
