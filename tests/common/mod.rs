//! The test harness: compiles the C/C++ fixtures under tests/fixtures with the system
//! compiler, runs the `moat` binary as root and as an unprivileged user, and hands back
//! exit code, output and the JSON report.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MOAT: &str = env!("CARGO_BIN_EXE_moat");

/// Where compiled fixtures (and a copy of the moat binary) go: a directory under the
/// system temp dir that every user can traverse, so the unprivileged runs (and the
/// jail's uid 65534 when the caller is root) can execute them wherever the checkout is.
pub fn fixture_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moat-test-fixtures-{}", nix::unistd::geteuid()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The moat binary, copied where an unprivileged user can execute it.
pub fn moat_bin() -> PathBuf {
    let out = fixture_dir().join("moat");
    let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = match (std::fs::metadata(&out), std::fs::metadata(MOAT)) {
        (Ok(o), Ok(s)) => o.modified().unwrap() >= s.modified().unwrap() && o.len() == s.len(),
        _ => false,
    };
    if !fresh {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        std::fs::copy(MOAT, &tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// Makes `path` and every parent up to `/` traversable by others (the unprivileged
/// caller and the jail's uid 65534 must reach files in scratch directories).
pub fn open_up(path: &Path) {
    for p in path.ancestors() {
        if let Ok(meta) = std::fs::metadata(p) {
            let mode = meta.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o005));
            }
        }
    }
}

static COMPILE: Mutex<()> = Mutex::new(());

