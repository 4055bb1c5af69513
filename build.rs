//! Builds the data moat carries into the binary: the profiles in `profiles/` and the
//! rootfs templates in `rootfs-templates/`, so an installed moat needs no data files.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    builtin_profiles();
    rootfs_templates();
    git_commit();
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
