//! The jail's file system: a tmpfs root that holds exactly what the plan mounts, the
//! libraries found from the ELF, mount flags, the minimal /dev, the optional /proc,
//! sized tmpfs mounts and the command line's binds.
mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TMPFS_MAGIC: &str = "0x1021994";

/// One line of the `mounts` section of `moat plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mount {
    Mkdir(String),
    Symlink(String, String),
    /// dst, src (same as dst unless relocated), flags
    Bind(String, String, Vec<String>),
    Tmpfs(String, Vec<String>),
    Proc(String),
    Remount(String),
}

fn flags_of(s: &str) -> (String, Vec<String>) {
    let (path, flags) = s
        .rsplit_once(" (")
        .unwrap_or_else(|| panic!("no flags in plan line {s:?}"));
    let flags = flags.strip_suffix(')').expect("flags end with )");
    (
        path.to_string(),
        flags.split(',').map(str::to_string).collect(),
    )
}

/// Parses the `mounts` section of `moat plan` output.
fn parse_mounts(plan: &str) -> Vec<Mount> {
    let mut lines = plan.lines().skip_while(|l| !l.starts_with("mounts "));
    let head = lines.next().expect("a mounts section in the plan");
    assert!(
        head.contains("tmpfs / (") && head.contains("read-only at the end"),
        "{head}"
    );
    let mut out = Vec::new();
    for line in lines.take_while(|l| l.starts_with("  ")) {
        let line = line.trim_start();
        let (kind, rest) = line.split_once(' ').expect("kind and argument");
        let rest = rest.trim_start();
        out.push(match kind {
            "mkdir" => Mount::Mkdir(rest.to_string()),
            "symlink" => {
                let (p, t) = rest.split_once(" -> ").expect("symlink PATH -> TARGET");
                Mount::Symlink(p.to_string(), t.to_string())
            }
            "bind" => {
                let (paths, flags) = flags_of(rest);
                match paths.split_once(" <- ") {
                    Some((dst, src)) => Mount::Bind(dst.to_string(), src.to_string(), flags),
                    None => Mount::Bind(paths.clone(), paths, flags),
                }
            }
            "tmpfs" => {
                let (p, flags) = flags_of(rest);
                Mount::Tmpfs(p, flags)
            }
            "proc" => Mount::Proc(flags_of(rest).0),
            "remount" => Mount::Remount(flags_of(rest).0),
            other => panic!("unknown plan step {other:?} in {line:?}"),
        });
    }
    assert!(!out.is_empty(), "empty mounts section:\n{plan}");
    out
}

/// Runs `moat plan ARGS` as `caller` and returns its output.
fn plan(caller: Caller, args: &[&str]) -> String {
    let out = command(caller)
        .arg("plan")
        .args(args)
        .output()
        .expect("run moat plan");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "moat plan {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The lines of the plan's `files` section.
fn plan_files(plan: &str) -> Vec<String> {
    plan.lines()
        .skip_while(|l| !l.starts_with("files "))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

fn type_char(ft: std::fs::FileType) -> char {
    if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else if ft.is_socket() {
        's'
    } else {
        '?'
    }
}

/// What fs_walk prints for host `src` shown at `dst`, recursively.
fn host_tree(src: &Path, dst: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        let inside = dst.join(entry.file_name());
        if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            out.insert(format!("l {} -> {}", inside.display(), target.display()));
        } else {
            out.insert(format!("{} {}", type_char(ft), inside.display()));
        }
        if ft.is_dir() {
            host_tree(&entry.path(), &inside, out);
        }
    }
}