/// Compiles tests/fixtures/NAME.c (or .cpp) with `flags` into an executable and returns
/// its path. Recompiles when the source is newer.
pub fn fixture_with(name: &str, out_name: &str, flags: &[&str]) -> PathBuf {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (src, compiler) = if src_dir.join(format!("{name}.cpp")).exists() {
        (src_dir.join(format!("{name}.cpp")), "g++")
    } else {
        (src_dir.join(format!("{name}.c")), "gcc")
    };
    assert!(src.exists(), "no fixture source for {name}");
    let out = fixture_dir().join(out_name);
    let _guard = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = match (std::fs::metadata(&out), std::fs::metadata(&src)) {
        (Ok(o), Ok(s)) => o.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let status = Command::new(compiler)
            .args(["-O1", "-g0", "-o"])
            .arg(&tmp)
            .arg(&src)
            .args(flags)
            .status()
            .expect("a C compiler (gcc/g++) is needed for the fixtures");
        assert!(status.success(), "compiling {} failed", src.display());
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

pub fn fixture(name: &str) -> PathBuf {
    fixture_with(name, name, &[])
}

/// A statically linked build of a fixture.
pub fn static_fixture(name: &str) -> PathBuf {
    fixture_with(name, &format!("{name}.static"), &["-static"])
}

/// Path of a test profile under tests/profiles.
pub fn profile(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/profiles")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Whoever runs the tests (root in CI).
    Current,
    /// uid/gid 65534 through setpriv: the rootless path.
    Unprivileged,
}

/// The callers with no usable cgroup on this host: the unprivileged one when the tests
/// run as root, else the current user.
pub fn callers_without_cgroup() -> Vec<Caller> {
    if is_root() {
        vec![Caller::Unprivileged]
    } else {
        vec![Caller::Current]
    }
}

/// The callers every jail test runs under: the current user, and when that is root, an
/// unprivileged user as well, so both identity paths are always covered.
pub fn callers() -> Vec<Caller> {
    if is_root() {
        vec![Caller::Current, Caller::Unprivileged]
    } else {
        vec![Caller::Current]
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub report: Value,
}

impl Run {
    pub fn status(&self) -> &str {
        report_status(&self.report)
    }
}

pub fn command(caller: Caller) -> Command {
    match caller {
        Caller::Current => Command::new(MOAT),
        Caller::Unprivileged => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(moat_bin());
            c
        }
    }
}

/// `moat learn --save SAVED -- COMMAND…` as `caller`, capturing everything.
pub fn moat_learn(caller: Caller, saved: &Path, command_line: &[&str]) -> Output {
    command(caller)
        .arg("learn")
        .arg("--save")
        .arg(saved)
        .arg("--")
        .args(command_line)
        .output()
        .unwrap()
}

/// A scratch directory every user can use (for reports and bound work dirs).
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("moat-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Runs `moat run ARGS` as `caller` with `stdin`, capturing everything.
pub fn moat_run_stdin(caller: Caller, args: &[&str], stdin: &[u8]) -> Run {
    moat_run_from(command(caller), args, stdin)
}

pub fn moat_run(caller: Caller, args: &[&str]) -> Run {
    moat_run_stdin(caller, args, b"")
}

pub fn spawn_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Asserts the run's verdict, exit code and stdout, showing everything on failure.
#[track_caller]
pub fn assert_run(run: &Run, status: &str, code: i32, stdout: &str) {
    assert!(
        run.status() == status && run.code == code && run.stdout == stdout,
        "expected status={status} code={code} stdout={stdout:?}\n got {run:#?}"
    );
}

// ------------------------------------------------ helpers shared by several test files

/// Whether the tests run as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A path as the `&str` moat's command line takes (every test path is UTF-8).
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The ids the jail's processes, and the files they create, have outside (inside they
/// are uid/gid 1000): 65534 for a root caller (never 0), the caller's own ids otherwise.
pub fn outside_ids(caller: Caller) -> (u32, u32) {
    match caller {
        Caller::Current if is_root() => (65534, 65534),
        Caller::Current => (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
        Caller::Unprivileged => (65534, 65534),
    }
}

/// The report file of one `moat run`, in a scratch directory removed on drop.
pub struct ReportFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl ReportFile {
    pub fn new() -> ReportFile {
        let dir = scratch();
        let path = dir.path().join("report.json");
        ReportFile { _dir: dir, path }
    }

    /// `BASE run --report PATH ARGS`, where BASE starts moat as some caller (`command`).
    pub fn run(&self, mut base: Command, args: &[&str]) -> Command {
        base.arg("run").arg("--report").arg(&self.path).args(args);
        base
    }

    /// The report moat wrote; Null when there is none (or it is not JSON).
    pub fn read(&self) -> Value {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }
}

impl Run {
    /// A run from moat's captured output and the report it wrote.
    pub fn from_output(out: &Output, report: Value) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report,
        }
    }
}

/// The verdict a report names (`<no report>` when moat wrote none).
pub fn report_status(report: &Value) -> &str {
    report["status"].as_str().unwrap_or("<no report>")
}

/// Runs `BASE run --report F ARGS` with `stdin`, capturing everything; BASE starts moat
/// as some identity (`command`, or a setpriv of the test's own).
pub fn moat_run_from(base: Command, args: &[&str], stdin: &[u8]) -> Run {
    let report = ReportFile::new();
    let out = spawn_with_stdin(report.run(base, args), stdin);
    Run::from_output(&out, report.read())
}

/// `moat run --report F ARGS` as `caller`, after `setup` has adjusted the command
/// (environment, working directory, stdin, pre_exec). Stdin is /dev/null unless
/// `setup` sets it.
pub fn moat_run_with(caller: Caller, args: &[&str], setup: impl FnOnce(&mut Command)) -> Run {
    let report = ReportFile::new();
    let mut cmd = report.run(command(caller), args);
    cmd.stdin(Stdio::null());
    setup(&mut cmd);
    let out = cmd.output().expect("run moat");
    Run::from_output(&out, report.read())
}

/// Runs `moat run [--profile PROFILE] OPTS -- PROG ARGS` as `caller`, PROFILE being the
/// name of a test profile (see `profile`).
pub fn moat_run_profiled(
    caller: Caller,
    profile_name: Option<&str>,
    opts: &[&str],
    prog: &str,
    args: &[&str],
) -> Run {
    let prof = profile_name.map(profile);
    let mut all: Vec<&str> = Vec::new();
    if let Some(p) = &prof {
        all.extend(["--profile", p.as_str()]);
    }
    all.extend_from_slice(opts);
    all.push("--");
    all.push(prog);
    all.extend_from_slice(args);
    moat_run(caller, &all)
}

/// Runs `moat run ARGS` as every caller of `callers()` and asserts each run's verdict,
/// exit code and stdout.
#[track_caller]
pub fn assert_run_as_callers(args: &[&str], status: &str, code: i32, stdout: &str) {
    for caller in callers() {
        let run = moat_run(caller, args);
        assert_run(&run, status, code, stdout);
    }
}

/// A string no other process on the host has in its argv (`KIND-marker-TAG-...`):
/// passed as an argument of the fixture, it lets the test find the jail's processes in
/// the host's /proc.
pub fn marker(kind: &str, tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{kind}-marker-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Host pids of the live processes, as /proc lists them.
pub fn host_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .collect()
}

/// Host pids of live processes with `marker` as one of their arguments.
pub fn marked_pids(marker: &str) -> Vec<i32> {
    host_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|&b| b == 0)
                    .any(|arg| arg == marker.as_bytes())
            })
        })
        .collect()
}

