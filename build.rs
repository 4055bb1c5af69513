//! Lets `cargo build` link against libseccomp on a machine that has the library
//! (libseccomp2: apt and systemd depend on it, so every Debian and Ubuntu has it) but
//! not its development package, which is what provides the `libseccomp.so` name the
//! linker looks for. When that name is missing, point the linker at a private symlink
//! to the versioned library instead of asking the user to install anything.

use std::path::{Path, PathBuf};

const DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    builtin_profiles();
    rootfs_templates();
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LIB_PATH");
    if std::env::var_os("LIBSECCOMP_LIB_PATH").is_some() {
        return;
    }
    if DIRS
        .iter()
        .any(|d| Path::new(d).join("libseccomp.so").exists())
    {
        return;
    }
    let Some(versioned) = DIRS
        .iter()
        .map(|d| Path::new(d).join("libseccomp.so.2"))
        .find(|p| p.exists())
    else {
        println!(
            "cargo:warning=libseccomp was not found; install it (Debian/Ubuntu: apt-get install libseccomp-dev)"
        );
        return;
    };
    let dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("seccomp-link");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/seccomp-link");
    let link = dir.join("libseccomp.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&versioned, &link).expect("symlink libseccomp.so");
    println!("cargo:rustc-link-search=native={}", dir.display());
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
