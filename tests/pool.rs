//! The warm pool through the library: runs started in jails made ahead give the verdicts,
//! output and exit codes of cold runs, and nothing one run leaves (files in /tmp and
//! the work dir, a process, a SysV segment, an abstract socket) reaches the next.
//!
//! `moat::Pool::start` must be called while the process has one thread, so this test
//! brings its own main (`harness = false`): it starts the pool first, then runs each
//! check in turn. As root it then runs itself again as uid 65534, so the rootless fork
//! server (which owns its network namespace through a user namespace of its own) is
//! tested too.

mod common;
use common::*;
use moat::request::{Command, ExecOptions, FileCache, Input, Output};
use moat::{Pool, Request, Status};
use std::sync::Arc;

type Check = fn(&Arc<Pool>);

const CHECKS: &[(&str, Check)] = &[
    (
        "warm_runs_give_the_verdicts_of_cold_ones",
        warm_runs_give_the_verdicts_of_cold_ones,
    ),
    (
        "nothing_one_run_leaves_reaches_the_next",
        nothing_one_run_leaves_reaches_the_next,
    ),
    (
        "a_run_with_sockets_gets_a_network_of_its_own",
        a_run_with_sockets_gets_a_network_of_its_own,
    ),
    (
        "the_pool_refills_and_leaves_nothing_behind",
        the_pool_refills_and_leaves_nothing_behind,
    ),
    (
        "a_caller_with_a_child_of_its_own_is_not_kept_waiting",
        a_caller_with_a_child_of_its_own_is_not_kept_waiting,
    ),
    (
        "a_root_owned_writable_bind_is_mapped_in_a_warm_jail",
        a_root_owned_writable_bind_is_mapped_in_a_warm_jail,
    ),
];

fn main() {
    let child = std::env::var_os("MOAT_POOL_TEST_AS").is_some();
    // Before anything starts a thread.
    let pool = match Pool::start(2) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start the pool: {e}");
            std::process::exit(1);
        }
    };
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let who = if child { "uid 65534" } else { "this user" };
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&pool)));
        println!(
            "test {name} ({who}) ... {}",
            if got.is_ok() { "ok" } else { "FAILED" }
        );
        if got.is_err() {
            failed.push(*name);
        }
    }
    drop(pool);
    if !child && is_root() {
        // The rootless path: the same checks as uid 65534.
        let me = std::env::current_exe().expect("own path");
        let status = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&me)
            .args(&filter)
            .env("MOAT_POOL_TEST_AS", "65534")
            .status()
            .expect("setpriv runs");
        if !status.success() {
            failed.push("(as uid 65534)");
        }
    }
    if failed.is_empty() {
        println!("\ntest result: ok. {who}");
    } else {
        println!("\ntest result: FAILED: {failed:?}");
        std::process::exit(1);
    }
}

fn exec(pool: &Arc<Pool>, commands: Vec<Command>) -> moat::Response {
    let opts = ExecOptions {
        pool: Some(pool.clone()),
        ..ExecOptions::default()
    };
    moat::request::exec_with(
        &Request {
            commands,
            ..Request::default()
        },
        &FileCache::default(),
        &opts,
    )
}

fn sh(script: &str) -> Command {
    let mut c = Command::new(&["/bin/sh", "-c", script]);
    c.profile = "sh".into();
    c.stdout = Output::Collect(1 << 16);
    c.stderr = Output::Collect(1 << 16);
    c
}

fn stdout(r: &moat::Response, i: usize) -> String {
    String::from_utf8_lossy(r.results[i].stdout.as_deref().unwrap_or_default()).into_owned()
}

fn warm_runs_give_the_verdicts_of_cold_ones(pool: &Arc<Pool>) {
    let mut cat = sh("cat; echo two >&2; exit 3");
    cat.stdin = Input::Bytes(b"one\n".to_vec().into());
    let r = exec(pool, vec![cat]);
    assert!(r.error.is_none(), "{:?}", r.error);
    let o = &r.results[0].outcome;
    assert_eq!(
        (o.status, o.exit_code),
        (Status::NonzeroExit, Some(3)),
        "{o:?}"
    );
    assert_eq!(stdout(&r, 0), "one\n");
    assert_eq!(r.results[0].stderr.as_deref(), Some(&b"two\n"[..]));

    // A violation: the default profile has no socket().
    let prog = fixture("pool_leave");
    let mut c = Command::new(&[path_str(&prog), "leave"]);
    c.profile = "default".into();
    let r = exec(pool, vec![c]);
    let o = &r.results[0].outcome;
    assert_eq!(o.status, Status::Violation, "{o:?}");
    let v = o.violation.as_ref().expect("a violation");
    assert_eq!(v.syscall, "shmget", "{v:?}");

    // Limits hold as on the cold path: a wall-time limit ends a sleeper.
    let mut c = sh("sleep 5");
    c.profile = "sh".into();
    c.limits.wall_time = Some(std::time::Duration::from_millis(300));
    let r = exec(pool, vec![c]);
    assert_eq!(r.results[0].outcome.status, Status::WallTimeLimit);
}

