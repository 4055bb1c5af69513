//! Finding profiles and their layers: a name is looked up in the user's and the
//! system's profile directories, then among the built-in ones; `extends` stacks a
//! profile on its base, and `NAME.local.toml` adjusts a named profile wherever it
//! comes from.

use super::profile::{Profile, ProfileError, MAX_PROFILE_BYTES};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The profiles shipped in `profiles/`, built into the binary so an installed `moat`
/// needs no data files.
pub const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin_profiles.rs"));

impl Profile {
    /// Loads a profile by name or path. A value containing `/` or ending in `.toml` is a
    /// path, read as it is. A name is looked up in the user's and the system's profile
    /// directories, then among the built-in profiles.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        Self::load_in(name_or_path, &search_dirs())
    }

    /// As `load`, looking names up in `dirs` (in order) before the built-in profiles.
    pub fn load_in(name_or_path: &str, dirs: &[PathBuf]) -> Result<Profile, ProfileError> {
        if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
            return Self::load_path(Path::new(name_or_path));
        }
        let named = |mut p: Profile| {
            p.name = Some(name_or_path.to_string());
            p
        };
        for dir in dirs {
            let candidate = dir.join(format!("{name_or_path}.toml"));
            if candidate.is_file() {
                return Self::load_path(&candidate).map(named);
            }
        }
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::parse(text, &format!("built-in:{name_or_path}")).map(named);
        }
        Err(ProfileError::NotFound {
            name: name_or_path.to_string(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            builtin: BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn load_path(path: &Path) -> Result<Profile, ProfileError> {
        let read_err = |source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let not = |why: String| ProfileError::NotAProfile {
            path: path.to_path_buf(),
            why,
        };
        // Opened without blocking: a FIFO must not hang the planner; what it is is
        // then checked on the open file, so nothing can be swapped in between.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(not("it is not a regular file".into()));
        }
        if meta.len() > MAX_PROFILE_BYTES {
            return Err(not(format!("it has {} bytes", meta.len())));
        }
        let mut bytes = Vec::new();
        file.take(MAX_PROFILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_PROFILE_BYTES {
            return Err(not("it grew past the limit while being read".into()));
        }
        Self::parse_bytes(&bytes, &path.display().to_string())
    }
}

/// How deep `extends` may go.
const MAX_LAYERS: usize = 8;

impl Profile {
    /// This profile and everything it builds on, base first, with the user's
    /// `NAME.local.toml` override (from the profile directories) last.
    pub fn chain(self) -> Result<Vec<Profile>, ProfileError> {
        self.chain_in(&search_dirs())
    }

    pub fn chain_in(self, dirs: &[PathBuf]) -> Result<Vec<Profile>, ProfileError> {
        let local = match &self.name {
            Some(name) => dirs
                .iter()
                .map(|d| d.join(format!("{name}.local.toml")))
                .find(|p| p.is_file())
                .map(|p| Self::load_path(&p))
                .transpose()?,
            None => None,
        };
        let mut layers = vec![self];
        while let Some(ext) = layers.last().and_then(|p| p.extends.clone()) {
            let top = layers.last().expect("not empty");
            let here = |message: String| top.source.error(ext.span(), "extends", message);
            if layers.len() >= MAX_LAYERS {
                return Err(here(format!(
                    "more than {MAX_LAYERS} profiles deep; is there a loop?"
                )));
            }
            let target = ext.get_ref();
            // A path is relative to the file that names it.
            let base = if target.contains('/') || target.ends_with(".toml") {
                let dir = Path::new(&top.source.origin)
                    .parent()
                    .unwrap_or(Path::new("."));
                Self::load_path(&dir.join(target))
            } else {
                Self::load_in(target, dirs)
            }
            .map_err(|e| here(format!("cannot load `{target}`: {e}")))?;
            if layers.iter().any(|l| l.source.origin == base.source.origin) {
                return Err(here(format!(
                    "`{target}` leads back to {}; to adjust a profile of the same name use NAME.local.toml",
                    base.source.origin
                )));
            }
            layers.push(base);
        }
        layers.reverse();
        if let Some(local) = local {
            if let Some(ext) = &local.extends {
                return Err(local.source.error(
                    ext.span(),
                    "extends",
                    "a .local.toml file applies to the profile of its name and extends nothing",
                ));
            }
            layers.push(local);
        }
        Ok(layers)
    }
}

/// Where named profiles are looked up, in order: `$XDG_CONFIG_HOME/moat/profiles` (or
/// `~/.config/moat/profiles`), then `/etc/moat/profiles`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(xdg) => dirs.push(PathBuf::from(xdg).join("moat/profiles")),
        None => {
            if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                dirs.push(PathBuf::from(home).join(".config/moat/profiles"));
            }
        }
    }
    dirs.push(PathBuf::from("/etc/moat/profiles"));
    dirs
}

