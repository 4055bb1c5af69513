//! Builds the data moat carries into the binary: the profiles in `profiles/` and the
//! rootfs templates in `rootfs-templates/`, so an installed moat needs no data files.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    builtin_profiles();
    rootfs_templates();
    git_commit();
    runtimes();
}

/// `moat --version` names the commit it was built from: MOAT_GIT_COMMIT when a
/// packager sets it, else `git rev-parse` of the checkout, else "unknown" (a source
/// tarball). Reruns when HEAD or the branch it points to moves.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=MOAT_GIT_COMMIT");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // The files whose change means another commit: HEAD, the ref it names, and the
    // packed refs (a ref may live only there). Only existing ones: cargo reruns on
    // every build for a watched path that is missing.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        let mut watched = vec![dir.join("HEAD"), dir.join("packed-refs")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(dir.join(head_ref));
        }
        for p in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    let commit = std::env::var("MOAT_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MOAT_GIT_COMMIT={commit}");
}

/// Every profile in profiles/ is built into the binary (an installed moat needs no data
/// files): writes the (name, text) table that src/profile.rs includes.
fn builtin_profiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("profiles/ exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .filter(|n| n != "groups")
        .collect();
    names.sort();
    let mut table = String::from("&[\n");
    for name in names {
        println!("cargo:rerun-if-changed={}/{name}.toml", dir.display());
        table += &format!(
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/profiles/{name}.toml\"))),\n"
        );
    }
    table += "]\n";
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("builtin_profiles.rs");
    std::fs::write(out, table).expect("write the built-in profile table");
}

/// Every file of every template in rootfs-templates/ (but the READMEs) is built into the
/// binary too: writes the (template, path, bytes) table that src/rootfs.rs includes.
fn rootfs_templates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        println!("cargo:rerun-if-changed={}", dir.display());
        for entry in std::fs::read_dir(&dir)
            .expect("read rootfs-templates")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "README.md") {
                println!("cargo:rerun-if-changed={}", path.display());
                files.push(path);
            }
        }
    }
    files.sort();
    let mut table = String::from("&[\n");
    for path in files {
        let rel = path.strip_prefix(&root).expect("under the root");
        let mut parts = rel.iter();
        let template = parts
            .next()
            .expect("a template dir")
            .to_string_lossy()
            .into_owned();
        let inside: PathBuf = parts.collect();
        if inside.as_os_str().is_empty() {
            continue;
        }
        table += &format!(
            "    ({template:?}, {:?}, include_bytes!({:?}).as_slice()),\n",
            inside.display().to_string(),
            path.display().to_string()
        );
    }
    table += "]\n";
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("rootfs_templates.rs");
    std::fs::write(out, table).expect("write the rootfs template table");
}

/// The language runtimes the tests need (tests/lang_*.rs), probed here so that a test
/// whose runtime is missing is compiled with `#[ignore = "X not installed"]` and shows
/// as ignored in the summary, instead of returning early and counting as passed. Sets
/// `cfg(moat_has_X)` for each one found, with the criterion its test uses: the same
/// fixed paths, or the same PATH lookup (`Command::new("go")`). With
/// MOAT_REQUIRE_RUNTIMES=1 (what .ci/run sets) a missing one fails the build instead:
/// CI must not pass by ignoring tests.
fn runtimes() {
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt;

    // The answer changes when PATH does, when a runtime is installed or removed (the
    // directory holding it changes its mtime), or when CI asks for every runtime.
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=MOAT_REQUIRE_RUNTIMES");
    let watched = std::cell::RefCell::new(BTreeSet::new());

    // An executable regular file (after symlinks), as exec would accept it.
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    // The directories of PATH, as the tests' Command::new looks them up. Only absolute
    // ones: an empty or relative entry would mean the build script's cwd (the checkout,
    // target/ included), which cargo would rescan on every build.
    let path_dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .filter(|d| d.is_absolute())
            .collect();
    let on_path = |name: &str| {
        for dir in &path_dirs {
            // Watched whether or not NAME is there: installing it anywhere on PATH
            // changes the directory. Only existing ones: cargo reruns the build script
            // on every build for a watched path that is missing.
            if dir.is_dir() {
                watched.borrow_mut().insert(dir.clone());
            }
        }
        path_dirs.iter().any(|d| executable(&d.join(name)))
    };
    // Whether the fixed path P exists (what the tests check); watches the directory
    // that would hold it, or else the nearest existing one up to STOP (no higher: cargo
    // scans a watched directory recursively, and /usr/lib would be a large scan).
    let fixed = |p: &str, stop: &str| {
        let p = Path::new(p);
        if let Some(dir) = p
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(stop))
            .find(|d| d.is_dir())
        {
            watched.borrow_mut().insert(dir.to_path_buf());
        }
        p.exists()
    };

    const JDK: &str = "/usr/lib/jvm/java-17-openjdk-amd64";
    // (cfg suffix, what is missing when it is not found, found)
    let found = [
        (
            "gcc",
            "gcc/g++ (/usr/bin/gcc and /usr/bin/g++)".to_string(),
            // Both probed, not short-circuited: both directories watched.
            fixed("/usr/bin/gcc", "/usr/bin") & fixed("/usr/bin/g++", "/usr/bin"),
        ),
        ("go", "go (on PATH)".to_string(), on_path("go")),
        (
            "java",
            format!("OpenJDK 17 (java and javac in {JDK}/bin)"),
            fixed(&format!("{JDK}/bin/java"), "/usr/lib/jvm")
                & fixed(&format!("{JDK}/bin/javac"), "/usr/lib/jvm"),
        ),
        (
            "node",
            "node (/usr/local/bin/node or /usr/bin/node)".to_string(),
            fixed("/usr/local/bin/node", "/usr/local/bin") | fixed("/usr/bin/node", "/usr/bin"),
        ),
        (
            "python",
            "python3 (/usr/local/bin, /usr/bin or /bin)".to_string(),
            fixed("/usr/local/bin/python3", "/usr/local/bin")
                | fixed("/usr/bin/python3", "/usr/bin")
                | fixed("/bin/python3", "/bin"),
        ),
        // The rust tests run `rustc` from PATH: cargo gives them no RUSTC (it gives
        // one only to build scripts, always, so that is no sign of anything here).
        ("rustc", "rustc (on PATH)".to_string(), on_path("rustc")),
        (
            "bash",
            "bash (/bin/bash or /usr/bin/bash)".to_string(),
            fixed("/bin/bash", "/bin") | fixed("/usr/bin/bash", "/usr/bin"),
        ),
    ];
    for dir in watched.borrow().iter() {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let mut missing = Vec::new();
    for (name, what, present) in &found {
        println!("cargo::rustc-check-cfg=cfg(moat_has_{name})");
        if *present {
            println!("cargo::rustc-cfg=moat_has_{name}");
        } else {
            missing.push(what.as_str());
        }
    }
    if std::env::var("MOAT_REQUIRE_RUNTIMES").as_deref() == Ok("1") && !missing.is_empty() {
        panic!(
            "MOAT_REQUIRE_RUNTIMES=1 but the tests would be ignored for want of: {}",
            missing.join("; ")
        );
    }
}