/// The listing fs_walk must print for `/` under these plan steps: every planned path,
/// every parent, the host contents of bound directories, nothing else.
fn expected_listing(mounts: &[Mount]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut paths = Vec::new();
    for m in mounts {
        match m {
            Mount::Mkdir(p) => {
                out.insert(format!("d {p}"));
                paths.push(p.clone());
            }
            Mount::Symlink(p, t) => {
                out.insert(format!("l {p} -> {t}"));
                paths.push(p.clone());
            }
            Mount::Bind(dst, src, flags) => {
                let meta = std::fs::metadata(src).unwrap();
                let t = type_char(meta.file_type());
                assert_eq!(
                    t == 'd',
                    flags.contains(&"rec".to_string()),
                    "directory binds are recursive: {m:?}"
                );
                out.insert(format!("{t} {dst}"));
                if t == 'd' {
                    host_tree(Path::new(src), Path::new(dst), &mut out);
                }
                paths.push(dst.clone());
            }
            Mount::Tmpfs(p, _) | Mount::Proc(p) => {
                out.insert(format!("d {p}"));
                paths.push(p.clone());
            }
            Mount::Remount(_) => {}
        }
    }
    for p in paths {
        for anc in Path::new(&p).ancestors().skip(1) {
            if anc != Path::new("/") {
                out.insert(format!("d {}", anc.display()));
            }
        }
    }
    out
}

/// Runs fs_walk on `/` with `args` (options before `--`) and checks that the listing is
/// exactly what `moat plan` says the root holds.
fn assert_root_is_the_plan(caller: Caller, opts: &[&str]) -> BTreeSet<String> {
    let walk = fixture("fs_walk");
    let walk = path_str(&walk);
    let mut args = opts.to_vec();
    args.extend(["--", walk]);
    let mounts = parse_mounts(&plan(caller, &args));
    let expected = expected_listing(&mounts);
    let run = moat_run(caller, &args);
    assert!(
        run.status() == "ok" && run.code == 0,
        "fs_walk failed ({caller:?}): {run:#?}"
    );
    let mut lines = run.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("fstype / {TMPFS_MAGIC}").as_str()),
        "the root is a tmpfs ({caller:?})"
    );
    let listed: Vec<String> = lines.map(str::to_string).collect();
    let got: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(got.len(), listed.len(), "duplicate entries: {listed:#?}");
    let extra: Vec<_> = got.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{caller:?}: root differs from the plan\n extra (not planned): {extra:#?}\n missing: {missing:#?}\n plan steps: {mounts:#?}"
    );
    // The comparison is not vacuous: the program, its loader and the devices are there.
    assert!(got.contains(&format!("f {walk}")), "{got:#?}");
    assert!(got.contains("c /dev/null"), "{got:#?}");
    got
}

// 1. A tmpfs root after pivot_root holding exactly what the plan mounted.

#[test]
fn root_holds_exactly_the_planned_tree_default_profile() {
    for caller in callers() {
        let got = assert_root_is_the_plan(caller, &[]);
        // The default profile has no /proc.
        assert!(!got.contains("d /proc"), "{got:#?}");
        if let Ok(t) = std::fs::read_link("/lib64") {
            assert!(
                got.contains(&format!("l /lib64 -> {}", t.display())),
                "{got:#?}"
            );
        }
    }
}

#[test]
fn root_holds_exactly_the_planned_tree_with_binds_proc_and_tmpfs() {
    for caller in callers() {
        // A read-only directory with a subdirectory, a file and a symlink; a writable
        // one; a file relocated elsewhere.
        let ro = scratch();
        std::fs::create_dir(ro.path().join("sub")).unwrap();
        std::fs::write(ro.path().join("sub/data.txt"), "data\n").unwrap();
        std::fs::write(ro.path().join("top.txt"), "top\n").unwrap();
        std::os::unix::fs::symlink("sub/data.txt", ro.path().join("link")).unwrap();
        let rw = scratch();
        std::fs::write(rw.path().join("existing"), "x").unwrap();
        let file = scratch();
        let input = file.path().join("input.txt");
        std::fs::write(&input, "21\n").unwrap();
        let relocated = format!("{}:/opt/fs/input.txt", input.display());
        let profile = profile("fs_mounts");
        let got = assert_root_is_the_plan(
            caller,
            &[
                "--profile",
                &profile,
                "--bind",
                path_str(ro.path()),
                "--bind-rw",
                path_str(rw.path()),
                "--bind",
                &relocated,
            ],
        );
        for want in [
            "d /proc".to_string(),
            "d /scratch".to_string(),
            "f /etc/fs_passwd".to_string(),
            "f /opt/fs/input.txt".to_string(),
            "l /dev/fd -> /proc/self/fd".to_string(),
            format!("l {}/link -> sub/data.txt", ro.path().display()),
            format!("f {}/sub/data.txt", ro.path().display()),
            format!("f {}/existing", rw.path().display()),
        ] {
            assert!(
                got.contains(&want),
                "{caller:?}: {want} missing in {got:#?}"
            );
        }
    }
}

