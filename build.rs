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
