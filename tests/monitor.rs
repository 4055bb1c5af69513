//! The monitor: threads and child processes are traced from birth, the wall-time limit
//! and a violation end the whole process tree, killing moat leaves nothing behind, and
//! several jails monitored from several threads of one process each get their own verdict.

mod common;
use common::*;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Runs a fixture that makes a violation from a thread or child while the main
/// process is blocked for 30 s, and checks that the violation ends everything at once.
fn violation_from_descendant(fixture_name: &str, profile_name: &str) {
    let prog = fixture(fixture_name);
    let prof = profile(profile_name);
    for caller in callers() {
        let mark = marker("mon", fixture_name);
        let start = Instant::now();
        let run = moat_run(caller, &["--profile", &prof, "--", path_str(&prog), &mark]);
        let took = start.elapsed();
        assert_run(&run, "violation", 159, "");
        assert_eq!(run.report["violation"]["syscall"], "socket", "{run:#?}");
        assert_eq!(run.report["violation"]["arch"], "x86_64", "{run:#?}");
        // The main thread (or parent) was blocked for 30 s: only killing the whole
        // jail on the violation makes the run end this early.
        assert!(
            took < Duration::from_secs(10),
            "{caller:?}: the run took {took:?}: the violation did not kill the whole jail"
        );
        assert_none_alive(&mark, &format!("{fixture_name} as {caller:?}"));
    }
}

#[test]
fn a_thread_is_traced_from_birth_and_its_violation_kills_the_jail() {
    violation_from_descendant("mon_thread_socket", "mon_threads");
}

#[test]
fn a_forked_child_is_traced_from_birth_and_its_violation_kills_the_jail() {
    violation_from_descendant("mon_fork_socket", "mon_fork");
}

/// Runs `fixture_name` under a 1 s wall-time limit and checks the verdict, the bound on
/// how long moat took, and that nothing of the jail survived.
fn wall_time_ends_tree(fixture_name: &str) {
    let prog = fixture(fixture_name);
    let prof = profile("mon_fork");
    for caller in callers() {
        let mark = marker("mon", fixture_name);
        let start = Instant::now();
        let run = moat_run(
            caller,
            &[
                "--profile",
                &prof,
                "--wall-time",
                "1s",
                "--",
                path_str(&prog),
                &mark,
            ],
        );
        let took = start.elapsed();
        assert_run(&run, "wall_time_limit", 124, "");
        assert!(
            took < Duration::from_secs(5),
            "{fixture_name} as {caller:?}: moat returned after {took:?}, not soon after the 1 s limit"
        );
        assert!(
            took >= Duration::from_millis(1000),
            "{fixture_name} as {caller:?}: moat returned after {took:?}, before the 1 s limit"
        );
        let wall = run.report["wall_time_ms"].as_u64().unwrap();
        assert!(
            (1000..5000).contains(&wall),
            "{fixture_name} as {caller:?}: wall_time_ms = {wall}"
        );
        assert_none_alive(&mark, &format!("{fixture_name} as {caller:?}"));
    }
}

#[test]
fn wall_time_ends_a_program_that_sleeps_forever() {
    wall_time_ends_tree("mon_sleep_forever");
}

#[test]
fn wall_time_ends_a_child_that_ignores_every_signal() {
    wall_time_ends_tree("mon_deaf_child");
}

#[test]
fn wall_time_ends_a_stopped_child() {
    wall_time_ends_tree("mon_stopped_child");
}

#[test]
fn wall_time_ends_a_program_in_pause() {
    wall_time_ends_tree("mon_pause");
}

#[test]
fn a_sigalrm_the_program_sends_init_does_not_end_the_run_before_its_wall_time() {
    // init's own timer stops init with SIGALRM to wake the monitor at the deadline; the
    // program can send init the same signal, which must change nothing.
    let prog = static_fixture("mon_alarm_init");
    for caller in callers() {
        let start = Instant::now();
        let run = moat_run(caller, &["--wall-time", "1s", "--", path_str(&prog)]);
        let took = start.elapsed();
        assert_run(&run, "wall_time_limit", 124, "alive\n");
        assert!(
            took >= Duration::from_millis(1000),
            "{caller:?}: ended after {took:?}"
        );
        let wall = run.report["wall_time_ms"].as_u64().unwrap();
        assert!(
            (1000..5000).contains(&wall),
            "{caller:?}: wall_time_ms = {wall}"
        );
    }
}

