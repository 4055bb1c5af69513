//! Limits, accounting and verdicts: one test per row of the verdict table. Each runs
//! for every caller (root, where a cgroup enforces memory, pids and CPU accounting, and
//! uid 65534, where the fallback of rlimits and /proc sampling does) and asserts the
//! exact status, exit code, output and the report's figures.

mod common;
use common::*;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::time::{Duration, Instant};

/// Runs `moat run [--profile PROFILE] OPTS -- PROG ARGS` as `caller`; also returns how
/// long the moat command took.
fn lim_run(
    caller: Caller,
    profile_name: Option<&str>,
    opts: &[&str],
    prog: &Path,
    args: &[&str],
) -> (Run, Duration) {
    let start = Instant::now();
    let run = moat_run_profiled(caller, profile_name, opts, path_str(prog), args);
    (run, start.elapsed())
}

/// A number from the report, failing with the whole run shown if it is missing.
#[track_caller]
fn figure(run: &Run, key: &str) -> u64 {
    run.report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("report has no number {key}: {run:#?}"))
}

/// A number from the report that must lie in `range`; `ctx` says whose run it is.
#[track_caller]
fn figure_in(run: &Run, key: &str, range: impl RangeBounds<u64> + Debug, ctx: &str) -> u64 {
    let value = figure(run, key);
    assert!(
        range.contains(&value),
        "{ctx}: {key} = {value}, want {range:?}: {run:#?}"
    );
    value
}

/// The report names the limit `name` with a non-empty `enforced_by`.
#[track_caller]
fn assert_limit_reported(run: &Run, name: &str, caller: Caller) {
    let limits = run.report["limits"]
        .as_array()
        .unwrap_or_else(|| panic!("{caller:?}: report has no limits array: {run:#?}"));
    let entry = limits
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("{caller:?}: report.limits has no {name}: {run:#?}"));
    let by = entry["enforced_by"].as_str().unwrap_or("");
    assert!(
        !by.trim().is_empty(),
        "{caller:?}: limit {name} has no enforced_by: {entry}"
    );
    assert!(
        entry["value"].as_str().is_some_and(|v| !v.is_empty()),
        "{caller:?}: limit {name} has no value: {entry}"
    );
}

