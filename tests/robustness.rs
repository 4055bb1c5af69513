//! Hostile programs end with the right verdict and leave the host as it was (no process,
//! cgroup or mount left, no file past its cap); concurrent runs each get their own
//! cgroup and accounting; without a usable cgroup the limits still hold and the report
//! and `moat check` say so.

mod common;
use common::*;
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// The cgroup paths (relative to each hierarchy) of a live process, from the host's view.
fn cgroups_of(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
        .collect()
}

#[derive(Debug)]
struct Bombed {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    report: Value,
    /// moat's pid: its run cgroups are named moat-PID-N.
    moat_pid: u32,
    /// Cgroup paths of the jail's processes seen while it ran, those named by moat.
    seen_cgroups: Vec<String>,
    elapsed: Duration,
}

impl Bombed {
    fn status(&self) -> &str {
        report_status(&self.report)
    }

    fn limit(&self, name: &str) -> String {
        self.report["limits"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["name"] == name))
            .and_then(|e| e["enforced_by"].as_str())
            .unwrap_or("<not reported>")
            .to_string()
    }

    fn show(&self) -> String {
        format!(
            "code={} status={} elapsed={:?} stdout {} bytes, stderr {:?}\nreport {:#}",
            self.code,
            self.status(),
            self.elapsed,
            self.stdout.len(),
            self.stderr,
            self.report
        )
    }
}

