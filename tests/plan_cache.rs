//! The plan cache: a kept plan is used only while every input it was built from is as
//! it was, and no cache file can lift the core. Each test has its own cache directory;
//! inputs are made, then left to settle for longer than the cache's one-second window
//! (a file changed within it is not trusted to show its next change), then used.

mod common;
use common::*;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn prepare(profile: &str, command: &[&Path], cache: &moat::PlanCache) -> moat::Plan {
    let argv: Vec<OsString> = command.iter().map(|p| p.as_os_str().to_owned()).collect();
    moat::prepare(profile, &moat::Overrides::default(), &argv, Some(cache)).unwrap()
}

/// A private directory for one test's cache and inputs.
fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("moat-cache-test-")
        .tempdir()
        .unwrap()
}

fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let ok = Command::new("gcc")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(flags)
        .status()
        .unwrap()
        .success();
    assert!(ok, "compiling {name}");
    out
}

#[test]
fn a_kept_plan_is_the_plan_built_afresh() {
    let dir = private_dir();
    let cache = moat::PlanCache::new(dir.path().join("cache"));
    let prog = compile(dir.path(), "p", "int main(void){return 0;}", &[]);
    settle();
    let fresh = prepare("default", &[&prog], &cache);
    assert!(!fresh.from_cache());
    let kept = prepare("default", &[&prog], &cache);
    assert!(kept.from_cache(), "the second plan comes from the cache");
    assert_eq!(kept.to_string(), fresh.to_string());
    // And it runs.
    let o = moat::run(&kept).unwrap();
    assert_eq!(o.status, moat::Status::Ok, "{o:?}");
    // Another command is another entry.
    let other = prepare("default", &[&prog, Path::new("x")], &cache);
    assert!(!other.from_cache());
}

#[test]
fn a_changed_program_is_planned_again() {
    let dir = private_dir();
    let cache = moat::PlanCache::new(dir.path().join("cache"));
    let prog = compile(dir.path(), "p", "int main(void){return 0;}", &["-static"]);
    settle();
    prepare("default", &[&prog], &cache);
    assert!(prepare("default", &[&prog], &cache).from_cache());
    // Rewritten in place with the same size: a static program becomes a dynamic one
    // would need other files; any change at all must be seen.
    let mut bytes = std::fs::read(&prog).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&prog, &bytes).unwrap();
    settle();
    assert!(!prepare("default", &[&prog], &cache).from_cache());
    assert!(prepare("default", &[&prog], &cache).from_cache());
    // Replaced by another file (a new inode) at the same path: seen too.
    let other = compile(dir.path(), "q", "int main(void){return 1;}", &["-static"]);
    std::fs::rename(&other, &prog).unwrap();
    settle();
    assert!(!prepare("default", &[&prog], &cache).from_cache());
}

#[test]
fn a_changed_library_or_a_new_one_earlier_in_the_search_is_planned_again() {
    let dir = private_dir();
    let cache = moat::PlanCache::new(dir.path().join("cache"));
    let lib_dir = dir.path().join("lib");
    let early = dir.path().join("early");
    std::fs::create_dir_all(&lib_dir).unwrap();
    std::fs::create_dir_all(&early).unwrap();
    let lib_src = dir.path().join("g.c");
    std::fs::write(&lib_src, "int greet(void){return 7;}").unwrap();
    let lib = lib_dir.join("libg.so");
    let ok = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&lib_src)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let rpath = format!("-Wl,-rpath,{}:{}", early.display(), lib_dir.display());
    let link = format!("-L{}", lib_dir.display());
    let prog = compile(
        dir.path(),
        "m",
        "int greet(void); int main(void){return greet() == 7 ? 0 : 1;}",
        &[&link, "-lg", &rpath],
    );
    settle();
    let first = prepare("default", &[&prog], &cache);
    assert!(first.to_string().contains(&lib.display().to_string()));
    assert!(prepare("default", &[&prog], &cache).from_cache());
    // The library changes: planned again.
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.push(0);
    std::fs::write(&lib, &bytes).unwrap();
    settle();
    assert!(!prepare("default", &[&prog], &cache).from_cache());
    assert!(prepare("default", &[&prog], &cache).from_cache());
    // A library of that name appears in a directory searched before it: the loader
    // would now take that one, and so does the new plan.
    let shadow = early.join("libg.so");
    std::fs::copy(&lib, &shadow).unwrap();
    settle();
    let again = prepare("default", &[&prog], &cache);
    assert!(!again.from_cache());
    assert!(again.to_string().contains(&shadow.display().to_string()));
}

