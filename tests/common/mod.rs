//! The test harness: compiles the C/C++ fixtures under tests/fixtures with the system
//! compiler, runs the `moat` binary as root and as an unprivileged user, and hands back
//! exit code, output and the JSON report.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

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
/// caller and the jail's uid 65534 must reach fixtures under target/).
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

/// The callers every jail test runs under: the current user, and when that is root, an
/// unprivileged user as well, so both identity paths are always covered.
pub fn callers() -> Vec<Caller> {
    if nix::unistd::geteuid().is_root() {
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
        self.report["status"].as_str().unwrap_or("<no report>")
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
    let dir = scratch();
    let report = dir.path().join("report.json");
    let mut cmd = command(caller);
    cmd.arg("run").arg("--report").arg(&report).args(args);
    let out = spawn_with_stdin(cmd, stdin);
    let report = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
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