/// Runs `moat run ARGS` as `caller`, watching the host's /proc for processes carrying
/// `mark` meanwhile to learn the jail's cgroups; moat's stdout is collected as bytes.
fn run_bomb(caller: Caller, args: &[&str], mark: &str) -> Bombed {
    let report = ReportFile::new();
    let mut cmd = report.run(command(caller), args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().expect("run moat");
    let moat_pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let mut seen = Vec::new();
    while !waiter.is_finished() {
        for pid in marked_pids(mark) {
            for cg in cgroups_of(pid) {
                if cg.contains("moat-") && !seen.contains(&cg) {
                    seen.push(cg);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = waiter.join().unwrap();
    let elapsed = start.elapsed();
    Bombed {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: report.read(),
        moat_pid,
        seen_cgroups: seen,
        elapsed,
    }
}

/// Asserts that moat left nothing behind: no process carrying `mark`, no cgroup of its
/// own (named moat-PID-N after moat's pid, in any hierarchy), none of the cgroups the
/// jail was seen in, and no new mount here.
#[track_caller]
fn assert_host_clean(ctx: &str, b: &Bombed, mark: &str, mounts_before: usize) {
    // A failing test must not leave a bomb running.
    let alive = kill_marked(mark);
    assert!(
        alive.is_empty(),
        "{ctx}: jail processes still alive after moat returned: {alive:?}\n{}",
        b.show()
    );
    let left = cgroup_dirs(&format!("moat-{}-", b.moat_pid));
    assert!(
        left.is_empty(),
        "{ctx}: moat's cgroups left behind: {left:?}\n{}",
        b.show()
    );
    for cg in &b.seen_cgroups {
        let rel = cg.trim_start_matches('/');
        for root in CGROUP_ROOTS {
            let p = Path::new(root).join(rel);
            assert!(
                !p.exists(),
                "{ctx}: the jail's cgroup {} is left behind\n{}",
                p.display(),
                b.show()
            );
        }
    }
    assert_eq!(
        mount_count(),
        mounts_before,
        "{ctx}: the mount table of the test's namespace changed\n{}",
        b.show()
    );
    eprintln!(
        "{ctx}: clean; {} in {:?}; cgroups seen: {:?}",
        b.status(),
        b.elapsed,
        b.seen_cgroups
    );
}

#[track_caller]
fn assert_verdict(ctx: &str, b: &Bombed, status: &str, code: i32) {
    assert!(
        b.status() == status && b.code == code,
        "{ctx}: expected status={status} code={code}\n{}",
        b.show()
    );
}

/// Runs `moat run OPTS -- PROGRAM... MARK` as `caller` through `run_bomb`, MARK being a
/// fresh marker for `tag`; then `check` (the verdict and whatever else the test looks
/// at, given the run's context "CALLER WHAT") and `assert_host_clean`. Returns the run
/// and its context.
fn run_contained(
    caller: Caller,
    what: &str,
    tag: &str,
    opts: &[&str],
    program: &[&str],
    check: impl FnOnce(&str, &Bombed),
) -> (Bombed, String) {
    let mark = marker("io", tag);
    let mounts = mount_count();
    let mut args = opts.to_vec();
    args.push("--");
    args.extend_from_slice(program);
    args.push(&mark);
    let b = run_bomb(caller, &args, &mark);
    let ctx = format!("{caller:?} {what}");
    check(&ctx, &b);
    assert_host_clean(&ctx, &b, &mark, mounts);
    (b, ctx)
}

#[test]
fn fork_bomb_is_contained() {
    let prog = fixture("io_forkbomb");
    let prof = profile("io_fork");
    for caller in callers() {
        run_contained(
            caller,
            "fork bomb",
            "fork",
            &["--profile", &prof, "--processes", "16", "--wall-time", "2s"],
            &[path_str(&prog)],
            |ctx, b| {
                assert_verdict(ctx, b, "wall_time_limit", 124);
                assert!(b.stdout.is_empty(), "{ctx}: {}", b.show());
                eprintln!("{ctx}: processes enforced by {}", b.limit("processes"));
            },
        );
    }
}

#[test]
fn memory_bomb_is_contained() {
    let prog = fixture("io_membomb");
    for caller in callers() {
        run_contained(
            caller,
            "memory bomb",
            "mem",
            &["--memory", "64MiB", "--wall-time", "5s"],
            &[path_str(&prog)],
            |ctx, b| {
                assert_verdict(ctx, b, "memory_limit", 137);
                eprintln!("{ctx}: memory enforced by {}", b.limit("memory"));
            },
        );
    }
}

#[test]
fn output_flood_is_cut_at_the_cap() {
    let prog = fixture("io_flood");
    for caller in callers() {
        run_contained(
            caller,
            "output flood",
            "flood",
            &["--output", "1MiB", "--wall-time", "20s"],
            &[path_str(&prog)],
            |ctx, b| {
                assert_verdict(ctx, b, "output_limit", 153);
                let want: Vec<u8> = b"y\n".repeat(MIB as usize / 2);
                assert!(
                    b.stdout == want,
                    "{ctx}: stdout is not exactly 1 MiB of y lines\n{}",
                    b.show()
                );
            },
        );
    }
}

#[test]
fn disk_filler_stops_at_the_file_size_cap() {
    let prog = fixture("io_diskfill");
    for caller in callers() {
        let work = scratch();
        let bind = format!("{}:/out", work.path().display());
        let (b, ctx) = run_contained(
            caller,
            "disk filler (--file-size)",
            "disk",
            &[
                "--bind-rw",
                &bind,
                "--file-size",
                "1MiB",
                "--wall-time",
                "20s",
            ],
            &[path_str(&prog), "/out/fill"],
            |ctx, b| assert_verdict(ctx, b, "output_limit", 153),
        );
        let size = std::fs::metadata(work.path().join("fill"))
            .unwrap_or_else(|e| panic!("{ctx}: no file written: {e}\n{}", b.show()))
            .len();
        // 64 KiB writes reach 1 MiB exactly; the next one gets SIGXFSZ.
        assert_eq!(size, MIB, "{ctx}: host file size\n{}", b.show());
    }
}

#[test]
fn disk_filler_meets_enospc_in_a_small_tmpfs() {
    let prog = fixture("io_diskfill");
    let prof = profile("io_tmpfs");
    for caller in callers() {
        run_contained(
            caller,
            "disk filler (tmpfs)",
            "tmpfs",
            &["--profile", &prof, "--wall-time", "20s"],
            &[path_str(&prog), "/tmp/fill"],
            // io_diskfill exits 28 when a write fails with ENOSPC.
            |ctx, b| assert_verdict(ctx, b, "nonzero_exit", 28),
        );
    }
}

/// Two threads, each running 500 jails one after another through the library: every run
/// must get its own cgroup and its own accounting.
#[test]
fn concurrent_runs_have_their_own_accounting() {
    let prog = static_fixture("io_burn");
    let root = is_root();
    const RUNS: usize = 500;
    // (label, CPU milliseconds the program burns)
    let workloads = [("A", 2u64), ("B", 60u64)];
    let start = Instant::now();
    let results: Vec<Vec<moat::Outcome>> = std::thread::scope(|s| {
        let handles: Vec<_> = workloads
            .iter()
            .map(|&(label, ms)| {
                let prog = prog.clone();
                s.spawn(move || {
                    let overrides = moat::Overrides {
                        limits: moat::Limits {
                            cpu_time: Some(Duration::from_secs(1)),
                            memory: Some(64 * MIB),
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    let argv: Vec<OsString> = vec![prog.into(), ms.to_string().into()];
                    let mut out = Vec::with_capacity(RUNS);
                    for i in 0..RUNS {
                        let policy = moat::Policy::load("default", &overrides).unwrap();
                        let plan = moat::Plan::build(policy, &argv).unwrap();
                        let o = moat::run(&plan)
                            .unwrap_or_else(|e| panic!("{label} run {i}: moat::run failed: {e}"));
                        out.push(o);
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = start.elapsed();

    let first = &results[0][0];
    let memory_by = first
        .limits
        .iter()
        .find(|l| l.name == "memory")
        .map(|l| l.enforced_by.clone())
        .unwrap_or_default();
    let cpu_by = first
        .limits
        .iter()
        .find(|l| l.name == "cpu_time")
        .map(|l| l.enforced_by.clone())
        .unwrap_or_default();
    let cgroup_used = memory_by.starts_with("cgroup") || cpu_by.starts_with("cgroup");
    eprintln!(
        "{} runs two at a time in {took:?}; memory: {memory_by}; cpu_time: {cpu_by}{}",
        2 * RUNS,
        if cgroup_used {
            ""
        } else {
            "\n*** NO CGROUP AVAILABLE: accounting came from the /proc fallback ***"
        }
    );
    if root {
        assert!(
            cgroup_used,
            "as root on this host the runs should get a cgroup: memory={memory_by} cpu={cpu_by}"
        );
    }

    let mut medians = Vec::new();
    for ((label, ms), outcomes) in workloads.iter().zip(&results) {
        for (i, o) in outcomes.iter().enumerate() {
            assert!(
                o.status == moat::Status::Ok && o.exit_code == Some(0),
                "{label} run {i}: {}",
                o.to_json()
            );
            // The tree's CPU time includes the program's own, which it measured.
            assert!(
                o.cpu_time_ms + 1 >= *ms && o.cpu_time_ms < 1000,
                "{label} run {i}: cpu_time_ms {} for a {ms} ms workload: {}",
                o.cpu_time_ms,
                o.to_json()
            );
            assert!(
                o.peak_memory_kib > 0 && o.peak_memory_kib < 64 * 1024,
                "{label} run {i}: peak_memory_kib {}: {}",
                o.peak_memory_kib,
                o.to_json()
            );
        }
        let mut cpu: Vec<u64> = outcomes.iter().map(|o| o.cpu_time_ms).collect();
        cpu.sort_unstable();
        eprintln!(
            "{label} ({ms} ms): cpu_time_ms min {} median {} max {}",
            cpu[0],
            cpu[cpu.len() / 2],
            cpu[cpu.len() - 1]
        );
        medians.push((cpu[cpu.len() / 2], cpu[cpu.len() - 1]));
    }
    let ((a_median, a_max), (b_median, _)) = (medians[0], medians[1]);
    assert!(
        a_median < b_median / 4,
        "A's median {a_median} ms is not well below B's {b_median} ms: accounting is mixed up"
    );
    assert!(
        a_max < b_median,
        "an A run took {a_max} ms, above B's median {b_median} ms: accounting is mixed up"
    );
    // Library runs name their cgroups after this process: none may remain.
    let left = cgroup_dirs(&format!("moat-{}-", std::process::id()));
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn without_a_cgroup_memory_is_enforced_by_the_monitor_and_reported() {
    let prog = fixture("io_membomb");
    for caller in callers_without_cgroup() {
        run_contained(
            caller,
            "memory bomb without cgroup",
            "nocg",
            &["--memory", "64MiB", "--wall-time", "10s"],
            &[path_str(&prog)],
            |ctx, b| {
                assert_verdict(ctx, b, "memory_limit", 137);
                let by = b.limit("memory");
                assert!(
                    by.contains("monitor") && by.contains("no cgroup"),
                    "{ctx}: the memory limit's enforced_by should name the monitor and say \
                     there is no cgroup (and why), got {by:?}\n{}",
                    b.show()
                );
            },
        );

        let check = |json: bool| {
            let mut cmd = command(caller);
            cmd.arg("check");
            if json {
                cmd.arg("--json");
            }
            let out = cmd.stdin(Stdio::null()).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let text = check(false);
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some("cgroups"))
            .unwrap_or_else(|| panic!("{caller:?}: moat check has no cgroups line:\n{text}"));
        assert!(
            line.starts_with("warn "),
            "{caller:?}: moat check should warn about cgroups: {line}\n{text}"
        );
        let json: Value = serde_json::from_str(&check(true)).unwrap();
        let finding = json["findings"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == "cgroups"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(finding["state"], "degraded", "{caller:?}: {json:#}");
    }
}