#[test]
fn killing_moat_leaves_no_process_of_the_jail() {
    let prog = fixture("mon_fork_sleepers");
    let prof = profile("mon_fork");
    for caller in callers() {
        let mark = marker("mon", "sleepers");
        let report = ReportFile::new();
        let mut cmd = report.run(
            command(caller),
            &["--profile", &prof, "--", path_str(&prog), &mark],
        );
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut moat = cmd.spawn().expect("start moat");
        let moat_pid = moat.id() as i32;
        // The program and its three children (init wipes the argv it shares with moat;
        // if it still carries the marker, it is counted too).
        let jail = || -> Vec<i32> {
            marked_pids(&mark)
                .into_iter()
                .filter(|&p| p != moat_pid)
                .collect()
        };
        let started = poll(Duration::from_secs(10), Duration::from_millis(20), || {
            jail().len() >= 4
        });
        if !started {
            let _ = moat.kill();
            let _ = moat.wait();
            let seen = jail();
            assert_none_alive(&mark, "cleanup");
            panic!("{caller:?}: the jail's processes did not all appear: {seen:?}");
        }
        moat.kill().expect("SIGKILL moat");
        let status = moat.wait().unwrap();
        assert!(
            !status.success(),
            "{caller:?}: moat was not killed: {status:?}"
        );
        let gone = poll(Duration::from_secs(5), Duration::from_millis(20), || {
            marked_pids(&mark).is_empty()
        });
        if !gone {
            assert_none_alive(&mark, &format!("{caller:?}: 5 s after kill -9 of moat"));
        }
        assert!(
            !report.path.exists(),
            "{caller:?}: a killed moat cannot have written a report"
        );
    }
}

/// What one of the concurrent runs does, and the verdict it must get.
struct Job {
    sleep_ms: u32,
    mode: &'static str,
    wall_time: Option<Duration>,
}

fn job(i: usize) -> Job {
    let sleep_ms = [0, 300, 0, 500, 100, 200, 0, 400][i];
    match i {
        5 => Job {
            sleep_ms,
            mode: "socket",
            wall_time: Some(Duration::from_secs(20)),
        },
        6 => Job {
            sleep_ms,
            mode: "hang",
            wall_time: Some(Duration::from_secs(1)),
        },
        // A generous limit, so that a jail stuck before its program starts fails the
        // test in 20 s instead of the profile's 60 s.
        _ => Job {
            sleep_ms,
            mode: "exit",
            wall_time: Some(Duration::from_secs(20)),
        },
    }
}

#[test]
fn eight_jails_from_eight_threads_each_get_their_own_verdict() {
    let prog = fixture("mon_exit_code");
    // Several rounds: a jail cloned while another thread of this process is starting a
    // thread is the race this test exists to catch.
    for round in 0..8 {
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let prog = prog.clone();
                std::thread::spawn(move || {
                    let job = job(i);
                    let overrides = moat::Overrides {
                        limits: moat::Limits {
                            wall_time: job.wall_time,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let policy = moat::Policy::load("default", &overrides).unwrap();
                    let argv: Vec<OsString> = vec![
                        prog.into(),
                        format!("value-{round}-{i}").into(),
                        (10 + i).to_string().into(),
                        job.sleep_ms.to_string().into(),
                        job.mode.into(),
                    ];
                    let plan = moat::Plan::build(policy, &argv).unwrap();
                    barrier.wait();
                    moat::run(&plan).unwrap()
                })
            })
            .collect();
        let outcomes: Vec<moat::Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        for (i, out) in outcomes.iter().enumerate() {
            let ctx = format!("round {round}, thread {i}: {}", out.to_json());
            match job(i).mode {
                "socket" => {
                    assert_eq!(out.status, moat::Status::Violation, "{ctx}");
                    assert_eq!(out.exit_code(), 159, "{ctx}");
                    let v = out.violation.as_ref().expect("a violation");
                    assert_eq!(v.syscall, "socket", "{ctx}");
                    assert_eq!(v.arch, "x86_64", "{ctx}");
                }
                "hang" => {
                    assert_eq!(out.status, moat::Status::WallTimeLimit, "{ctx}");
                    assert_eq!(out.exit_code(), 124, "{ctx}");
                    assert_eq!(out.violation, None, "{ctx}");
                    assert!((1000..5000).contains(&out.wall_time_ms), "{ctx}");
                }
                _ => {
                    assert_eq!(out.status, moat::Status::NonzeroExit, "{ctx}");
                    assert_eq!(out.exit_code, Some(10 + i as i32), "{ctx}");
                    assert_eq!(out.exit_code(), 10 + i as i32, "{ctx}");
                    assert_eq!(out.signal, None, "{ctx}");
                    assert_eq!(out.violation, None, "{ctx}");
                    assert!(out.wall_time_ms < 5000, "{ctx}");
                }
            }
        }
    }
}
