//! The memory limit without a cgroup, which the monitor enforces by sampling: how far a
//! program allocating as fast as it can gets past the limit before it is stopped.
//!
//! The bound depends on the monitor getting a CPU when it asks for one, so this test is
//! a binary of its own: cargo runs test binaries one after another, and the tests of a
//! shared binary would compete with the monitor for this machine's two cores (in CI, a
//! sibling test's program took the sampler's CPU and the overshoot reached 5%).

mod common;
use common::*;

#[test]
fn without_a_cgroup_memory_overshoots_by_at_most_two_percent() {
    let prog = fixture_with("hd_mem", "hd_mem", &["-pthread"]);
    for caller in callers_without_cgroup() {
        for (limit, kib, threads, cap) in [
            ("128MiB", 128 << 10, "9", "2000"),
            ("1GiB", 1 << 20, "1", "3000"),
        ] {
            let run = moat_run_profiled(
                caller,
                Some("hd_mem"),
                &["--memory", limit, "--processes", "16", "--wall-time", "30s"],
                path_str(&prog),
                &["threads", threads, cap],
            );
            assert_eq!(run.status(), "memory_limit", "{limit}: {run:#?}");
            let peak = run.report["peak_memory_kib"].as_u64().unwrap();
            let allowed = kib + (kib / 50).max(1024);
            eprintln!("{limit} with {threads} thread(s): peak {peak} KiB, limit {kib} KiB, bound {allowed} KiB");
            assert!(
                peak <= allowed,
                "{limit}: peak {peak} KiB over {allowed} KiB"
            );
            assert!(
                peak >= kib * 9 / 10,
                "{limit}: the peak {peak} KiB is not the tree's"
            );
        }
        // Files kept in the jail's tmpfs are memory too.
        let run = moat_run_profiled(
            caller,
            Some("hd_mem"),
            &["--memory", "128MiB", "--wall-time", "30s"],
            path_str(&prog),
            &["tmpfs", "/tmp", "200"],
        );
        assert_eq!(run.status(), "memory_limit", "{run:#?}");
    }
}