/// With --summary, stderr holds exactly one line starting with "moat: ", and it names
/// the status.
#[track_caller]
fn assert_one_summary(run: &Run, status: &str, caller: Caller) {
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("moat: "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{caller:?}: want one summary line on stderr: {run:#?}"
    );
    assert!(
        lines[0].starts_with(&format!("moat: {status} ")),
        "{caller:?}: summary does not name {status}: {:?}",
        lines[0]
    );
}

// --- CPU time ---------------------------------------------------------------------

#[test]
fn cpu_time_ends_a_spinning_loop_at_one_second() {
    let prog = fixture("lim_spin");
    for caller in callers() {
        let (run, _) = lim_run(
            caller,
            None,
            &["--cpu-time", "1s", "--summary"],
            &prog,
            &["spin"],
        );
        assert_run(&run, "cpu_time_limit", 124, "");
        let cpu = figure_in(&run, "cpu_time_ms", 1000..=1200, &format!("{caller:?}"));
        assert_eq!(
            figure(&run, "user_time_ms") + figure(&run, "system_time_ms"),
            cpu,
            "{caller:?}: user + system != cpu: {run:#?}"
        );
        assert_limit_reported(&run, "cpu_time", caller);
        assert_one_summary(&run, "cpu_time_limit", caller);
    }
}

#[test]
fn cpu_time_counts_a_loop_that_polls_the_clock() {
    let prog = fixture("lim_spin");
    for caller in callers() {
        let (run, took) = lim_run(caller, None, &["--cpu-time", "2s"], &prog, &["clock"]);
        assert_run(&run, "cpu_time_limit", 124, "");
        figure_in(&run, "cpu_time_ms", 2000..=2500, &format!("{caller:?}"));
        // The program itself ends after 10 s of wall time.
        assert!(took < Duration::from_secs(9), "{caller:?}: took {took:?}");
    }
}

#[test]
fn cpu_time_counts_the_children() {
    let prog = fixture("lim_spin");
    for caller in callers() {
        let (run, _) = lim_run(
            caller,
            Some("lim_fork"),
            &["--cpu-time", "1s", "--processes", "2"],
            &prog,
            &["fork"],
        );
        // The parent only waits: only the child's CPU time can reach the limit.
        assert_run(&run, "cpu_time_limit", 124, "");
        figure_in(&run, "cpu_time_ms", 1000..=1500, &format!("{caller:?}"));
        assert_limit_reported(&run, "processes", caller);
    }
}

#[test]
fn cpu_time_holds_after_alarm_setitimer_and_setrlimit_from_inside() {
    let prog = fixture("lim_spin");
    for caller in callers() {
        let (run, _) = lim_run(
            caller,
            Some("lim_timers"),
            &["--cpu-time", "1s"],
            &prog,
            &["cancel"],
        );
        assert_run(&run, "cpu_time_limit", 124, "");
        // The limit held at 1 s, not at the RLIMIT_CPU backstop (3 s, or 4 s once the
        // program raised its soft limit to the hard one).
        figure_in(&run, "cpu_time_ms", 1000..=1500, &format!("{caller:?}"));
        assert!(
            run.stderr
                .contains("raise to infinity: Operation not permitted"),
            "{caller:?}: RLIMIT_CPU could be raised to infinity: {run:#?}"
        );
    }
}

// --- Wall time ----------------------------------------------------------------------

#[test]
fn wall_time_ends_sleep_pause_select_and_stop_and_the_whole_tree() {
    let prog = fixture("lim_block");
    for mode in ["sleep", "pause", "select", "stop"] {
        for caller in callers() {
            let mark = marker("lim", mode);
            let (run, took) = lim_run(
                caller,
                Some("lim_block"),
                &["--wall-time", "1s"],
                &prog,
                &[mode, &mark],
            );
            assert_run(&run, "wall_time_limit", 124, "");
            let ctx = format!("{mode} as {caller:?}");
            figure_in(&run, "wall_time_ms", 1000..1500, &ctx);
            assert!(took < Duration::from_secs(3), "{ctx}: moat took {took:?}");
            assert_none_alive(&mark, &ctx);
        }
    }
}

/// Not a row of the table, but what its figures rest on: a run that moat ends (here by
/// the wall time, with no CPU or memory limit, so nothing is sampled) still reports the
/// CPU time and peak memory its program used before it was killed.
#[test]
fn a_killed_run_still_reports_the_cpu_and_memory_its_program_used() {
    let prog = fixture("lim_mem");
    for caller in callers() {
        let (run, _) = lim_run(
            caller,
            None,
            &["--wall-time", "1500ms"],
            &prog,
            &["hold", "100"],
        );
        assert_run(&run, "wall_time_limit", 124, "");
        // Touching 100 MiB then spinning: most of the 1.5 s is CPU time, even on a
        // loaded machine it is far above zero.
        let ctx = format!("{caller:?}, a program holding 100 MiB and spinning until killed");
        figure_in(&run, "cpu_time_ms", 300..=1600, &ctx);
        figure_in(&run, "peak_memory_kib", 100 * 1024.., &ctx);
    }
}

// --- Memory -------------------------------------------------------------------------

#[test]
fn memory_limit_ends_a_program_that_touches_80mib_of_64mib() {
    let prog = fixture("lim_mem");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &["--memory", "64MiB"], &prog, &["heap", "80"]);
        assert_run(&run, "memory_limit", 137, "");
        // A cgroup v1 reports its peak (memory.max_usage_in_bytes) capped at the limit:
        // exactly 64 MiB, or a little under it once the kernel reclaimed page cache; the
        // /proc fallback reports the program's own largest resident size (about 80 MiB).
        figure_in(&run, "peak_memory_kib", 60 * 1024.., &format!("{caller:?}"));
        assert_limit_reported(&run, "memory", caller);
    }
}

#[test]
fn static_array_of_400mib_runs_within_512mib() {
    let prog = fixture("lim_static");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &["--memory", "512MiB"], &prog, &[]);
        assert_run(&run, "ok", 0, "102400\n");
        figure_in(
            &run,
            "peak_memory_kib",
            400 * 1024..,
            &format!("{caller:?}"),
        );
    }
}

#[test]
fn empty_main_peak_memory_is_small() {
    let prog = fixture("lim_empty");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &["--summary"], &prog, &[]);
        assert_run(&run, "ok", 0, "");
        assert_eq!(run.report["exit_code"], 0, "{run:#?}");
        let ctx = format!("{caller:?}, an empty main");
        figure_in(&run, "peak_memory_kib", ..4096, &ctx);
        assert_one_summary(&run, "ok", caller);
    }
}

#[test]
fn reserving_8gib_and_using_20mib_runs_within_64mib() {
    let prog = fixture("lim_mem");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &["--memory", "64MiB"], &prog, &["reserve"]);
        assert_run(&run, "ok", 0, "5120\n");
    }
}

// --- Output -------------------------------------------------------------------------

#[test]
fn output_limit_delivers_exactly_the_cap() {
    let prog = fixture("lim_output");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &["--output", "1MiB"], &prog, &["flood"]);
        assert!(
            run.status() == "output_limit" && run.code == 153,
            "{caller:?}: want output_limit 153: status={} code={} stderr={:?} report={:#}",
            run.status(),
            run.code,
            run.stderr,
            run.report
        );
        assert_eq!(run.stdout.len(), 1 << 20, "{caller:?}: bytes delivered");
        assert!(
            run.stdout.bytes().all(|b| b == b'a'),
            "{caller:?}: a byte other than 'a' was delivered"
        );
        assert_eq!(run.report["output_bytes"][0], 1 << 20, "{caller:?}");
        assert_eq!(run.report["output_bytes"][1], 0, "{caller:?}");
        assert_limit_reported(&run, "output", caller);
    }
}