// 2. Libraries found from the ELF.

#[test]
fn dynamic_c_and_cpp_programs_run_with_their_libraries() {
    let c = fixture("fs_double_c");
    let cpp = fixture("fs_double_cpp");
    for caller in callers() {
        let p = plan(caller, &["--", path_str(&c)]);
        assert!(p.contains("\nloader      /"), "dynamically linked:\n{p}");
        let run = moat_run_stdin(caller, &["--", path_str(&c)], b"21\n");
        assert_run(&run, "ok", 0, "42\n");

        let p = plan(caller, &["--", path_str(&cpp)]);
        let files = plan_files(&p);
        for lib in ["libstdc++.so", "libm.so", "libgcc_s.so", "libc.so"] {
            assert!(
                files.iter().any(|f| f.contains(lib)),
                "{lib} not among the C++ program's files: {files:#?}"
            );
        }
        let run = moat_run_stdin(caller, &["--", path_str(&cpp)], b"-17\n");
        assert_run(&run, "ok", 0, "double is -34\n");
    }
}

/// Builds `<dir>/lib/libfs_greet.so` and `<dir>/fs_greet` linked against it with
/// RUNPATH `$ORIGIN/lib`; returns the program's path.
fn build_greet(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let lib = dir.join("lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ok = Command::new("gcc")
        .args(["-O1", "-shared", "-fPIC", "-o"])
        .arg(lib.join("libfs_greet.so"))
        .arg(src.join("fs_greet_lib.c"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "building libfs_greet.so");
    let prog = dir.join("fs_greet");
    let ok = Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&prog)
        .arg(src.join("fs_greet_main.c"))
        .arg(format!("-L{}", lib.display()))
        .args(["-lfs_greet", "-Wl,-rpath,$ORIGIN/lib"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "building fs_greet");
    for f in [&prog, &lib.join("libfs_greet.so")] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    open_up(&lib);
    prog
}

#[test]
fn origin_rpath_library_is_found() {
    for caller in callers() {
        let dir = scratch();
        let prog = build_greet(dir.path());
        let prog = path_str(&prog);
        let files = plan_files(&plan(caller, &["--", prog]));
        let lib = dir.path().join("lib/libfs_greet.so");
        assert!(files.contains(&lib.display().to_string()), "{files:#?}");
        let run = moat_run(caller, &["--", prog, "friend"]);
        assert_run(&run, "ok", 0, "greetings, friend, from libfs_greet\n");
    }
}

/// The same program with a fresh /proc: glibc's ld.so takes the executable's $ORIGIN
/// from /proc/self/exe, so this pins down why the default-profile run above can fail.
#[test]
fn origin_rpath_library_is_found_with_proc() {
    for caller in callers() {
        let dir = scratch();
        let prog = build_greet(dir.path());
        let run = moat_run(
            caller,
            &["--profile", &profile("fs_proc"), "--", path_str(&prog)],
        );
        assert_run(&run, "ok", 0, "greetings, jail, from libfs_greet\n");
    }
}

/// Asserts a setup error (exit 125, nothing on stdout) whose message, in the report and
/// on stderr alike, contains every one of `parts`; `what` heads the failure message.
#[track_caller]
fn assert_setup_error_naming(run: &Run, parts: &[&str], what: &str) {
    assert_run(run, "setup_error", 125, "");
    let message = run.report["error"]["message"].as_str().unwrap_or("");
    for text in [message, run.stderr.as_str()] {
        assert!(
            parts.iter().all(|part| text.contains(part)),
            "{what}: {run:#?}"
        );
    }
}

#[test]
fn deleted_needed_library_is_a_setup_error_naming_it() {
    for caller in callers() {
        let dir = scratch();
        let prog = build_greet(dir.path());
        std::fs::remove_file(dir.path().join("lib/libfs_greet.so")).unwrap();
        let run = moat_run(caller, &["--", path_str(&prog)]);
        assert_setup_error_naming(
            &run,
            &["libfs_greet.so", path_str(&prog)],
            "the error names the library and the program",
        );
        assert_eq!(run.report["error"]["kind"], "setup", "{run:#?}");
        assert!(run.report["exit_code"].is_null(), "{run:#?}");
    }
}

/// What fs_lstat prints for a host path.
fn host_lstat(path: &str) -> String {
    match std::fs::symlink_metadata(path) {
        Err(_) => format!("{path}: ENOENT\n"),
        Ok(m) if m.file_type().is_symlink() => {
            format!(
                "{path}: symlink -> {}\n",
                std::fs::read_link(path).unwrap().display()
            )
        }
        Ok(m) if m.is_dir() => format!("{path}: dir\n"),
        Ok(m) if m.is_file() => format!("{path}: file\n"),
        Ok(_) => format!("{path}: other\n"),
    }
}

#[test]
fn host_symlinks_on_the_library_paths_are_recreated() {
    let prog = fixture("fs_lstat");
    let prog = path_str(&prog);
    for caller in callers() {
        let p = plan(caller, &["--", prog]);
        let loader = p
            .lines()
            .find_map(|l| l.strip_prefix("loader      "))
            .expect("a loader line")
            .to_string();
        let mut paths = vec!["/lib64".to_string(), loader.clone()];
        // Every directory on the loader's path.
        for anc in Path::new(&loader).ancestors().skip(1) {
            let anc = anc.display().to_string();
            if anc != "/" && !paths.contains(&anc) {
                paths.push(anc);
            }
        }
        let expected: String = paths.iter().map(|p| host_lstat(p)).collect();
        let mut args = vec!["--", prog];
        args.extend(paths.iter().map(String::as_str));
        let run = moat_run(caller, &args);
        assert_run(&run, "ok", 0, &expected);
        if std::fs::symlink_metadata("/lib64")
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            assert!(run.stdout.starts_with("/lib64: symlink -> "), "{run:#?}");
        }
    }
}

// 3. Mount flags.

struct MountInfo {
    point: String,
    opts: BTreeSet<String>,
    fstype: String,
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap();
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-").expect("separator");
            MountInfo {
                point: unescape(f[4]),
                opts: f[5].split(',').map(str::to_string).collect(),
                fstype: f[dash + 1].to_string(),
            }
        })
        .collect()
}

