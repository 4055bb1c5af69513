//! The cgroup logic on fake trees (a fake cgroupfs that plays the kernel), and on the
//! host's real hierarchy where this process may use it.

use super::fake::*;
use super::fs::{read_pids, uid, Fs};
use super::layout::*;
use super::mountinfo::*;
use super::types::*;
use super::*;
use std::fs;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[test]
fn parses_mountinfo_escapes_and_options() {
    let m = parse_mountinfo(
        "41 31 0:38 / /sys/fs/cgroup/with\\040space rw,relatime shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct\n\
         garbage line\n\
         12 1 0:1 /sub /mnt - cgroup2 none rw\n",
    );
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].point, PathBuf::from("/sys/fs/cgroup/with space"));
    assert_eq!(m[0].fstype, "cgroup");
    assert!(m[0].super_options.iter().any(|o| o == "cpuacct"));
    assert_eq!(m[1].root, "/sub");
    assert_eq!(unescape("a\\134b\\0"), "a\\b\\0");
}

#[test]
fn maps_cgroup_paths_through_mount_roots() {
    let m = |root: &str| Mount {
        root: root.into(),
        point: "/cg".into(),
        fstype: "cgroup2".into(),
        super_options: vec![],
    };
    let r = Path::new("/fake");
    assert_eq!(cgroup_dir(r, &m("/"), "/a/b"), Some("/fake/cg/a/b".into()));
    assert_eq!(cgroup_dir(r, &m("/"), "/"), Some("/fake/cg".into()));
    assert_eq!(cgroup_dir(r, &m("/a"), "/a/b"), Some("/fake/cg/b".into()));
    assert_eq!(cgroup_dir(r, &m("/a"), "/ab"), None);
    assert_eq!(cgroup_dir(r, &m("/"), "/../x"), None);
    let own = parse_self_cgroup("4:memory:/a:b\n2:cpu,cpuacct:/\n0::/x\nnonsense\n");
    assert_eq!(own.len(), 3);
    assert_eq!(own[0], (vec!["memory".to_string()], "/a:b".to_string()));
    assert_eq!(own[2], (vec![], "/x".to_string()));
}

#[test]
fn v2_delegated_scope_gets_everything() {
    let (t, fake) = v2_tree("");
    let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
    let scope = t.path(SCOPE);
    assert_eq!(layout.v2.as_ref().unwrap().dir, scope);
    assert!(
        layout.describe().contains("memory: cgroup v2"),
        "{}",
        layout.describe()
    );

    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.pids_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
    let dir = cg.v2_dir().unwrap().to_path_buf();
    assert_eq!(dir.parent(), Some(scope.as_path()));
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("moat-{}-", std::process::id())),
        "{name}"
    );
    assert_eq!(
        read(&scope.join("cgroup.subtree_control")),
        "+memory +pids +cpu"
    );
    assert_eq!(read(&dir.join("memory.max")), (64u64 << 20).to_string());
    assert_eq!(read(&dir.join("memory.swap.max")), "0");
    assert_eq!(read(&dir.join("pids.max")), "8");

    cg.add(4242).unwrap();
    assert_eq!(read(&dir.join("cgroup.procs")), "4242");
    assert!(cg.add(0).is_err());
    assert!(cg.add(-1).is_err());

    assert!(!cg.oom_killed());
    fs::write(dir.join("memory.peak"), "5000000\n").unwrap();
    fs::write(
        dir.join("memory.events"),
        "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 0\n",
    )
    .unwrap();
    fs::write(dir.join("pids.events"), "max 3\n").unwrap();
    assert_eq!(cg.memory_peak(), Some(5_000_000));
    assert!(cg.oom_killed());
    assert!(cg.pids_limit_hit());
    assert_eq!(
        cg.cpu_time(),
        Some((Duration::from_millis(2), Duration::from_millis(1)))
    );

    // A limit merely touched (reclaim made room) is not an OOM.
    fs::write(dir.join("memory.events"), "max 7\noom 0\noom_kill 0\n").unwrap();
    assert!(!cg.oom_killed());

    // The processes exit; drop removes the directory.
    fs::write(dir.join("cgroup.procs"), "").unwrap();
    drop(cg);
    assert!(!dir.exists());
    assert!(scope.exists());
}

