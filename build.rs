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
