//! Nothing is left behind: 500 runs in a row through the library API leave no process,
//! mount, temporary directory or descriptor in the process that ran them.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

/// Children of every thread of this process, as the kernel lists them (zombies too).
/// Kernels without CONFIG_PROC_CHILDREN have no such file: then only the scan of every
/// process's parent below stands.
fn task_children() -> Vec<String> {
    let mut all = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            all.extend(text.split_whitespace().map(str::to_string));
        }
    }
    all
}

/// Every process on the host whose parent is this process, with its state (Z for a
/// zombie), from /proc/PID/stat.
fn processes_parented_by_us() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for pid in host_pids() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&me.as_str()) {
            found.push(stat.trim().to_string());
        }
    }
    found
}

fn entries_starting_with(dir: &Path, prefix: &str, except: &[&str]) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && !except.iter().any(|x| n.starts_with(x)))
        .collect()
}

fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                target.display()
            )
        })
        .collect();
    fds.sort();
    fds
}

#[test]
fn five_hundred_runs_leave_nothing_behind() {
    let prog = static_fixture("mon_exit0");
    // A private temp dir for this process: whatever moat would create through
    // std::env::temp_dir() lands here, where no other test writes.
    let private_tmp = tempfile::Builder::new()
        .prefix("mon-leaks-")
        .tempdir()
        .unwrap();
    std::env::set_var("TMPDIR", private_tmp.path());
    assert_eq!(std::env::temp_dir(), private_tmp.path());

    // The detectors themselves work: a child of ours (alive, then a zombie) is seen.
    let mut probe = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    assert_eq!(processes_parented_by_us().len(), 1);
    probe.kill().unwrap();
    let zombie_seen = poll(Duration::from_secs(5), Duration::from_millis(10), || {
        let ours = processes_parented_by_us();
        ours.len() == 1 && ours[0].contains(") Z ")
    });
    assert!(zombie_seen, "a zombie child is seen too");
    probe.wait().unwrap();

    let policy = moat::Policy::load("default", &moat::Overrides::default()).unwrap();
    let argv: Vec<OsString> = vec![prog.into()];
    let plan = moat::Plan::build(policy, &argv).unwrap();

    // The host's /tmp as well, in case moat ignored TMPDIR; the harness's own scratch
    // dirs (moat-test-*) and the unit tests' (moat-elf-*) belong to other test binaries.
    let host_tmp = Path::new("/tmp");
    let others = ["moat-test-", "moat-elf-"];
    let tmp_before = entries_starting_with(&std::env::temp_dir(), "moat", &[]);
    let host_tmp_before = entries_starting_with(host_tmp, "moat", &others);
    let mounts_before = mount_count();
    let fds_before = open_fds();
    assert_eq!(task_children(), Vec::<String>::new());
    assert_eq!(processes_parented_by_us(), Vec::<String>::new());

    for i in 0..500 {
        let out = moat::run(&plan).unwrap_or_else(|e| panic!("run {i}: {e}"));
        assert!(
            out.status == moat::Status::Ok && out.exit_code == Some(0),
            "run {i}: {}",
            out.to_json()
        );
    }

    assert_eq!(
        task_children(),
        Vec::<String>::new(),
        "children (or zombies) of this process left after 500 runs"
    );
    assert_eq!(
        processes_parented_by_us(),
        Vec::<String>::new(),
        "processes whose parent is this process left after 500 runs"
    );
    assert_eq!(
        mount_count(),
        mounts_before,
        "mounts left in the caller's mount namespace after 500 runs"
    );
    assert_eq!(
        entries_starting_with(&std::env::temp_dir(), "moat", &[]),
        tmp_before,
        "moat* entries left in the temp dir after 500 runs"
    );
    assert!(
        std::fs::read_dir(private_tmp.path())
            .unwrap()
            .next()
            .is_none(),
        "something was left in the private temp dir"
    );
    assert_eq!(
        entries_starting_with(host_tmp, "moat", &others),
        host_tmp_before,
        "moat* entries left in /tmp after 500 runs"
    );
    assert_eq!(
        open_fds(),
        fds_before,
        "descriptors leaked into the calling process after 500 runs"
    );
}