#[test]
fn a_changed_profile_file_is_read_again() {
    let dir = private_dir();
    let cache = moat::PlanCache::new(dir.path().join("cache"));
    let prog = compile(dir.path(), "p", "int main(void){return 0;}", &["-static"]);
    let profile = dir.path().join("mine.toml");
    let text = |host: &str| format!("extends = \"default\"\n[process]\nhostname = \"{host}\"\n");
    std::fs::write(&profile, text("aaaa")).unwrap();
    settle();
    let p = profile.to_str().unwrap();
    assert!(prepare(p, &[&prog], &cache)
        .to_string()
        .contains("hostname    aaaa"));
    assert!(prepare(p, &[&prog], &cache).from_cache());
    // Same size, other contents.
    std::fs::write(&profile, text("bbbb")).unwrap();
    settle();
    let again = prepare(p, &[&prog], &cache);
    assert!(!again.from_cache());
    assert!(again.to_string().contains("hostname    bbbb"));
}

#[test]
fn a_file_changed_just_before_planning_is_not_trusted_to_show_its_next_change() {
    let dir = private_dir();
    let cache = moat::PlanCache::new(dir.path().join("cache"));
    let prog = compile(dir.path(), "p", "int main(void){return 0;}", &["-static"]);
    // No settling: the program is too new for its times to be trusted.
    prepare("default", &[&prog], &cache);
    assert!(!prepare("default", &[&prog], &cache).from_cache());
}

#[test]
fn a_tampered_cache_cannot_lift_the_core() {
    let dir = private_dir();
    let cache_dir = dir.path().join("cache");
    let cache = moat::PlanCache::new(&cache_dir);
    let prog = fixture("core_calls");
    let argv = [prog.as_path(), Path::new("ptrace")];
    settle();
    prepare("default", &argv, &cache);
    let entry = std::fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("the plan was kept")
        .path();
    // Whoever can write the cache adds an allow of ptrace to the kept rules.
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    value["parts"]["policy"]["rules"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "ptrace", "nr": 101, "action": "Allow", "conditions": [], "origin": "tampered"
        }));
    std::fs::write(&entry, serde_json::to_vec(&value).unwrap()).unwrap();
    let kept = prepare("default", &argv, &cache);
    assert!(kept.from_cache(), "the tampered entry is the one used");
    let opts = moat::RunOptions {
        stdout: Some("/dev/null".into()),
        ..moat::RunOptions::default()
    };
    let o = moat::run_with(&kept, &opts).unwrap();
    assert_eq!(o.status, moat::Status::Violation, "{o:?}");
    assert_eq!(o.violation.unwrap().syscall, "ptrace");
}