#[test]
fn v2_busy_scope_falls_back_to_the_top_or_reports_why() {
    // The scope holds moat itself: no controllers can be enabled below it.
    let (t, fake) = v2_tree("777\n");
    let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
    let top = t.path("sys/fs/cgroup");
    assert_eq!(layout.v2.as_ref().unwrap().dir, top);
    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.v2_dir().unwrap().parent(), Some(top.as_path()));
    // Already enabled at the top: nothing written there.
    assert_eq!(
        read(&top.join("cgroup.subtree_control")),
        "cpu memory pids\n"
    );
    drop(cg);

    // Unprivileged: only the delegated scope is writable; it still gives cpu and kill.
    let (t, fake) = v2_tree("777\n");
    let layout = Layout::detect_with(
        Arc::new(ReadonlyExcept {
            inner: fake,
            writable_under: t.path(SCOPE),
        }),
        V2_MOUNTINFO,
        V2_SELF,
        &t.root,
    );
    let b = layout.v2.as_ref().unwrap();
    assert_eq!(b.dir, t.path(SCOPE));
    let text = layout.describe();
    assert!(text.contains("memory: none"), "{text}");
    assert!(text.contains("holds processes"), "{text}");
    assert!(text.contains("cpu: cgroup v2 cpu.stat"), "{text}");
    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::None);
    assert_eq!(cg.pids_mechanism(), Mechanism::None);
    assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.dirs().len(), 1);
    let dir = cg.v2_dir().unwrap().to_path_buf();
    assert_eq!(read(&dir.join("memory.max")), "max\n");
    drop(cg);
    assert!(!dir.exists());
}

/// Only paths under one directory are writable (a delegated subtree).
#[derive(Debug)]
struct ReadonlyExcept {
    inner: FakeFs,
    writable_under: PathBuf,
}

impl Fs for ReadonlyExcept {
    fn mkdir(&self, dir: &Path) -> io::Result<()> {
        self.inner.mkdir(dir)
    }
    fn rmdir(&self, dir: &Path) -> io::Result<()> {
        self.inner.rmdir(dir)
    }
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        if path.starts_with(&self.writable_under) {
            self.inner.check_writable(path)
        } else {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        }
    }
}

#[test]
fn refused_controllers_fall_back_with_a_note() {
    let (t, fake) = v2_tree("");
    // Any write to it fails, as when the kernel answers EBUSY.
    let control = t.path(SCOPE).join("cgroup.subtree_control");
    fs::remove_file(&control).unwrap();
    fs::create_dir(&control).unwrap();
    let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
    assert_eq!(
        layout.mechanisms(&full_request()).memory,
        Mechanism::CgroupV2
    );
    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::None);
    assert_eq!(cg.pids_mechanism(), Mechanism::None);
    assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.notes().len(), 3, "{:?}", cg.notes());
    assert!(cg.notes()[0].contains("cannot enable the memory controller"));
    let dir = cg.v2_dir().unwrap().to_path_buf();
    assert_eq!(read(&dir.join("memory.max")), "max\n");
}

#[test]
fn v2_without_memory_peak_tracks_memory_current() {
    let (t, fake) = v2_tree("");
    let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
    let cg = RunCgroup::create(&layout, &Request::default()).unwrap();
    // Memory is accounted without a limit; no pids cgroup was asked for.
    assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.pids_mechanism(), Mechanism::None);
    assert_eq!(
        read(&t.path(SCOPE).join("cgroup.subtree_control")),
        "+memory"
    );
    let dir = cg.v2_dir().unwrap().to_path_buf();
    assert_eq!(read(&dir.join("memory.max")), "max\n");
    fs::remove_file(dir.join("memory.peak")).unwrap();
    fs::write(dir.join("memory.current"), "100\n").unwrap();
    assert_eq!(cg.memory_peak(), Some(100));
    fs::write(dir.join("memory.current"), "50\n").unwrap();
    assert_eq!(cg.memory_peak(), Some(100));
    fs::write(dir.join("memory.current"), "garbage\n").unwrap();
    assert_eq!(cg.memory_peak(), None);
    fs::write(dir.join("cpu.stat"), "nonsense\n\n").unwrap();
    assert_eq!(cg.cpu_time(), None);
    fs::write(dir.join("memory.events"), "oom x\n").unwrap();
    assert!(!cg.oom_killed());
}