#[test]
fn mount_flags_in_mountinfo() {
    let cat = fixture("fs_cat");
    let cat = path_str(&cat);
    for caller in callers() {
        let rw = scratch();
        let rw_path = path_str(rw.path());
        let profile = profile("fs_mounts");
        let opts = ["--profile", profile.as_str(), "--bind-rw", rw_path];
        let mut args = opts.to_vec();
        args.extend(["--", cat]);
        let mounts = parse_mounts(&plan(caller, &args));
        args.push("/proc/self/mountinfo");
        let run = moat_run(caller, &args);
        assert!(run.status() == "ok" && run.code == 0, "{run:#?}");
        let info = parse_mountinfo(&run.stdout);
        let by_point: BTreeMap<&str, &MountInfo> =
            info.iter().map(|m| (m.point.as_str(), m)).collect();
        assert_eq!(
            by_point.len(),
            info.len(),
            "one mount per point:\n{}",
            run.stdout
        );

        // Exactly the planned mounts.
        let mut planned: BTreeSet<String> = BTreeSet::from(["/".to_string()]);
        let mut file_binds = Vec::new();
        for m in &mounts {
            match m {
                Mount::Bind(dst, _, flags) => {
                    planned.insert(dst.clone());
                    if !flags.contains(&"rec".to_string()) && !dst.starts_with("/dev/") {
                        file_binds.push(dst.clone());
                    }
                }
                Mount::Tmpfs(p, _) | Mount::Proc(p) => {
                    planned.insert(p.clone());
                }
                _ => {}
            }
        }
        let points: BTreeSet<String> = info.iter().map(|m| m.point.clone()).collect();
        assert_eq!(points, planned, "{caller:?} mountinfo:\n{}", run.stdout);
        assert!(file_binds.contains(&cat.to_string()), "{file_binds:?}");
        assert!(file_binds.contains(&"/etc/fs_passwd".to_string()));

        let devices: Vec<String> = ["null", "zero", "full", "random", "urandom"]
            .iter()
            .map(|d| format!("/dev/{d}"))
            .collect();
        let has = |p: &str, o: &str| by_point[p].opts.contains(o);
        for m in &info {
            assert!(
                m.opts.contains("nosuid"),
                "{caller:?}: {} lacks nosuid",
                m.point
            );
            if !devices.contains(&m.point) {
                assert!(
                    m.opts.contains("nodev"),
                    "{caller:?}: {} lacks nodev",
                    m.point
                );
            }
        }
        assert!(has("/", "ro"), "{caller:?}: / is not read-only");
        assert_eq!(by_point["/"].fstype, "tmpfs");
        for f in &file_binds {
            assert!(has(f, "ro"), "{caller:?}: file bind {f} is not read-only");
        }
        for w in [rw_path, "/scratch"] {
            assert!(
                has(w, "rw") && has(w, "noexec"),
                "{caller:?}: writable mount {w} must be rw,noexec: {:?}",
                by_point[w].opts
            );
        }
        assert_eq!(by_point["/scratch"].fstype, "tmpfs");
        assert!(
            has("/dev", "ro") && has("/dev", "noexec"),
            "{:?}",
            by_point["/dev"].opts
        );
        assert_eq!(by_point["/dev"].fstype, "tmpfs");
        for d in &devices {
            assert!(
                has(d, "noexec"),
                "{caller:?}: {d} {:?}",
                by_point[d.as_str()].opts
            );
        }
        assert!(has("/proc", "noexec") && has("/proc", "nodev"));
        assert_eq!(by_point["/proc"].fstype, "proc");
    }
}

