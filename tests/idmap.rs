//! A root caller's `--bind-rw DIR`: its jail runs as uid 65534 outside, so a DIR that
//! root (or anyone else) owns with mode 0755 was read-only to it ("cannot open output
//! file sol: Permission denied"). moat binds such a DIR through an id-mapped mount that
//! shows its owner as the jail: the program writes there, and on the host what it made
//! belongs to DIR's owner. Files of other owners stay out of reach, nothing outside DIR
//! becomes writable, no set-user-ID file can be made there, a file system that cannot
//! map ids is refused before the run with the fix, and a rootless run is as it was.
mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// Whether the tests run as root; prints the skip line if not.
fn root() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: needs root (the id-mapped bind is for a root caller)");
    }
    is_root()
}

/// A fresh directory under the system temp dir owned by `uid:gid` with `mode`.
fn dir_of(uid: u32, gid: u32, mode: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("moat-idmap-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    open_up(dir.path().parent().unwrap());
    dir
}

/// `moat run --profile sh --bind-rw DIR --cwd DIR -- /bin/sh -c SCRIPT` as `caller`.
fn sh_in(caller: Caller, dir: &Path, script: &str) -> Run {
    run_in_workdir(
        caller,
        "sh",
        dir,
        true,
        &["--no-cache"],
        &["/bin/sh", "-c", script],
        b"",
    )
}

/// (uid, gid, mode) of `path` on the host.
fn owner(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn a_root_owned_work_dir_is_writable_and_what_the_jail_makes_stays_roots() {
    if !root() {
        return;
    }
    let dir = dir_of(0, 0, 0o755);
    let d = dir.path();
    // A file of another user in it, readable by all: it stays that user's.
    let other = d.join("other");
    std::fs::write(&other, "theirs\n").unwrap();
    std::os::unix::fs::chown(&other, Some(4242), Some(4242)).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    let elsewhere = dir_of(0, 0, 0o755);
    let mounts = mount_count();
    let script = format!(
        "echo x > f && mkdir sub && echo y > sub/g && ls -ln f | cut -d' ' -f3,4 && \
         cat other && (echo no > other) 2>&1; (echo no > /escaped) 2>&1; \
         (echo no > {e}/escaped) 2>&1; ls -ln other | cut -d' ' -f3,4",
        e = path_str(elsewhere.path())
    );
    let run = sh_in(Caller::Current, d, &script);
    // Inside, the program's files are its own (uid 1000), as in a rootless run.
    // Another user's file is not the jail's (its owner is unmapped: the overflow id);
    // the root is read-only; a host directory that is not bound is not there.
    let e = path_str(elsewhere.path());
    assert_run(
        &run,
        "ok",
        0,
        &format!(
            "1000 1000\ntheirs\n/bin/sh: 1: cannot create other: Permission denied\n\
             /bin/sh: 1: cannot create /escaped: Read-only file system\n\
             /bin/sh: 1: cannot create {e}/escaped: Directory nonexistent\n65534 65534\n"
        ),
    );
    // On the host they are the directory owner's, mode as the program's umask says.
    assert_eq!(std::fs::read_to_string(d.join("f")).unwrap(), "x\n");
    assert_eq!(owner(&d.join("f")), (0, 0, 0o644));
    assert_eq!(owner(&d.join("sub")).0, 0);
    assert_eq!(owner(&d.join("sub/g")).0, 0);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "theirs\n");
    assert_eq!(owner(&other), (4242, 4242, 0o644));
    assert_eq!(owner(d), (0, 0, 0o755), "the directory itself is unchanged");
    assert!(!Path::new("/escaped").exists());
    assert!(!elsewhere.path().join("escaped").exists());
    assert_eq!(mount_count(), mounts, "a mount was left behind");
}

#[test]
fn a_dir_of_another_user_gets_files_owned_by_that_user() {
    if !root() {
        return;
    }
    let dir = dir_of(4242, 4243, 0o755);
    let run = sh_in(Caller::Current, dir.path(), "echo x > f");
    assert_run(&run, "ok", 0, "");
    assert_eq!(owner(&dir.path().join("f")), (4242, 4243, 0o644));
}

#[test]
fn a_read_only_bind_is_not_mapped() {
    if !root() {
        return;
    }
    let dir = dir_of(0, 0, 0o755);
    let run = run_in_workdir(
        Caller::Current,
        "sh",
        dir.path(),
        false,
        &["--no-cache"],
        &["/bin/sh", "-c", "echo x > f"],
        b"",
    );
    assert_eq!(run.status(), "nonzero_exit", "{run:#?}");
    assert!(run.stderr.contains("Read-only file system"), "{run:#?}");
    assert!(!dir.path().join("f").exists());
}

#[test]
fn no_set_user_id_file_can_be_made_through_the_mapped_mount() {
    if !root() {
        return;
    }
    let prog = fixture("idmap_setid");
    let dir = dir_of(0, 0, 0o755);
    let d = path_str(dir.path());
    let run = moat_run(
        Caller::Current,
        &[
            "--no-cache",
            "--profile",
            "sh",
            "--bind",
            path_str(prog.parent().unwrap()),
            "--bind-rw",
            d,
            "--cwd",
            d,
            "--",
            path_str(&prog),
        ],
    );
    assert_run(
        &run,
        "ok",
        0,
        "open ok\nopen_suid EPERM\nopenat_sgid EPERM\ncreat_suid EPERM\nmknod_suid EPERM\n\
         mknodat_sgid EPERM\nchmod_suid EPERM\nfchmod_sgid EPERM\nfchmodat_suid EPERM\n\
         fchmodat2_suid EPERM\nopenat2 ENOSYS\nchmod ok\n",
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["plain"], "only the plain file was made");
    assert_eq!(owner(&dir.path().join("plain")), (0, 0, 0o700));
    // `moat plan` says what the run does: the mapping, and the guard in the filter.
    let out = Command::new(MOAT)
        .args([
            "plan",
            "--no-cache",
            "--profile",
            "sh",
            "--bind-rw",
            d,
            "--",
            "/bin/sh",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "  idmap    {d} (its owner 0:0 is the jail's 65534:65534"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "with a set-user-ID or set-group-ID mode: errno EPERM; openat2: errno ENOSYS"
        ),
        "{text}"
    );
}

#[test]
fn gpp_links_sol_into_a_root_owned_work_dir() {
    if !root() || !installed(all_exist(&["/usr/bin/g++"]), "g++") {
        return;
    }
    let dir = dir_of(0, 0, 0o755);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello_iostream.cpp");
    std::fs::copy(src, dir.path().join("sol.cpp")).unwrap();
    let d = path_str(dir.path());
    let run = moat_run(
        Caller::Current,
        &[
            "--no-cache",
            "--profile",
            "gcc",
            "--bind-rw",
            d,
            "--cwd",
            d,
            "--",
            "g++",
            "-o",
            "sol",
            "sol.cpp",
        ],
    );
    // Before: "ld: cannot open output file sol: Permission denied".
    assert_run(&run, "ok", 0, "");
    let sol = dir.path().join("sol");
    assert_eq!(owner(&sol).0, 0, "the program is root's, as its directory");
    let run = moat_run(Caller::Current, &["--no-cache", "--", path_str(&sol)]);
    assert_eq!(run.status(), "ok", "{run:#?}");
    assert!(!run.stdout.is_empty(), "{run:#?}");
}

/// Runs `script` as root in a mount namespace of its own (nothing it mounts is seen
/// outside, and it is gone when the script ends).
fn in_own_mounts(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", script])
        .output()
        .unwrap()
}

/// The kernel's (major, minor).
fn kernel() -> (u32, u32) {
    let r = nix::sys::utsname::uname().unwrap();
    let rel = r.release().to_string_lossy().into_owned();
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn a_root_owned_tmpfs_is_mapped_too_from_linux_6_3() {
    if !root() || !installed(Path::new("/usr/bin/unshare").exists(), "unshare") {
        return;
    }
    let dir = dir_of(0, 0, 0o755);
    let d = path_str(dir.path());
    let script = format!(
        "mount -t tmpfs -o mode=755 none {d} && {moat} run --no-cache --profile sh --bind-rw {d} \
         --cwd {d} -- /bin/sh -c 'echo x > f'; echo rc=$?; stat -c '%u %g' {d}/f",
        moat = MOAT
    );
    let out = in_own_mounts(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if kernel() >= (6, 3) {
        assert_eq!(stdout, "rc=0\n0 0\n", "{stderr}");
    } else {
        assert!(stdout.starts_with("rc=125\n"), "{stdout} {stderr}");
        assert!(
            stderr.contains("(tmpfs) does not support id-mapped mounts"),
            "{stderr}"
        );
    }
}

#[test]
fn a_file_system_that_cannot_map_ids_is_refused_before_the_run_with_the_fix() {
    if !root() || !installed(Path::new("/usr/bin/unshare").exists(), "unshare") {
        return;
    }
    // ramfs has no id-mapped mounts (no FS_ALLOW_IDMAP).
    let dir = dir_of(0, 0, 0o755);
    let d = path_str(dir.path());
    let report = ReportFile::new();
    let r = path_str(&report.path);
    let script = format!(
        "mount -t ramfs none {d} && chmod 755 {d} && \
         {moat} run --no-cache --report {r} --profile sh --bind-rw {d} --cwd {d} -- /bin/sh -c 'echo x > f'; \
         echo rc=$?; ls {d}; chown 65534:65534 {d} && \
         {moat} run --no-cache --profile sh --bind-rw {d} --cwd {d} -- /bin/sh -c 'echo y > g'; \
         echo rc=$?; stat -c '%u' {d}/g",
        moat = MOAT
    );
    let out = in_own_mounts(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Refused (nothing ran, nothing was written); once chowned as the message says, the
    // directory is bound as it is and the jail writes as 65534.
    assert_eq!(stdout, "rc=125\nrc=0\n65534\n", "{stderr}");
    for want in [
        format!("{d} is bound writable, but the jail runs as uid 65534 outside"),
        "its file system (ramfs) does not support id-mapped mounts".to_string(),
        format!("Fix: `chown 65534:65534 {d}`"),
        "or run moat as an unprivileged user".to_string(),
    ] {
        assert!(stderr.contains(&want), "no {want:?} in {stderr}");
    }
    let rep = report.read();
    assert_eq!(report_status(&rep), "setup_error", "{rep}");
    assert!(
        rep["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not support id-mapped mounts")),
        "{rep}"
    );
}

#[test]
fn a_rootless_caller_writes_its_own_dir_as_before() {
    let caller = if is_root() {
        Caller::Unprivileged
    } else {
        Caller::Current
    };
    let (uid, gid) = outside_ids(caller);
    let dir = if is_root() {
        dir_of(uid, gid, 0o755)
    } else {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        open_up(d.path());
        d
    };
    let run = sh_in(
        caller,
        dir.path(),
        "echo x > f && ls -ln f | cut -d' ' -f3,4",
    );
    assert_run(&run, "ok", 0, "1000 1000\n");
    assert_eq!(owner(&dir.path().join("f")), (uid, gid, 0o644));
    // Nothing is mapped and the filter is the profile's own.
    let d = path_str(dir.path());
    let out = command(caller)
        .args([
            "plan",
            "--no-cache",
            "--profile",
            "sh",
            "--bind-rw",
            d,
            "--",
            "/bin/sh",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  bind     "), "{text}");
    assert!(!text.contains("  idmap "), "{text}");
    assert!(!text.contains("set-user-ID"), "{text}");
}