#[test]
fn ten_mb_on_each_stream_arrive_whole_on_the_right_stream() {
    let prog = fixture("lim_output");
    let total = 10_000_000usize;
    let want_out: String = (0..total)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let want_err: String = (0..total)
        .map(|i| (b'0' + (i % 10) as u8) as char)
        .collect();
    for opts in [&[][..], &["--output", "64MiB"][..]] {
        for caller in callers() {
            let (run, _) = lim_run(caller, None, opts, &prog, &["both"]);
            assert!(
                run.status() == "ok" && run.code == 0,
                "{opts:?} as {caller:?}: status={} code={} report={:#}",
                run.status(),
                run.code,
                run.report
            );
            assert_eq!(
                run.stdout.len(),
                total,
                "{opts:?} as {caller:?}: stdout length"
            );
            assert_eq!(
                run.stderr.len(),
                total,
                "{opts:?} as {caller:?}: stderr length"
            );
            assert!(
                run.stdout == want_out,
                "{opts:?} as {caller:?}: stdout differs"
            );
            assert!(
                run.stderr == want_err,
                "{opts:?} as {caller:?}: stderr differs"
            );
            if !opts.is_empty() {
                assert_eq!(
                    run.report["output_bytes"],
                    serde_json::json!([total, total]),
                    "{opts:?} as {caller:?}"
                );
            }
        }
    }
}

// --- File size ----------------------------------------------------------------------

#[test]
fn file_size_limit_gives_efbig_or_output_limit() {
    let prog = fixture("lim_fsize");
    for caller in callers() {
        let dir = scratch();
        let d = path_str(dir.path());
        for (mode, file, status, code, stdout) in [
            // SIGXFSZ ignored: the write fails with EFBIG and the program carries on.
            ("ignore", "ignored", "ok", 0, "EFBIG\n"),
            // SIGXFSZ at its default: the program dies of it, the verdict is output_limit.
            ("default", "killed", "output_limit", 153, ""),
        ] {
            let file = format!("{d}/{file}");
            let (run, _) = lim_run(
                caller,
                None,
                &["--file-size", "1MiB", "--bind-rw", d],
                &prog,
                &[mode, &file],
            );
            assert_run(&run, status, code, stdout);
            assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "{caller:?}");
            if mode == "ignore" {
                assert_limit_reported(&run, "file_size", caller);
            }
        }
    }
}

// --- Processes ----------------------------------------------------------------------

#[test]
fn fork_bomb_gets_eagain_and_ends_at_the_wall_time() {
    let prog = fixture("lim_forkbomb");
    for caller in callers() {
        let mark = marker("lim", "forkbomb");
        let (run, took) = lim_run(
            caller,
            Some("lim_fork"),
            &["--processes", "8", "--wall-time", "2s"],
            &prog,
            &[&mark],
        );
        assert_run(&run, "wall_time_limit", 124, "");
        assert!(
            run.stderr.contains("fork: EAGAIN"),
            "{caller:?}: fork never failed with EAGAIN: {run:#?}"
        );
        assert!(took < Duration::from_secs(6), "{caller:?}: took {took:?}");
        assert_none_alive(&mark, &format!("fork bomb as {caller:?}"));
        // The host is unharmed: this process can still start another.
        let st = std::process::Command::new("true")
            .status()
            .expect("the test process can still fork");
        assert!(st.success());
        assert_limit_reported(&run, "processes", caller);
    }
}

// --- Stack --------------------------------------------------------------------------

#[test]
fn recursion_100mib_deep_runs_with_a_256mib_stack() {
    let prog = fixture("lim_stack");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &["--stack", "256MiB"], &prog, &[]);
        assert_run(&run, "ok", 0, "100000\n");
        assert_limit_reported(&run, "stack", caller);
    }
}

// --- Program status -----------------------------------------------------------------

#[test]
fn signals_and_exit_codes_are_reported_as_such() {
    let prog = fixture("lim_die");
    for caller in callers() {
        let (run, _) = lim_run(caller, None, &[], &prog, &["segv"]);
        assert_run(&run, "signaled", 139, "");
        assert_eq!(run.report["signal"], 11, "{run:#?}");
        assert_eq!(run.report["exit_code"], serde_json::Value::Null, "{run:#?}");

        let (run, _) = lim_run(caller, None, &[], &prog, &["abort"]);
        assert_run(&run, "signaled", 134, "");
        assert_eq!(run.report["signal"], 6, "{run:#?}");

        let (run, _) = lim_run(caller, None, &["--summary"], &prog, &["exit25"]);
        assert_run(&run, "nonzero_exit", 25, "");
        assert_eq!(run.report["exit_code"], 25, "{run:#?}");
        assert_eq!(run.report["signal"], serde_json::Value::Null, "{run:#?}");
        assert_one_summary(&run, "nonzero_exit", caller);
    }
}
