//! Builds the data moat carries into the binary: the profiles in `profiles/` and the
//! rootfs templates in `rootfs-templates/`, so an installed moat needs no data files.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    builtin_profiles();
    rootfs_templates();
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