/// One line per profile a name can reach, in look-up order: those in the profile
/// directories (which shadow a built-in one of the same name), then the built-in ones.
pub fn listing() -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::new();
    let mut line = |name: &str, origin: &str, text: &str| {
        if !seen.insert(name.to_string()) {
            return;
        }
        let description = match Profile::parse(text, origin) {
            Ok(p) => p.description.unwrap_or_default(),
            Err(e) => format!("(does not load: {e})"),
        };
        out += &format!("{name:<12} {origin:<40} {description}\n");
    };
    for dir in search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for path in files {
            let Some(name) = path
                .file_stem()
                .and_then(|n| n.to_str())
                .filter(|_| path.extension().is_some_and(|e| e == "toml"))
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            line(name, &path.display().to_string(), &text);
        }
    }
    for (name, text) in BUILTIN {
        line(name, "built-in", text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_in_order_then_built_in() {
        let base = std::env::temp_dir().join(format!("moat-profile-test-{}", std::process::id()));
        let (user, system) = (base.join("user"), base.join("system"));
        std::fs::create_dir_all(&user).unwrap();
        std::fs::create_dir_all(&system).unwrap();
        std::fs::write(system.join("default.toml"), "description = \"system\"\n").unwrap();
        std::fs::write(
            system.join("only-system.toml"),
            "description = \"system only\"\n",
        )
        .unwrap();
        std::fs::write(user.join("default.toml"), "description = \"user\"\n").unwrap();
        let dirs = [user.clone(), system.clone()];
        let d = |name: &str| Profile::load_in(name, &dirs).unwrap().description.unwrap();
        assert_eq!(d("default"), "user");
        assert_eq!(d("only-system"), "system only");
        std::fs::remove_file(user.join("default.toml")).unwrap();
        assert_eq!(d("default"), "system");
        std::fs::remove_file(system.join("default.toml")).unwrap();
        let builtin = Profile::load_in("default", &dirs).unwrap();
        assert_eq!(builtin.source.origin, "built-in:default");
        // A path is read as it is, never looked up.
        let path = system.join("only-system.toml");
        assert_eq!(
            Profile::load_in(path.to_str().unwrap(), &[])
                .unwrap()
                .description
                .unwrap(),
            "system only"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn extends_composes_base_first_with_a_local_override_last() {
        let base = std::env::temp_dir().join(format!("moat-extends-test-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(
            base.join("judge.toml"),
            "extends = \"default\"\ndescription = \"judge\"\n",
        )
        .unwrap();
        std::fs::write(base.join("judge.local.toml"), "description = \"local\"\n").unwrap();
        std::fs::write(base.join("a.toml"), "extends = \"b\"\n").unwrap();
        std::fs::write(base.join("b.toml"), "extends = \"a\"\n").unwrap();
        std::fs::write(base.join("c.toml"), "extends = \"./sub/d.toml\"\n").unwrap();
        std::fs::create_dir_all(base.join("sub")).unwrap();
        std::fs::write(base.join("sub/d.toml"), "extends = \"nowhere\"\n").unwrap();
        let dirs = [base.clone()];
        let layers = Profile::load_in("judge", &dirs)
            .unwrap()
            .chain_in(&dirs)
            .unwrap();
        let origins: Vec<&str> = layers.iter().map(|l| l.source.origin.as_str()).collect();
        assert_eq!(origins[0], "built-in:default");
        assert!(
            origins[1].ends_with("judge.toml") && origins[2].ends_with("judge.local.toml"),
            "{origins:?}"
        );
        let err = Profile::load_in("a", &dirs)
            .unwrap()
            .chain_in(&dirs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.toml:1:11: extends: `a` leads back to"),
            "{err}"
        );
        let err = Profile::load_in("c", &dirs)
            .unwrap()
            .chain_in(&dirs)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d.toml:1:11: extends: cannot load `nowhere`"),
            "{err}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn missing_profile_names_the_search() {
        let err = Profile::load("no-such-profile-xyz").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/etc/moat/profiles"), "{msg}");
        assert!(msg.contains("default"), "{msg}");
        let err = Profile::load("/nonexistent/p.toml").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/p.toml"));
    }
}
