//! The plan cache: a plan built once for a program, a profile and the caller's
//! overrides is kept under `$XDG_CACHE_HOME/moat/plans` (or `~/.cache/moat/plans`), so
//! that the next `moat run` of the same command skips the profile's parse, the ELF
//! walk, the ld.so.cache lookups and the root's layout.
//!
//! How an entry is keyed, so that nothing stale is ever used:
//!
//! - **the file name** is a hash of the key, and **the key** (kept whole in the entry
//!   and compared on every load) holds: moat's version and the identity of the running
//!   executable (device, inode, size, mtime and ctime of `/proc/self/exe`: a rebuilt or
//!   upgraded moat is another file), the caller's effective ids, the working directory,
//!   `HOME` and `XDG_CONFIG_HOME` (where profiles are looked up), the profile as named,
//!   every override, and the command;
//! - **the inputs**: every host path planning looked at, with its identity (device,
//!   inode, type and mode, size, mtime and ctime, both of the path and of what it
//!   points to; or that it was absent): the profile files and the profile directories
//!   (a profile added to one changes the directory), the program, its `#!`
//!   interpreters, loader and libraries, every directory the library search looked in,
//!   `/etc/ld.so.cache`, the directories of `PATH` when the program was named without
//!   a `/`, and the source of every bind. One changed input and the entry is rebuilt.
//!
//! What an entry holds is the plan's [`Parts`]; its filter is compiled again from the
//! rules and its id maps read from the running caller on every load (see
//! [`Plan::finish`]), so a cache file, whoever wrote it, can neither lift moat's core
//! nor change the outside identity of the jail. Entries are read only from a directory
//! and a file owned by the caller and writable by no one else, and a cache that
//! cannot be read or written is no error: the plan is built as if there were none.

use super::{Parts, Plan, Tree};
use crate::config::layers::search_dirs;
use crate::config::policy::Overrides;
use crate::plan::rootfs::Step;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Entries kept before the oldest are removed.
const MAX_ENTRIES: usize = 512;
/// The largest entry read back (a plan is a few tens of KiB).
const MAX_ENTRY_BYTES: u64 = 4 << 20;
/// Bumped whenever what an entry holds changes shape.
const FORMAT: u32 = 1;
/// An input changed less than this before the entry would be written is not trusted
/// to tell its next change: file times come from a coarse clock (one tick is up to
/// 10 ms), so a file rewritten within the same tick, at the same size, would look
/// unchanged. Such a plan is not kept (the next run builds again), which also covers a
/// file changed while the plan was being built.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Where plans are kept between runs.
#[derive(Debug, Clone)]
pub struct PlanCache {
    dir: PathBuf,
}

/// What one run's plan is keyed by: everything that is not a file on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    text: String,
}

/// The identity of a host path, as the cache compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Identity {
    Absent,
    Present {
        dev: u64,
        ino: u64,
        mode: u32,
        size: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
    },
}

