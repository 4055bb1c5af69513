//! What the benchmarks share: the static no-op fixture, the median, and bubblewrap as
//! the peer (its run, its version, its filter).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Compiles tests/fixtures/noop.c statically into a directory of its own (removed by
/// the caller with its parent).
pub fn compile_noop(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-bench-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("noop");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/noop.c");
    let ok = Command::new("gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("gcc is needed")
        .success();
    assert!(ok, "compiling the no-op fixture failed");
    out
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn time<F: FnMut()>(mut f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Rounds from MOAT_BENCH_ROUNDS, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("MOAT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// bubblewrap with every namespace moat makes, a tmpfs root (its own default), the
/// given mounts (each `--flag\0arg\0arg`) and the filter on descriptor 9.
pub fn bwrap_run(mounts: &[String], argv: &[std::ffi::OsString], filter: &Path) {
    let filter = std::fs::File::open(filter).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&filter);
    let mut cmd = Command::new("bwrap");
    cmd.args(["--unshare-all", "--die-with-parent", "--seccomp", "9"]);
    for m in mounts {
        cmd.args(m.split('\0'));
    }
    cmd.args(argv).stdin(Stdio::null()).stdout(Stdio::null());
    // SAFETY: dup2 is async-signal-safe and touches only the child's descriptor table;
    // the copy on 9 has no close-on-exec, so bwrap inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let st = cmd.status().unwrap();
    assert!(st.success(), "bwrap: {st}");
}

pub fn bwrap_version() -> Option<String> {
    let out = Command::new("bwrap").arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A default-kill filter for bubblewrap allowing what the three workloads call (x86_64
/// only, as moat's own default refuses foreign architectures).
pub fn bwrap_filter() -> Vec<u8> {
    use libc::*;
    const ALLOWED: &[c_long] = &[
        SYS_read,
        SYS_write,
        SYS_open,
        SYS_close,
        SYS_stat,
        SYS_fstat,
        SYS_lstat,
        SYS_poll,
        SYS_lseek,
        SYS_mmap,
        SYS_mprotect,
        SYS_munmap,
        SYS_brk,
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_ioctl,
        SYS_pread64,
        SYS_readv,
        SYS_writev,
        SYS_access,
        SYS_sched_yield,
        SYS_mremap,
        SYS_madvise,
        SYS_dup,
        SYS_dup2,
        SYS_getpid,
        SYS_execve,
        SYS_exit,
        SYS_uname,
        SYS_fcntl,
        SYS_getdents64,
        SYS_getcwd,
        SYS_readlink,
        SYS_getrlimit,
        SYS_getrusage,
        SYS_sysinfo,
        SYS_getuid,
        SYS_getgid,
        SYS_geteuid,
        SYS_getegid,
        SYS_getppid,
        SYS_arch_prctl,
        SYS_gettid,
        SYS_futex,
        SYS_sched_getaffinity,
        SYS_set_tid_address,
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_clock_nanosleep,
        SYS_exit_group,
        SYS_openat,
        SYS_newfstatat,
        SYS_set_robust_list,
        SYS_prlimit64,
        SYS_getrandom,
        SYS_rseq,
        SYS_statx,
        SYS_faccessat2,
        SYS_sigaltstack,
        SYS_fstatfs,
        SYS_dup3,
        SYS_pipe2,
        SYS_wait4,
    ];
    let stmt = |code: u16, k: u32| (code, 0u8, 0u8, k);
    let jeq = |k: u32, jt: u8, jf: u8| ((BPF_JMP | BPF_JEQ | BPF_K) as u16, jt, jf, k);
    let ret = |k: u32| stmt((BPF_RET | BPF_K) as u16, k);
    let mut p = vec![
        stmt((BPF_LD | BPF_W | BPF_ABS) as u16, 4),
        jeq(0xc000_003e, 1, 0), // AUDIT_ARCH_X86_64
        ret(SECCOMP_RET_KILL_PROCESS),
        stmt((BPF_LD | BPF_W | BPF_ABS) as u16, 0),
        ((BPF_JMP | BPF_JGE | BPF_K) as u16, 0, 1, 0x4000_0000), // x32
        ret(SECCOMP_RET_KILL_PROCESS),
    ];
    let n = ALLOWED.len();
    for (i, &nr) in ALLOWED.iter().enumerate() {
        // Each match jumps over the rest of the list and the kill to the allow.
        p.push(jeq(nr as u32, (n - i) as u8, 0));
    }
    p.push(ret(SECCOMP_RET_KILL_PROCESS));
    p.push(ret(SECCOMP_RET_ALLOW));
    p.iter()
        .flat_map(|&(code, jt, jf, k)| {
            let mut b = code.to_ne_bytes().to_vec();
            b.extend([jt, jf]);
            b.extend(k.to_ne_bytes());
            b
        })
        .collect()
}