/// SIGKILLs every process carrying `marker` and returns their pids, so that a failing
/// test leaves nothing running.
pub fn kill_marked(marker: &str) -> Vec<i32> {
    let alive = marked_pids(marker);
    for &pid in &alive {
        // SAFETY: kill with a plain pid and signal.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    alive
}

/// Asserts that no process carrying `marker` is alive; kills any it finds first, so a
/// failing test leaves nothing running either.
#[track_caller]
pub fn assert_none_alive(marker: &str, what: &str) {
    let left = kill_marked(marker);
    let details: Vec<String> = left
        .iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            format!("{pid}: {}", stat.trim())
        })
        .collect();
    assert!(
        left.is_empty(),
        "{what}: processes of the jail still alive after moat returned: {details:#?}"
    );
}

/// Polls `f` every `every` until it holds or `limit` passes; returns whether it held.
pub fn poll(limit: Duration, every: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// How many mounts this process's mount namespace holds (lines of its mountinfo).
pub fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

// ------------------------------------------------ helpers of the language-profile tests

/// Whether every one of `paths` exists.
pub fn all_exist(paths: &[&str]) -> bool {
    paths.iter().all(|p| Path::new(p).exists())
}

/// Whether a runtime or tool a test needs is `found`; prints the skip line
/// `SKIPPED: WHAT not installed` when it is not. A test that returns early on it counts
/// as passed: a language runtime is a `cfg(moat_has_X)` from build.rs instead, which
/// marks the test ignored when the runtime is missing.
pub fn installed(found: bool, what: &str) -> bool {
    if !found {
        eprintln!("SKIPPED: {what} not installed");
    }
    found
}

/// `moat run --profile PROFILE --bind(-rw) WORK --cwd WORK OPTS -- COMMAND` as `caller`
/// with `stdin` (`rw`: the work dir is bound with --bind-rw): the way a user runs a
/// submission from its work dir.
pub fn run_in_workdir(
    caller: Caller,
    profile: &str,
    work: &Path,
    rw: bool,
    opts: &[&str],
    command: &[&str],
    stdin: &[u8],
) -> Run {
    let mut all = vec![
        "--profile",
        profile,
        if rw { "--bind-rw" } else { "--bind" },
        path_str(work),
        "--cwd",
        path_str(work),
    ];
    all.extend_from_slice(opts);
    all.push("--");
    all.extend_from_slice(command);
    moat_run_stdin(caller, &all, stdin)
}

/// Asserts that the run ended by a violation (exit 159) after printing `stdout`, naming
/// `syscall` on x86_64; `what` (the case) goes into the failure messages.
#[track_caller]
pub fn assert_violation(run: &Run, stdout: &str, syscall: &str, what: &str) {
    assert_run(run, "violation", 159, stdout);
    assert_eq!(
        run.report["violation"]["syscall"], syscall,
        "{what}: {run:#?}"
    );
    assert_eq!(
        run.report["violation"]["arch"], "x86_64",
        "{what}: {run:#?}"
    );
}

/// What a language's writer program (`write PATH`: writes "escaped\n" to PATH) prints
/// when a write fails, for `assert_writes_only_inside_a_writable_workdir`.
pub struct WriteFailures<'a> {
    /// Paths on the jail's root (or directories moat made on it): read-only.
    pub read_only_paths: &'a [&'a str],
    /// The message for PATH on a read-only file system.
    pub read_only: &'a dyn Fn(&str) -> String,
    /// The message for PATH in a host directory that is not bound.
    pub not_found: &'a dyn Fn(&str) -> String,
    /// Whether to check that a work dir bound read-only (`--bind .`) cannot be written.
    pub read_only_workdir: bool,
}