impl Identity {
    fn of_meta(m: &std::fs::Metadata) -> Identity {
        Identity::Present {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Whether the path changed within [`SETTLE`] of `now` (or, by its times, after it).
    fn too_recent(&self, now: std::time::SystemTime) -> bool {
        let Identity::Present { mtime, ctime, .. } = *self else {
            return false;
        };
        let Ok(since_epoch) = now.duration_since(std::time::UNIX_EPOCH) else {
            return true;
        };
        let settled = since_epoch.saturating_sub(SETTLE);
        [mtime, ctime].iter().any(|&(s, ns)| {
            let at = std::time::Duration::new(s.max(0) as u64, ns.clamp(0, 999_999_999) as u32);
            at >= settled
        })
    }

    /// The path itself and what it leads to: a symlink pointed elsewhere changes the
    /// first, a file replaced behind a link the second.
    fn of(path: &Path) -> (Identity, Identity) {
        let own =
            std::fs::symlink_metadata(path).map_or(Identity::Absent, |m| Identity::of_meta(&m));
        let target = std::fs::metadata(path).map_or(Identity::Absent, |m| Identity::of_meta(&m));
        (own, target)
    }
}

/// One cache file.
#[derive(Serialize, Deserialize)]
struct Entry {
    format: u32,
    key: String,
    inputs: Vec<(PathBuf, (Identity, Identity))>,
    parts: Parts,
}

impl Key {
    /// The key of the plan for `command` under `profile` with `overrides`, from this
    /// process's point of view. None when such a plan is not cached: learning runs
    /// (each is meant to look afresh) and runs with a work dir (a request's files are
    /// its own).
    pub fn new(profile: &str, overrides: &Overrides, command: &[OsString]) -> Option<Key> {
        if overrides.learn || overrides.workdir.is_some() {
            return None;
        }
        let exe = Identity::of(Path::new("/proc/self/exe")).1;
        if exe == Identity::Absent {
            return None;
        }
        let env = |name: &str| std::env::var_os(name).map(|v| v.as_bytes().to_vec());
        // SAFETY: geteuid and getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let command: Vec<&[u8]> = command.iter().map(|a| a.as_bytes()).collect();
        let text = format!(
            "moat {} format {FORMAT}\nexe {exe:?}\nids {uid} {gid}\ncwd {:?}\nHOME {:?}\nXDG_CONFIG_HOME {:?}\nprofile {profile:?}\noverrides {overrides:?}\ncommand {command:?}",
            env!("CARGO_PKG_VERSION"),
            std::env::current_dir().ok(),
            env("HOME"),
            env("XDG_CONFIG_HOME"),
        );
        Some(Key { text })
    }

    /// The entry's file name: a hash of the key (the key itself is compared on load).
    fn file_name(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.text.hash(&mut h);
        format!("{:016x}.json", h.finish())
    }
}

impl PlanCache {
    /// A cache in `dir` (created, mode 0700, when the first plan is kept).
    pub fn new(dir: impl Into<PathBuf>) -> PlanCache {
        PlanCache { dir: dir.into() }
    }

    /// The user's cache: `$XDG_CACHE_HOME/moat/plans`, else `$HOME/.cache/moat/plans`;
    /// None when neither is set.
    pub fn from_env() -> Option<PlanCache> {
        let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => {
                PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".cache")
            }
        };
        Some(PlanCache::new(base.join("moat/plans")))
    }