fn leave_and_look(pool: &Arc<Pool>, profile: &str) {
    let prog = fixture("pool_leave");
    let run = |what: &str| {
        let mut c = Command::new(&[path_str(&prog), what]);
        c.profile = profile.to_string();
        c.stdout = Output::Collect(4096);
        let r = exec(pool, vec![c]);
        assert_eq!(
            r.results[0].outcome.status,
            Status::Ok,
            "{what}: {:?}",
            r.results[0].outcome
        );
        stdout(&r, 0)
    };
    assert_eq!(run("leave"), "tmp 1 work 1 shm 1 socket 1 child 1\n");
    // The next run: none of it. Its /proc shows init and itself.
    assert_eq!(run("look"), "tmp 0 work 0 shm 0 socket 0 processes 2\n");
}

fn nothing_one_run_leaves_reaches_the_next(pool: &Arc<Pool>) {
    leave_and_look(pool, &profile("pool_leave"));
}

fn a_run_with_sockets_gets_a_network_of_its_own(pool: &Arc<Pool>) {
    let before = pool.stats().made_on_demand;
    leave_and_look(pool, &profile("pool_leave_net"));
    assert_eq!(
        pool.stats().made_on_demand,
        before + 2,
        "{:?}",
        pool.stats()
    );
}

fn children_of(pid: i32) -> usize {
    let list =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    list.split_whitespace().count()
}

fn the_pool_refills_and_leaves_nothing_behind(pool: &Arc<Pool>) {
    for _ in 0..20 {
        let r = exec(pool, vec![sh("true")]);
        assert_eq!(r.results[0].outcome.status, Status::Ok);
    }
    // The pool is filled again in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pool.stats().ready < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let s = pool.stats();
    assert_eq!(s.ready, 2, "{s:?}");
    assert!(s.taken >= 20, "{s:?}");
    // The fork server holds the jails kept ready and nothing else: every jail a run
    // took is gone (no zombie waits for a reaper).
    assert_eq!(children_of(pool.server_pid()), 2);
}

fn a_caller_with_a_child_of_its_own_is_not_kept_waiting(pool: &Arc<Pool>) {
    // This thread's own child: the monitor must neither wait for it nor reap it.
    let mut mine = std::process::Command::new("/bin/sleep")
        .arg("30")
        .spawn()
        .unwrap();
    for pooled in [None, Some(pool.clone())] {
        let opts = ExecOptions {
            pool: pooled,
            ..ExecOptions::default()
        };
        let began = std::time::Instant::now();
        let r = moat::request::exec_with(
            &Request {
                commands: vec![sh("echo done")],
                ..Request::default()
            },
            &FileCache::default(),
            &opts,
        );
        assert_eq!(stdout(&r, 0), "done\n");
        assert!(began.elapsed() < std::time::Duration::from_secs(10));
    }
    assert!(
        mine.try_wait().unwrap().is_none(),
        "the caller's child was reaped by the monitor"
    );
    mine.kill().unwrap();
    assert!(!mine.wait().unwrap().success());
}

/// A root caller's writable bind of a root-owned directory (see tests/idmap.rs), in a
/// jail made ahead: the id-mapped mount travels to init with the order.
fn a_root_owned_writable_bind_is_mapped_in_a_warm_jail(pool: &Arc<Pool>) {
    if !is_root() {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::Builder::new()
        .prefix("moat-idmap-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = path_str(dir.path());
    let prof = scratch();
    let prof_path = prof.path().join("rw.toml");
    std::fs::write(
        &prof_path,
        format!("extends = \"sh\"\n[[filesystem.bind]]\nsrc = \"{d}\"\nrw = true\n"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pool.stats().ready == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let before = pool.stats();
    let mut c = sh(&format!(
        "echo warm > {d}/f && ls -ln {d}/f | cut -d' ' -f3,4"
    ));
    c.profile = path_str(&prof_path).to_string();
    let r = exec(pool, vec![c]);
    assert_eq!(r.results[0].outcome.status, Status::Ok, "{r:?}");
    assert_eq!(stdout(&r, 0), "1000 1000\n");
    let after = pool.stats();
    assert_eq!(after.made_on_demand, before.made_on_demand, "{after:?}");
    let f = dir.path().join("f");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "warm\n");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
}