/// The "writes only inside a writable workdir" checks, for every caller: `write(caller,
/// WORK, rw, PATH)` runs the program's `write PATH` in a fresh `workdir()` WORK (bound
/// --bind-rw when `rw`). Inside the --bind-rw work dir a write is allowed and the file
/// lands on the host; the jail's root and the directories moat made on it are
/// read-only; a host directory that exists but is not bound is not there at all; and
/// (`read_only_workdir`) a work dir bound read-only cannot be written either.
#[track_caller]
pub fn assert_writes_only_inside_a_writable_workdir(
    workdir: impl Fn() -> tempfile::TempDir,
    write: impl Fn(Caller, &Path, bool, &str) -> Run,
    fails: WriteFailures,
) {
    for caller in callers() {
        let work = workdir();
        let elsewhere = scratch();
        let run = write(caller, work.path(), true, "out.txt");
        assert_run(&run, "ok", 0, "wrote out.txt\n");
        assert_eq!(
            std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
            "escaped\n"
        );
        for path in fails.read_only_paths {
            let run = write(caller, work.path(), true, path);
            assert_run(&run, "nonzero_exit", 1, &(fails.read_only)(path));
        }
        let target = elsewhere.path().join("escaped");
        let target_s = path_str(&target);
        let run = write(caller, work.path(), true, target_s);
        assert_run(&run, "nonzero_exit", 1, &(fails.not_found)(target_s));
        assert!(!target.exists(), "{} was created", target.display());
        if fails.read_only_workdir {
            let run = write(caller, work.path(), false, "ro.txt");
            assert_run(&run, "nonzero_exit", 1, &(fails.read_only)("ro.txt"));
            assert!(!work.path().join("ro.txt").exists());
        }
    }
}

/// Asserts that `moat profiles` lists a profile NAME whose line mentions `mention`.
#[track_caller]
pub fn assert_profile_listed(name: &str, mention: &str) {
    let out = Command::new(MOAT).arg("profiles").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with(name) && l.contains(mention)),
        "{text}"
    );
}

/// tests/fixtures/lang_c_escape.c's fork, exec and socket, run under the native-code
/// profile PROFILE (c, cpp) from a read-only work dir as every caller: each is a
/// violation naming its syscall.
#[track_caller]
pub fn assert_escape_fixture_violations(profile: &str) {
    let work = scratch();
    let prog = fixture("lang_c_escape");
    for caller in callers() {
        for (what, syscall) in [("fork", "clone"), ("exec", "execve"), ("socket", "socket")] {
            let run = run_in_workdir(
                caller,
                profile,
                work.path(),
                false,
                &[],
                &[path_str(&prog), what],
                b"",
            );
            assert_violation(&run, "", syscall, what);
        }
    }
}

// ------------------------------------------------ cgroups left behind

/// Where run cgroups can be, in any hierarchy this host mounts.
pub const CGROUP_ROOTS: &[&str] = &[
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup",
];

/// Every cgroup directory (any hierarchy, any depth) whose name starts with `prefix`.
pub fn cgroup_dirs(prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
        if depth > 12 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            // Cgroup directories are real directories; control files are not.
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(prefix) {
                out.push(p.clone());
            }
            walk(&p, prefix, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    for root in CGROUP_ROOTS {
        walk(Path::new(root), prefix, 0, &mut out);
    }
    out.sort();
    out.dedup();
    out
}