#[test]
fn named_base_is_used_or_refused() {
    let (t, fake) = v2_tree("777\n");
    let fake = Arc::new(fake);
    let layout = Layout::detect_with(fake.clone(), V2_MOUNTINFO, V2_SELF, &t.root);
    let bad = t.path("not-a-cgroup");
    fs::create_dir_all(&bad).unwrap();
    let named = layout.clone().with_v2_base(bad.clone());
    let err = RunCgroup::create(&named, &full_request()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&bad.display().to_string()) && msg.contains("cgroup.controllers"),
        "{msg}"
    );
    assert!(
        named.describe().contains("unusable"),
        "{}",
        named.describe()
    );

    // A delegated, empty cgroup named by the user.
    let pool = "sys/fs/cgroup/user.slice/user-1000.slice/pool";
    t.file(&format!("{pool}/cgroup.controllers"), "memory pids\n");
    t.file(&format!("{pool}/cgroup.subtree_control"), "");
    t.file(&format!("{pool}/cgroup.procs"), "");
    t.file(&format!("{pool}/cgroup.type"), "domain\n");
    // Moving the jail from moat's scope into the pool needs their common ancestor.
    t.file("sys/fs/cgroup/user.slice/user-1000.slice/cgroup.procs", "");
    let named = layout.with_v2_base(t.path(pool));
    let cg = RunCgroup::create(&named, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV2);
    assert_eq!(cg.v2_dir().unwrap().parent(), Some(t.path(pool).as_path()));
    // cpu is not offered there: only memory and pids are enabled.
    assert_eq!(
        read(&t.path(pool).join("cgroup.subtree_control")),
        "+memory +pids"
    );
}

#[test]
fn hybrid_uses_v1_limits_and_v2_cpu_and_kill() {
    let (t, fake, mountinfo) = hybrid_tree(true);
    let layout = Layout::detect_with(Arc::new(fake), &mountinfo, HYBRID_SELF, &t.root);
    let text = layout.describe();
    assert!(
        text.contains("memory: cgroup v1 in") && text.contains("process_api/abc"),
        "{text}"
    );
    assert!(text.contains("cpu: cgroup v2 cpu.stat"), "{text}");

    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::CgroupV1);
    assert_eq!(cg.pids_mechanism(), Mechanism::CgroupV1);
    assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV2);
    let dirs: Vec<PathBuf> = cg.dirs().iter().map(|d| d.to_path_buf()).collect();
    // unified, memory (under moat's own memory cgroup), pids; no cpuacct needed.
    assert_eq!(dirs.len(), 3, "{dirs:?}");
    assert_eq!(
        dirs[0].parent(),
        Some(t.path("sys/fs/cgroup/unified").as_path())
    );
    assert_eq!(
        dirs[1].parent(),
        Some(t.path("sys/fs/cgroup/memory/process_api/abc").as_path())
    );
    assert_eq!(
        dirs[2].parent(),
        Some(t.path("sys/fs/cgroup/pids").as_path())
    );
    // Nothing enabled in the v2 root: it has no controllers.
    assert_eq!(
        read(&t.path("sys/fs/cgroup/unified/cgroup.subtree_control")),
        ""
    );
    assert_eq!(read(&dirs[1].join("memory.limit_in_bytes")), "67108864");
    assert_eq!(
        read(&dirs[1].join("memory.memsw.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(&dirs[2].join("pids.max")), "8");

    cg.add(4242).unwrap();
    for d in &dirs {
        assert_eq!(read(&d.join("cgroup.procs")), "4242");
    }

    fs::write(dirs[1].join("memory.max_usage_in_bytes"), "33554432\n").unwrap();
    assert_eq!(cg.memory_peak(), Some(32 << 20));
    fs::write(dirs[1].join("memory.failcnt"), "5\n").unwrap();
    assert!(!cg.oom_killed(), "failcnt alone is reclaim, not OOM");
    fs::write(
        dirs[1].join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    )
    .unwrap();
    assert!(cg.oom_killed());
    // Kernels before 4.13: no oom_kill line, failcnt is all there is.
    fs::write(
        dirs[1].join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\n",
    )
    .unwrap();
    assert!(cg.oom_killed());
    fs::write(
        dirs[0].join("cpu.stat"),
        "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
    )
    .unwrap();
    assert_eq!(
        cg.cpu_time(),
        Some((Duration::from_micros(3), Duration::from_micros(2)))
    );

    for d in &dirs {
        fs::write(d.join("cgroup.procs"), "").unwrap();
    }
    cg.kill_all();
    assert_eq!(read(&dirs[0].join("cgroup.kill")), "1");
    cg.remove().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{}", d.display());
    }
}

#[test]
fn v1_only_uses_cpuacct_and_scales_its_split() {
    let (t, fake, mountinfo) = hybrid_tree(false);
    let layout = Layout::detect_with(Arc::new(fake), &mountinfo, HYBRID_SELF, &t.root);
    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.cpu_mechanism(), Mechanism::CgroupV1);
    let acct = cg.cpuacct_v1.clone().unwrap();
    assert_eq!(
        acct.parent(),
        Some(t.path("sys/fs/cgroup/cpuacct").as_path())
    );
    fs::write(acct.join("cpuacct.usage"), "3000000000\n").unwrap();
    fs::write(acct.join("cpuacct.usage_user"), "1\n").unwrap();
    fs::write(acct.join("cpuacct.usage_sys"), "2\n").unwrap();
    assert_eq!(
        cg.cpu_time(),
        Some((Duration::from_secs(1), Duration::from_secs(2)))
    );
    // Older kernels: only cpuacct.stat, in ticks; too short to sample counts as user.
    fs::remove_file(acct.join("cpuacct.usage_user")).unwrap();
    fs::write(acct.join("cpuacct.stat"), "user 0\nsystem 0\n").unwrap();
    assert_eq!(
        cg.cpu_time(),
        Some((Duration::from_secs(3), Duration::ZERO))
    );
    fs::write(acct.join("cpuacct.stat"), "user 3\nsystem 1\n").unwrap();
    assert_eq!(
        cg.cpu_time(),
        Some((Duration::from_millis(2250), Duration::from_millis(750)))
    );
    // Without a cgroup2 mount and without want_cpu, no cpuacct cgroup is made.
    let cg2 = RunCgroup::create(
        &layout,
        &Request {
            memory_max: Some(1 << 20),
            ..Request::default()
        },
    )
    .unwrap();
    assert_eq!(cg2.cpu_mechanism(), Mechanism::None);
    assert_eq!(cg2.dirs().len(), 1);
}