#[test]
fn writing_under_the_root_fails_with_erofs() {
    let write = fixture("fs_write");
    let write = path_str(&write);
    for caller in callers() {
        for path in ["/fs_new_file", "/dev/fs_new_file", write] {
            let run = moat_run(caller, &["--", write, path, "x"]);
            assert_run(&run, "nonzero_exit", 1, "open: EROFS\n");
        }
    }
}

#[test]
fn bind_rw_directory_is_writable_and_shared_with_the_host() {
    let write = fixture("fs_write");
    for caller in callers() {
        let dir = scratch();
        let out = dir.path().join("out.txt");
        let run = moat_run(
            caller,
            &[
                "--bind-rw",
                path_str(dir.path()),
                "--",
                path_str(&write),
                path_str(&out),
                "hello from inside",
            ],
        );
        assert_run(&run, "ok", 0, "wrote 17\n");
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello from inside");
        // Written by the jail's uid 1000, which is 65534 outside (the caller's own id
        // for a non-root caller).
        let (expected_owner, _) = outside_ids(caller);
        assert_eq!(std::fs::metadata(&out).unwrap().uid(), expected_owner);
    }
}

#[test]
fn a_program_copied_into_a_writable_tmpfs_cannot_be_executed() {
    let prog = fixture("fs_noexec");
    let prog = path_str(&prog);
    assert_run_as_callers(
        &[
            "--profile",
            &profile("fs_exec"),
            "--",
            prog,
            prog,
            "/tmp/fs_copy",
        ],
        "ok",
        0,
        "execve: EACCES\n",
    );
}

// 4. Minimal /dev, optional /proc.

#[test]
fn dev_holds_exactly_the_five_devices() {
    let walk = fixture("fs_walk");
    let walk = path_str(&walk);
    let devices = ["full", "null", "random", "urandom", "zero"];
    for caller in callers() {
        let run = moat_run(caller, &["--", walk, "/dev"]);
        let mut want: Vec<String> = devices.iter().map(|d| format!("c /dev/{d}")).collect();
        check_listing(&run, "/dev", &want);

        let run = moat_run(
            caller,
            &["--profile", &profile("fs_proc"), "--", walk, "/dev"],
        );
        want.extend([
            "l /dev/fd -> /proc/self/fd".to_string(),
            "l /dev/stdin -> /proc/self/fd/0".to_string(),
            "l /dev/stdout -> /proc/self/fd/1".to_string(),
            "l /dev/stderr -> /proc/self/fd/2".to_string(),
        ]);
        check_listing(&run, "/dev", &want);
    }
}

