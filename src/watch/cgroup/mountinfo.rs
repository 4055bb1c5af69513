//! Where the cgroup hierarchies are mounted and where this process sits in them:
//! /proc/self/mountinfo and /proc/self/cgroup, parsed once for both `moat run` and
//! `moat check`.

use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo that matters here.
pub(crate) struct Mount {
    /// The directory of the file system mounted (for cgroupfs: a cgroup path).
    pub(crate) root: String,
    pub(crate) point: PathBuf,
    pub(crate) fstype: String,
    pub(crate) super_options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut rest = after.split(' ');
            let fstype = rest.next()?.to_string();
            let _source = rest.next();
            Some(Mount {
                root: unescape(fields.get(3)?),
                point: PathBuf::from(unescape(fields.get(4)?)),
                fstype,
                super_options: rest
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// /proc/self/cgroup: (controllers, path) per hierarchy; v2 has no controllers listed.
pub(crate) fn parse_self_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            // The path may itself contain ':'.
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let list = if id == "0" && controllers.is_empty() {
                Vec::new()
            } else {
                controllers.split(',').map(str::to_string).collect()
            };
            Some((list, path.to_string()))
        })
        .collect()
}

/// A path as seen under `fs_root`.
pub(crate) fn under(fs_root: &Path, abs: &Path) -> PathBuf {
    fs_root.join(abs.strip_prefix("/").unwrap_or(abs))
}

/// The directory of cgroup `cg_path` through `mount`, if that mount shows it. Paths
/// with `..` belong to cgroups outside our cgroup namespace: not reachable.
pub(crate) fn cgroup_dir(fs_root: &Path, mount: &Mount, cg_path: &str) -> Option<PathBuf> {
    if cg_path.split('/').any(|c| c == "..") {
        return None;
    }
    let rest = if mount.root == "/" {
        cg_path
    } else {
        let rest = cg_path.strip_prefix(mount.root.trim_end_matches('/'))?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let mount_dir = under(fs_root, &mount.point);
    let rest = rest.trim_matches('/');
    Some(if rest.is_empty() {
        mount_dir
    } else {
        mount_dir.join(rest)
    })
}

pub(crate) fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}