#[test]
fn hybrid_as_an_unprivileged_user_has_nothing() {
    let (t, mut fake, mountinfo) = hybrid_tree(true);
    fake.readonly = vec![t.path("sys/fs/cgroup")];
    let layout = Layout::detect_with(Arc::new(fake), &mountinfo, HYBRID_SELF, &t.root);
    assert_eq!(layout.mechanisms(&full_request()), Mechanisms::NONE);
    let text = layout.describe();
    assert!(text.starts_with("no usable cgroup: "), "{text}");
    assert!(text.contains("not writable by uid"), "{text}");
    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert!(cg.dirs().is_empty());
}

#[test]
fn nothing_mounted_means_nothing_enforced() {
    let t = Tree::new();
    let layout = Layout::detect_in("", "", &t.root);
    assert_eq!(layout.mechanisms(&full_request()), Mechanisms::NONE);
    let text = layout.describe();
    assert!(text.starts_with("no usable cgroup: "), "{text}");
    assert!(text.contains("no cgroup2 file system is mounted"), "{text}");
    assert!(
        text.contains("v1 memory: no hierarchy is mounted"),
        "{text}"
    );
    let cg = RunCgroup::create(&layout, &full_request()).unwrap();
    assert_eq!(cg.memory_mechanism(), Mechanism::None);
    assert_eq!(cg.pids_mechanism(), Mechanism::None);
    assert_eq!(cg.cpu_mechanism(), Mechanism::None);
    assert!(cg.dirs().is_empty());
    cg.add(std::process::id() as i32).unwrap();
    assert_eq!(cg.cpu_time(), None);
    assert_eq!(cg.memory_peak(), None);
    assert!(!cg.oom_killed());
    assert!(!cg.pids_limit_hit());
    cg.kill_all();
    cg.remove().unwrap();
    // Garbage in, nothing out, no panic.
    let layout = Layout::detect_in("\u{0}\n - \n1 2 3\n", ":::\n0\n", &t.root);
    assert_eq!(layout.mechanisms(&full_request()), Mechanisms::NONE);
}

#[test]
fn sweeps_only_old_orphans() {
    let (t, fake) = v2_tree("");
    let layout = Layout::detect_with(Arc::new(fake), V2_MOUNTINFO, V2_SELF, &t.root);
    let scope = t.path(SCOPE);
    // pid_max is at most 2^22: this pid cannot be alive.
    let orphan = scope.join("moat-2000000000-3");
    let fresh = scope.join("moat-2000000000-4");
    let mine = scope.join(format!("moat-{}-99999", std::process::id()));
    let other = scope.join("something-else");
    for d in [&orphan, &fresh, &mine, &other] {
        fs::create_dir(d).unwrap();
    }
    let old = SystemTime::now() - Duration::from_secs(3600);
    for d in [&orphan, &mine, &other] {
        fs::File::open(d).unwrap().set_modified(old).unwrap();
    }
    assert_eq!(sweep_stale(&layout), 1);
    assert!(!orphan.exists());
    assert!(fresh.exists() && mine.exists() && other.exists());
}