#[test]
fn entries_anyone_else_may_write_and_garbage_are_ignored() {
    let dir = private_dir();
    let cache_dir = dir.path().join("cache");
    let cache = moat::PlanCache::new(&cache_dir);
    let prog = compile(dir.path(), "p", "int main(void){return 0;}", &["-static"]);
    settle();
    prepare("default", &[&prog], &cache);
    let entry = std::fs::read_dir(&cache_dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .unwrap()
        .path();
    assert!(prepare("default", &[&prog], &cache).from_cache());
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(!prepare("default", &[&prog], &cache).from_cache());
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(prepare("default", &[&prog], &cache).from_cache());
    std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(!prepare("default", &[&prog], &cache).from_cache());
    std::fs::set_permissions(&cache_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(&entry, b"{ not a plan").unwrap();
    let rebuilt = prepare("default", &[&prog], &cache);
    assert!(!rebuilt.from_cache());
    assert!(prepare("default", &[&prog], &cache).from_cache());
}

/// `moat run --timings` as `caller` with the cache and profile directories given.
fn cli(caller: Caller, moat: &Path, cache: &Path, config: &Path, prog: &Path) -> (String, String) {
    let mut cmd = match caller {
        Caller::Current => Command::new(moat),
        Caller::Unprivileged => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(moat);
            c
        }
    };
    let out = cmd
        .env("XDG_CACHE_HOME", cache)
        .env("XDG_CONFIG_HOME", config)
        .args(["run", "--timings", "--summary", "--"])
        .arg(prog)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn from_cache(stderr: &str) -> bool {
    stderr.contains("plan from the cache")
}

#[test]
fn the_cli_keeps_plans_per_user_and_sees_a_new_profile_and_a_new_moat() {
    for caller in callers() {
        let dir = scratch();
        let home = dir.path().join(format!("{caller:?}"));
        std::fs::create_dir_all(&home).unwrap();
        if caller == Caller::Unprivileged {
            nix::unistd::chown(&home, Some(65534.into()), Some(65534.into())).unwrap();
        }
        let (cache, config) = (home.join("cache"), home.join("config"));
        let prog = static_fixture("noop");
        let moat = moat_bin();
        settle();
        let (_, first) = cli(caller, &moat, &cache, &config, &prog);
        assert!(!from_cache(&first), "{first}");
        let (_, second) = cli(caller, &moat, &cache, &config, &prog);
        assert!(from_cache(&second), "{caller:?}: {second}");
        // A profile named `default` appears in the user's profile directory: it now
        // shadows the built-in one, so the kept plan is stale.
        let profiles = config.join("moat/profiles");
        let mkdir = match caller {
            Caller::Current => Command::new("mkdir"),
            Caller::Unprivileged => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "mkdir"]);
                c
            }
        }
        .arg("-p")
        .arg(&profiles)
        .status()
        .unwrap();
        assert!(mkdir.success());
        let builtin = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/default.toml"),
        )
        .unwrap();
        let mine = builtin.replace("hostname = \"sandbox\"", "hostname = \"mine\"");
        assert_ne!(mine, builtin);
        std::fs::write(profiles.join("default.toml"), mine).unwrap();
        settle();
        let (_, third) = cli(caller, &moat, &cache, &config, &prog);
        assert!(!from_cache(&third), "{third}");
        let plan = command(caller)
            .env("XDG_CACHE_HOME", &cache)
            .env("XDG_CONFIG_HOME", &config)
            .args(["plan", "--"])
            .arg(&prog)
            .output()
            .unwrap();
        let plan = String::from_utf8_lossy(&plan.stdout);
        assert!(
            plan.contains("hostname    mine") && plan.contains("moat/profiles/default.toml"),
            "the user's profile is the one used: {plan}"
        );
        // Another moat binary (an upgrade, a rebuild) never reuses the plans of this one.
        let other = dir.path().join(format!("moat-other-{caller:?}"));
        std::fs::copy(&moat, &other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, fourth) = cli(caller, &other, &cache, &config, &prog);
        assert!(!from_cache(&fourth), "{fourth}");
        // --no-cache: built afresh, nothing read.
        let out = command(caller)
            .env("XDG_CACHE_HOME", &cache)
            .env("XDG_CONFIG_HOME", &config)
            .args(["run", "--timings", "--no-cache", "--"])
            .arg(&prog)
            .output()
            .unwrap();
        assert!(!from_cache(&String::from_utf8_lossy(&out.stderr)));
    }
}

#[test]
fn timings_name_every_phase_and_add_up() {
    let prog = static_fixture("noop");
    let dir = scratch();
    let out = command(Caller::Current)
        .env("XDG_CACHE_HOME", dir.path())
        .args(["run", "--timings", "--"])
        .arg(&prog)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    for phase in [
        "moat's start before main",
        "command line parsed",
        "plan",
        "clone with namespaces",
        "id maps written, monitor attached",
        "init builds the root",
        "program's process: fork, privileges, seccomp, execve",
        "the program runs",
        "program and init exit, jail reaped",
        "verdict and report",
        "total",
    ] {
        assert!(err.contains(phase), "no `{phase}` in\n{err}");
    }
    // The shares add up to the whole (each printed to 0.1%).
    let shares: f64 = err
        .lines()
        .filter(|l| l.contains("ms") && !l.ends_with("total"))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(2)?
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
        })
        .sum();
    assert!((shares - 100.0).abs() < 1.0, "{shares} in\n{err}");
}
