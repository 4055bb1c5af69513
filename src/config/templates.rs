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
///
/// In `name:x:ID:…` files (passwd, group), a line naming the jail's own id is left
/// out when another line of the template already names that id (uid 65534 is
/// `nobody`, not `sandbox`): lookups by id find the first line, which must keep the
/// system's name.
pub fn fill(contents: &[u8], uid: u32, gid: u32, hostname: &str) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(contents) else {
        return contents.to_vec();
    };
    let id_of = |line: &str| line.split(':').nth(2).map(str::to_string);
    let fixed: Vec<Option<String>> = text
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(id_of)
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let filled = line
            .replace("{{uid}}", &uid.to_string())
            .replace("{{gid}}", &gid.to_string())
            .replace("{{hostname}}", hostname);
        let names_an_id = line.contains("{{uid}}") || line.contains("{{gid}}");
        let taken = id_of(&filled).is_some_and(|id| fixed.contains(&Some(id)));
        if names_an_id && taken {
            continue;
        }
        out.push_str(&filled);
    }
    out.into_bytes()
}

/// The files of template `name`: (path inside the jail, contents as shipped).
pub fn files(name: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> + '_ {
    TEMPLATES
        .iter()
        .filter(move |(t, _, _)| *t == name)
        .map(|(_, p, c)| (*p, *c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwd_and_group(uid: u32, gid: u32) -> (String, String) {
        let file = |p: &str| {
            let (_, c) = files("base").find(|(path, _)| *path == p).unwrap();
            String::from_utf8(fill(c, uid, gid, "h")).unwrap()
        };
        (file("etc/passwd"), file("etc/group"))
    }

    #[test]
    fn the_jails_own_id_gets_the_sandbox_name_unless_the_system_has_one() {
        let (passwd, group) = passwd_and_group(1000, 1000);
        assert!(passwd.contains("sandbox:x:1000:1000:"), "{passwd}");
        assert!(group.contains("sandbox:x:1000:"), "{group}");
        let (passwd, group) = passwd_and_group(65534, 65534);
        assert!(!passwd.contains("sandbox"), "{passwd}");
        assert!(passwd.contains("nobody:x:65534:65534:"), "{passwd}");
        assert!(!group.contains("sandbox"), "{group}");
        assert!(passwd.starts_with("root:x:0:0:") && passwd.ends_with('\n'));
    }
}