#[test]
fn host_layout_is_described() {
    let text = Layout::detect().describe();
    eprintln!("uid {}: {text}", uid());
    assert!(
        text.contains("memory: ") && text.contains("cpu: "),
        "{text}"
    );
}

// ---- Real cgroups: only as root on a host with a writable memory cgroup. ----

fn real_layout(test: &str) -> Option<Layout> {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: {test} needs root");
        return None;
    }
    let layout = Layout::detect();
    if layout.mechanisms(&full_request()).memory == Mechanism::None {
        eprintln!(
            "skipped: {test}: no writable memory cgroup ({})",
            layout.describe()
        );
        return None;
    }
    Some(layout)
}

/// A shell that waits for a line on stdin before doing anything, so that it can be
/// moved into the cgroup before it starts any child.
fn gated(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn release(child: &mut Child) {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn real_tree_is_killed(layout: &Layout) {
    let cg = RunCgroup::create(layout, &full_request()).unwrap();
    let dirs: Vec<PathBuf> = cg.dirs().iter().map(|d| d.to_path_buf()).collect();
    assert!(!dirs.is_empty());
    let mut child = gated("sleep 5 & sleep 5; wait");
    let pid = child.id() as i32;
    cg.add(pid).unwrap();
    release(&mut child);
    for d in &dirs {
        let procs = d.join("cgroup.procs");
        assert!(read_pids(&procs).contains(&pid), "{}", procs.display());
        // sh and its two sleeps
        assert!(
            wait_for(|| read_pids(&procs).len() >= 3),
            "{}",
            procs.display()
        );
    }
    assert!(cg.cpu_time().is_some());
    assert!(cg.memory_peak().is_some_and(|p| p > 0));
    assert!(!cg.oom_killed());
    cg.kill_all();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    for d in &dirs {
        assert!(read_pids(&d.join("cgroup.procs")).is_empty());
    }
    drop(cg);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}

#[test]
fn real_cgroup_holds_and_kills_a_tree() {
    let Some(layout) = real_layout("real_cgroup_holds_and_kills_a_tree") else {
        return;
    };
    eprintln!("layout: {}", layout.describe());
    real_tree_is_killed(&layout);
}

#[test]
fn real_cgroup_kills_by_signals_without_cgroup_kill() {
    let Some(mut layout) = real_layout("real_cgroup_kills_by_signals_without_cgroup_kill") else {
        return;
    };
    // As on a v1-only host: no v2 directory, hence no cgroup.kill.
    layout.v2 = Err("disabled by the test".into());
    if layout.mechanisms(&full_request()).cpu != Mechanism::CgroupV1 {
        eprintln!("skipped: no cgroup v1 cpuacct here");
        return;
    }
    real_tree_is_killed(&layout);
}

#[test]
fn real_cgroup_pids_limit_holds() {
    let Some(layout) = real_layout("real_cgroup_pids_limit_holds") else {
        return;
    };
    let req = Request {
        pids_max: Some(4),
        ..Request::default()
    };
    let cg = RunCgroup::create(&layout, &req).unwrap();
    if cg.pids_mechanism() == Mechanism::None {
        eprintln!("skipped: no pids cgroup here");
        return;
    }
    let mut child = gated("for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait");
    cg.add(child.id() as i32).unwrap();
    release(&mut child);
    assert!(wait_for(|| cg.pids_limit_hit()));
    let procs = cg.dirs()[0].join("cgroup.procs");
    assert!(read_pids(&procs).len() <= 4);
    cg.kill_all();
    child.wait().unwrap();
}

#[test]
fn real_oom_is_detected() {
    let Some(layout) = real_layout("real_oom_is_detected") else {
        return;
    };
    let req = Request {
        memory_max: Some(32 << 20),
        pids_max: Some(8),
        want_cpu: true,
    };
    let cg = RunCgroup::create(&layout, &req).unwrap();
    // dd's 200 MiB buffer is filled by read(), so every page of it is touched.
    let mut child = gated("exec dd if=/dev/zero of=/dev/null bs=200M count=1");
    cg.add(child.id() as i32).unwrap();
    release(&mut child);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(cg.oom_killed());
    let peak = cg.memory_peak().unwrap();
    assert!(peak >= 30 << 20, "peak {peak}");
    eprintln!("oom: peak {peak} bytes, cpu {:?}", cg.cpu_time());
    let dirs: Vec<PathBuf> = cg.dirs().iter().map(|d| d.to_path_buf()).collect();
    cg.remove().unwrap();
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}
