//! Fake cgroup trees for tests: a directory tree under the temp dir, and an [`Fs`]
//! that plays the kernel on it (mkdir fills a new cgroup with its control files).

use super::fs::{has_processes, Fs};
use super::types::Request;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fake file system root, removed at the end of the test.
pub(crate) struct Tree {
    pub(crate) root: PathBuf,
}

impl Tree {
    pub(crate) fn new() -> Tree {
        static N: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "moat-cg-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Tree { root }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn file(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub(crate) fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) type Files = Vec<(&'static str, &'static str)>;

/// Plays the kernel: mkdir fills a new cgroup with the control files of its
/// hierarchy (the first fragment of its path that matches), rmdir refuses a
/// populated cgroup and otherwise takes the files with it.
#[derive(Debug, Default)]
pub(crate) struct FakeFs {
    pub(crate) files: Vec<(&'static str, Files)>,
    pub(crate) readonly: Vec<PathBuf>,
}

impl Fs for FakeFs {
    fn mkdir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir(dir)?;
        let s = dir.to_string_lossy().into_owned();
        if let Some((_, files)) = self.files.iter().find(|(frag, _)| s.contains(frag)) {
            for (name, content) in files {
                fs::write(dir.join(name), content)?;
            }
        }
        Ok(())
    }
    fn rmdir(&self, dir: &Path) -> io::Result<()> {
        if has_processes(dir) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        fs::remove_dir_all(dir)
    }
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        if self.readonly.iter().any(|r| path.starts_with(r)) {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        } else if path.exists() {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        }
    }
}

pub(crate) fn v2_files() -> Files {
    vec![
        ("cgroup.procs", ""),
        ("cgroup.type", "domain\n"),
        ("cgroup.controllers", ""),
        ("cgroup.subtree_control", ""),
        ("cgroup.kill", ""),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
        ("memory.max", "max\n"),
        ("memory.swap.max", "max\n"),
        ("memory.peak", "0\n"),
        ("memory.current", "0\n"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
        ),
        ("pids.max", "max\n"),
        ("pids.events", "max 0\n"),
    ]
}

pub(crate) const SCOPE: &str = "sys/fs/cgroup/user.slice/user-1000.slice/session-1.scope";
pub(crate) const V2_MOUNTINFO: &str = "25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n\
    30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
pub(crate) const V2_SELF: &str = "0::/user.slice/user-1000.slice/session-1.scope\n";

/// A pure v2 host: the session scope is delegated and empty, the top has everything.
pub(crate) fn v2_tree(scope_procs: &str) -> (Tree, FakeFs) {
    let t = Tree::new();
    t.file(
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory pids\n",
    );
    t.file("sys/fs/cgroup/cgroup.subtree_control", "cpu memory pids\n");
    t.file("sys/fs/cgroup/cgroup.procs", "1\n");
    t.file(&format!("{SCOPE}/cgroup.controllers"), "cpu memory pids\n");
    t.file(&format!("{SCOPE}/cgroup.subtree_control"), "");
    t.file(&format!("{SCOPE}/cgroup.procs"), scope_procs);
    t.file(&format!("{SCOPE}/cgroup.type"), "domain\n");
    let fake = FakeFs {
        files: vec![("/sys/fs/cgroup/", v2_files())],
        readonly: Vec::new(),
    };
    (t, fake)
}

pub(crate) fn full_request() -> Request {
    Request {
        memory_max: Some(64 << 20),
        pids_max: Some(8),
        want_cpu: true,
    }
}

pub(crate) const HYBRID_MOUNTINFO: &str =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
    33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n\
    34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
    36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n\
    39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
pub(crate) const HYBRID_SELF: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

/// This build machine: v1 memory, pids, cpuacct; v2 without controllers.
pub(crate) fn hybrid_tree(with_v2: bool) -> (Tree, FakeFs, String) {
    let t = Tree::new();
    t.file("sys/fs/cgroup/unified/cgroup.controllers", "");
    t.file("sys/fs/cgroup/unified/cgroup.subtree_control", "");
    t.file("sys/fs/cgroup/unified/cgroup.procs", "1\n");
    for h in ["memory", "pids", "cpuacct", "cpu", "cpuset"] {
        t.file(&format!("sys/fs/cgroup/{h}/cgroup.procs"), "1\n");
    }
    t.file("sys/fs/cgroup/memory/process_api/abc/cgroup.procs", "777\n");
    let v1_memory: Files = vec![
        ("cgroup.procs", ""),
        ("memory.limit_in_bytes", "9223372036854771712\n"),
        ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
        ("memory.max_usage_in_bytes", "0\n"),
        ("memory.failcnt", "0\n"),
        (
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        ),
    ];
    let v1_pids: Files = vec![
        ("cgroup.procs", ""),
        ("pids.max", "max\n"),
        ("pids.events", "max 0\n"),
    ];
    let v1_cpuacct: Files = vec![
        ("cgroup.procs", ""),
        ("cpuacct.usage", "0\n"),
        ("cpuacct.usage_user", "0\n"),
        ("cpuacct.usage_sys", "0\n"),
        ("cpuacct.stat", "user 0\nsystem 0\n"),
    ];
    let fake = FakeFs {
        files: vec![
            ("/cgroup/memory/", v1_memory),
            ("/cgroup/pids/", v1_pids),
            ("/cgroup/cpuacct/", v1_cpuacct),
            ("/cgroup/unified/", v2_files()),
        ],
        readonly: Vec::new(),
    };
    let mountinfo = if with_v2 {
        HYBRID_MOUNTINFO.to_string()
    } else {
        HYBRID_MOUNTINFO
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    (t, fake, mountinfo)
}