    /// Where the entries are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plan kept for `key`, if there is one and every input it was built from is
    /// as it was.
    pub fn get(&self, key: &Key) -> Option<Plan> {
        if !owned_and_private(&std::fs::symlink_metadata(&self.dir).ok()?) {
            return None;
        }
        let path = self.dir.join(key.file_name());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || !owned_and_private(&meta) || meta.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let mut text = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_ENTRY_BYTES).read_to_end(&mut text).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        if entry.format != FORMAT || entry.key != key.text {
            return None;
        }
        if entry.inputs.iter().any(|(p, id)| Identity::of(p) != *id) {
            return None;
        }
        Plan::finish(entry.parts, true).ok()
    }

    /// Keeps `plan` for `key`. Failing to is no error: the next run builds again.
    pub fn put(&self, key: &Key, plan: &Plan) {
        let parts = plan.parts();
        let inputs: Vec<(PathBuf, (Identity, Identity))> = inputs(&parts)
            .into_iter()
            .map(|p| {
                let id = Identity::of(&p);
                (p, id)
            })
            .collect();
        let now = std::time::SystemTime::now();
        if inputs
            .iter()
            .any(|(_, (own, target))| own.too_recent(now) || target.too_recent(now))
        {
            return;
        }
        let entry = Entry {
            format: FORMAT,
            key: key.text.clone(),
            inputs,
            parts,
        };
        // A path that is not UTF-8 cannot be kept in JSON: such a plan is not cached.
        let Ok(text) = serde_json::to_vec(&entry) else {
            return;
        };
        if std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .is_err()
        {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&self.dir) else {
            return;
        };
        if !owned_and_private(&meta) {
            return;
        }
        let name = key.file_name();
        let tmp = self.dir.join(format!(".{name}.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&text));
        // Renamed into place whole, so a reader never sees half an entry.
        if written.is_err() || std::fs::rename(&tmp, self.dir.join(&name)).is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        self.evict();
    }

    /// Removes the oldest entries beyond [`MAX_ENTRIES`].
    fn evict(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| e.file_name().as_bytes().ends_with(b".json"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, path) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Owned by the caller and writable by no one else.
fn owned_and_private(m: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    m.uid() == uid && m.permissions().mode() & 0o022 == 0 && !m.file_type().is_symlink()
}

/// Every host path planning looked at (see the module's documentation).
fn inputs(parts: &Parts) -> Vec<PathBuf> {
    let p = &parts.policy;
    let mut out: Vec<PathBuf> = search_dirs();
    out.extend(p.profile_files.iter().cloned());
    out.extend(parts.dependencies.files.iter().cloned());
    out.extend(parts.dependencies.searched.iter().cloned());
    out.push(PathBuf::from(crate::plan::ldso::cache::DEFAULT_PATH));
    if let Some(argv0) = parts.argv.first() {
        if !argv0.as_bytes().contains(&b'/') {
            let path = p
                .env_value("PATH")
                .unwrap_or("/usr/local/bin:/usr/bin:/bin");
            out.extend(
                path.split(':')
                    .filter(|d| d.starts_with('/'))
                    .map(PathBuf::from),
            );
        }
    }
    out.extend(p.binds.iter().map(|b| b.src.clone()));
    out.extend(bind_sources(&parts.tree));
    out.sort();
    out.dedup();
    out
}

fn bind_sources(tree: &Tree) -> impl Iterator<Item = PathBuf> + '_ {
    tree.steps.iter().filter_map(|s| match s {
        Step::Bind { src, .. } => Some(src.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_just_written_is_too_recent_and_an_old_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new");
        std::fs::write(&new, b"x").unwrap();
        let now = std::time::SystemTime::now();
        let (own, target) = Identity::of(&new);
        assert!(own.too_recent(now) && target.too_recent(now));
        // The same file judged a few seconds later has settled.
        let later = now + std::time::Duration::from_secs(3);
        assert!(!own.too_recent(later));
        assert!(!Identity::Absent.too_recent(now));
    }

    #[test]
    fn identity_tells_a_path_from_what_it_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, link) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("l"),
        );
        std::fs::write(&a, b"1").unwrap();
        std::fs::write(&b, b"2").unwrap();
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let before = Identity::of(&link);
        assert_ne!(
            before.0, before.1,
            "the link and its target are two identities"
        );
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&b, &link).unwrap();
        let after = Identity::of(&link);
        assert_ne!(
            before.1, after.1,
            "pointed elsewhere, the target's identity changes"
        );
        assert_eq!(
            Identity::of(&dir.path().join("none")),
            (Identity::Absent, Identity::Absent)
        );
    }

    #[test]
    fn a_key_changes_with_every_part_of_the_command() {
        let o = Overrides::default();
        let k = |profile: &str, cmd: &[&str]| {
            let cmd: Vec<OsString> = cmd.iter().map(OsString::from).collect();
            Key::new(profile, &o, &cmd).unwrap()
        };
        let base = k("default", &["/bin/true"]);
        assert_eq!(base, k("default", &["/bin/true"]));
        assert_ne!(base.file_name(), k("c", &["/bin/true"]).file_name());
        assert_ne!(
            base.file_name(),
            k("default", &["/bin/true", "x"]).file_name()
        );
        let learning = Overrides {
            learn: true,
            ..Overrides::default()
        };
        assert!(Key::new("default", &learning, &[OsString::from("/bin/true")]).is_none());
        let limited = Overrides {
            limits: {
                let mut l = crate::config::limits::Limits::default();
                l.set(crate::config::limits::Limit::Memory, Some(1 << 20));
                l
            },
            ..Overrides::default()
        };
        let with_limit = Key::new("default", &limited, &[OsString::from("/bin/true")]).unwrap();
        assert_ne!(base.file_name(), with_limit.file_name());
    }
}