#[track_caller]
fn check_listing(run: &Run, root: &str, want: &[String]) {
    assert!(run.status() == "ok" && run.code == 0, "{run:#?}");
    let mut lines = run.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("fstype {root} {TMPFS_MAGIC}").as_str())
    );
    let mut got: Vec<&str> = lines.collect();
    got.sort_unstable();
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want, "{run:#?}");
}

#[test]
fn dev_devices_behave() {
    let dev = fixture("fs_dev");
    assert_run_as_callers(
        &["--", path_str(&dev)],
        "ok",
        0,
        "null: write 10, read 0\n\
         zero: read 4096, all zero\n\
         full: write -1 ENOSPC\n\
         urandom: read 32+32, differ\n\
         random: read 32+32, differ\n",
    );
}

#[test]
fn proc_is_absent_by_default() {
    let lstat = fixture("fs_lstat");
    assert_run_as_callers(
        &["--", path_str(&lstat), "/proc", "/sys"],
        "ok",
        0,
        "/proc: ENOENT\n/sys: ENOENT\n",
    );
}

#[test]
fn proc_shows_only_the_jails_processes() {
    let pids = fixture("fs_pids");
    let pids = path_str(&pids);
    for caller in callers() {
        let run = moat_run(caller, &["--profile", &profile("fs_proc"), "--", pids]);
        assert_run(&run, "ok", 0, "pids 1 2\nself 2\n");
        let run = moat_run(
            caller,
            &["--profile", &profile("fs_proc_fork"), "--", pids, "fork"],
        );
        assert_run(&run, "ok", 0, "pids 1 2 3\nself 2\nchild 3\n");
    }
}

// 5. tmpfs mounts with a size.

