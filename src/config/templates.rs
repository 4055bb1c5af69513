//! Rootfs templates: small files (`/etc/passwd` naming the jail's user, `/etc/hosts`,
//! …) built into the binary from `rootfs-templates/`, which a profile names by
//! `[filesystem] template`. The planner writes them into the jail's root.

/// The rootfs templates built into the binary: (template, path inside, contents).
pub const TEMPLATES: &[(&str, &str, &[u8])] =
    include!(concat!(env!("OUT_DIR"), "/rootfs_templates.rs"));

pub fn names() -> Vec<&'static str> {
    let mut names: Vec<&str> = TEMPLATES.iter().map(|(t, _, _)| *t).collect();
    names.dedup();
    names
}

/// A template file's contents with the jail's values filled in (text files only:
/// binary ones such as etc/localtime are copied as they are).
pub fn fill(contents: &[u8], uid: u32, gid: u32, hostname: &str) -> Vec<u8> {
    match std::str::from_utf8(contents) {
        Ok(text) => text
            .replace("{{uid}}", &uid.to_string())
            .replace("{{gid}}", &gid.to_string())
            .replace("{{hostname}}", hostname)
            .into_bytes(),
        Err(_) => contents.to_vec(),
    }
}

/// The files of template `name`: (path inside the jail, contents as shipped).
pub fn files(name: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> + '_ {
    TEMPLATES
        .iter()
        .filter(move |(t, _, _)| *t == name)
        .map(|(_, p, c)| (*p, *c))
}