#[test]
fn sized_tmpfs_fills_up_with_enospc() {
    let write = fixture("fs_write");
    let write = path_str(&write);
    let profile = profile("fs_small_tmp");
    for caller in callers() {
        // Writes `count` times 16 bytes into `file`.
        let fill = |file: &str, count: &str| {
            moat_run(
                caller,
                &[
                    "--profile",
                    &profile,
                    "--",
                    write,
                    file,
                    "0123456789abcdef",
                    count,
                ],
            )
        };
        // 512 KiB fit.
        let run = fill("/tmp/half", "32768");
        assert_run(&run, "ok", 0, "wrote 524288\n");
        // 2 MiB do not: ENOSPC after about 1 MiB.
        let run = fill("/tmp/big", "131072");
        assert!(
            run.status() == "nonzero_exit" && run.code == 1,
            "{caller:?}: {run:#?}"
        );
        let written: u64 = run
            .stdout
            .strip_prefix("wrote ")
            .and_then(|s| s.strip_suffix(", then ENOSPC\n"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{caller:?}: expected ENOSPC: {run:#?}"));
        assert!(
            ((1 << 20) - (64 << 10)..=1 << 20).contains(&written),
            "{caller:?}: wrote {written} bytes into a 1 MiB tmpfs"
        );
    }
}

// 6. --bind PATH, --bind SRC:DST, --bind-rw, --cwd.

/// Runs `moat run --report R ARGS` as `caller` from host directory `dir` with stdin from
/// `stdin`.
fn moat_run_in(caller: Caller, dir: &Path, args: &[&str], stdin: File) -> Run {
    moat_run_with(caller, args, |cmd| {
        cmd.current_dir(dir).stdin(Stdio::from(stdin));
    })
}

#[test]
fn issue_example_bind_dot_cwd_relative_program() {
    let double = fixture("fs_double_c");
    let cat = fixture("fs_cat");
    for caller in callers() {
        let dir = scratch();
        let prog = dir.path().join("prog");
        std::fs::copy(&double, &prog).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let input = dir.path().join("input.txt");
        std::fs::write(&input, "21\n").unwrap();
        let pwd = path_str(dir.path());
        // moat run --bind . --cwd "$PWD" -- ./prog < input.txt
        let run = moat_run_in(
            caller,
            dir.path(),
            &["--bind", ".", "--cwd", pwd, "--", "./prog"],
            File::open(&input).unwrap(),
        );
        assert_run(&run, "ok", 0, "42\n");
        // The working directory inside is $PWD: relative paths reach the bound files.
        let run = moat_run_in(
            caller,
            dir.path(),
            &[
                "--bind",
                ".",
                "--cwd",
                pwd,
                "--",
                path_str(&cat),
                "./input.txt",
            ],
            File::open("/dev/null").unwrap(),
        );
        assert_run(&run, "ok", 0, "21\n");
    }
}

#[test]
fn bind_src_dst_relocates_directories_and_files_read_only() {
    let cat = fixture("fs_cat");
    let cat = path_str(&cat);
    let write = fixture("fs_write");
    let write = path_str(&write);
    for caller in callers() {
        let dir = scratch();
        let input = dir.path().join("input.txt");
        std::fs::write(&input, "relocated\n").unwrap();
        let dir_spec = format!("{}:/data", dir.path().display());
        let file_spec = format!("{}:/etc/fs_input", input.display());
        let run = moat_run(
            caller,
            &[
                "--bind",
                &dir_spec,
                "--bind",
                &file_spec,
                "--",
                cat,
                "/data/input.txt",
                "/etc/fs_input",
            ],
        );
        assert_run(&run, "ok", 0, "relocated\nrelocated\n");
        // Read-only: neither a new file in the directory nor the file itself.
        for target in ["/data/new.txt", "/etc/fs_input"] {
            let run = moat_run(
                caller,
                &[
                    "--bind", &dir_spec, "--bind", &file_spec, "--", write, target, "x",
                ],
            );
            assert_run(&run, "nonzero_exit", 1, "open: EROFS\n");
        }
        // --bind-rw SRC:DST is writable.
        let rw_spec = format!("{}:/out", dir.path().display());
        let run = moat_run(
            caller,
            &["--bind-rw", &rw_spec, "--", write, "/out/new.txt", "rw"],
        );
        assert_run(&run, "ok", 0, "wrote 2\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("new.txt")).unwrap(),
            "rw"
        );
    }
}

#[test]
fn missing_bind_source_is_a_setup_error() {
    let cat = fixture("fs_cat");
    let cat = path_str(&cat);
    for caller in callers() {
        for (opt, spec) in [
            ("--bind", "/nonexistent/fs_missing_src"),
            ("--bind", "/nonexistent/fs_missing_src:/data"),
            ("--bind-rw", "/nonexistent/fs_missing_src"),
        ] {
            let run = moat_run(caller, &[opt, spec, "--", cat, "/etc/hostname"]);
            assert_setup_error_naming(
                &run,
                &[&format!("{opt} {spec}"), "does not exist"],
                &format!("{caller:?}: the error names the option and the path"),
            );
        }
        // The same in a profile: the error names the file, the key and the path.
        let profile = profile("fs_missing_bind");
        let run = moat_run(caller, &["--profile", &profile, "--", cat, "/etc/hostname"]);
        assert_setup_error_naming(
            &run,
            &[
                "fs_missing_bind.toml",
                "filesystem.bind.src",
                "/nonexistent/fs_missing_profile_src",
            ],
            &format!("{caller:?}"),
        );
    }
}

/// A rootfs template writes its small files into the root, filled in with the jail's
/// user and hostname: /etc/passwd names uid 1000, so `id` finds the user's name.
#[test]
fn rootfs_template_names_the_jails_user() {
    let profile = profile("fs_template");
    for caller in callers() {
        let run = moat_run(caller, &["--profile", &profile, "--", "/usr/bin/id"]);
        assert_run(
            &run,
            "ok",
            0,
            "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)\n",
        );
        let run = moat_run(
            caller,
            &["--profile", &profile, "--", "/bin/cat", "/etc/hostname"],
        );
        assert_run(&run, "ok", 0, "judge\n");
    }
    let plan = std::process::Command::new(MOAT)
        .args(["plan", "--profile", &profile, "--", "/usr/bin/id"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("  file     /etc/passwd ("), "{text}");
}
