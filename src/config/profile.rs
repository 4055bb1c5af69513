//! Profiles: TOML files a person reads and writes. This module only parses and finds
//! them; `policy` validates and resolves what they say.
//!
//! Unknown keys are errors (a typo must not silently weaken a jail), and every error
//! names the file, line and column.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: Option<String>,
    /// The profile this one builds on (a name, or a path relative to this file).
    pub extends: Option<Spanned<String>>,
    #[serde(default)]
    pub process: Process,
    #[serde(default)]
    pub filesystem: Filesystem,
    /// `[limits]`: keys of the limits table (`config::limits`), checked when the
    /// profile is resolved so an unknown key is located like any other mistake.
    #[serde(default)]
    pub limits: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub syscalls: Syscalls,
    /// Where the text came from; set by the loader, not by the file.
    #[serde(skip)]
    pub source: Source,
    /// The name it was found by, if it was looked up by name (its `NAME.local.toml`
    /// override then applies).
    #[serde(skip)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub hostname: Option<Spanned<String>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cwd: Option<Spanned<String>>,
    /// The whole environment of the program (nothing is inherited from the caller).
    pub env: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Allow execve after the program has started (shells, compilers).
    pub allow_exec: Option<bool>,
    /// Arguments put right after the program's name, before the user's; templates
    /// may use the run's limits, e.g. "-Xmx{memory_mib*3/4}m" (see src/template.rs).
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    /// This profile's `args` replace those of the profiles it extends (which are
    /// otherwise kept, this profile's after them): `java`'s JVM flags are not javac's.
    pub replace_args: Option<bool>,
    /// The exit code the runtime gives when it runs out of the memory it was given
    /// (the JVM's `-XX:+ExitOnOutOfMemoryError` exits 3): such an exit is the verdict
    /// `memory_limit`, not `nonzero_exit`.
    pub out_of_memory_exit_code: Option<Spanned<i64>>,
    /// Directories searched for shared libraries before ld.so.cache; also given to the
    /// program as LD_LIBRARY_PATH unless `env` sets that itself.
    #[serde(default)]
    pub library_path: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// Mount a fresh /proc for the jail's PID namespace.
    pub proc: Option<bool>,
    /// Mount a minimal /dev (null, zero, full, random, urandom).
    pub dev: Option<bool>,
    /// A rootfs template (rootfs-templates/NAME): small files such as /etc/passwd.
    pub template: Option<Spanned<String>>,
    #[serde(default)]
    pub bind: Vec<Bind>,
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    pub src: Spanned<String>,
    pub dst: Option<Spanned<String>>,
    #[serde(default)]
    pub rw: bool,
    /// Skip the mount silently when the source does not exist on this host.
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tmpfs {
    pub path: Spanned<String>,
    pub size: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Syscalls {
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    /// syscall name -> errno name: the call fails with that errno and the program goes on.
    #[serde(default)]
    pub errno: BTreeMap<Spanned<String>, Spanned<String>>,
    /// Syscalls whose rules from the extended profile are dropped (before this
    /// profile's own rules apply).
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
    /// Rules with argument conditions, e.g. `write` only to fds 1 and 2.
    #[serde(default)]
    pub rule: Vec<RuleEntry>,
}

/// `[[syscalls.rule]] name = "write", when = ["arg0 >= 1", ...]`: allows the call (or
/// fails it with `errno`) when every condition holds; several rules for one syscall
/// are alternatives. It replaces what a group says about that syscall.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    pub name: Spanned<String>,
    #[serde(default)]
    pub when: Vec<Spanned<String>>,
    pub errno: Option<Spanned<String>>,
}

/// A named group of syscalls (`profiles/groups.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// What the group is for; the file documents each group with it, and it is
    /// checked to be there, though nothing prints it.
    #[allow(dead_code)]
    pub description: String,
    pub syscalls: Vec<String>,
}

/// The text of a profile and where it came from, kept to locate errors.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub origin: String,
    pub text: String,
}

impl Source {
    /// Line and column (1-based) of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, col)
    }

    pub fn error(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ProfileError {
        let (line, column) = self.locate(span.start);
        ProfileError::Invalid {
            origin: self.origin.clone(),
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}:{line}:{column}: {key}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("no profile named `{name}`: looked in {searched}; built-in profiles: {builtin}")]
    NotFound {
        name: String,
        searched: String,
        builtin: String,
    },
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a profile: {why}; a profile is a regular TOML file of at most {MAX_PROFILE_BYTES} bytes")]
    NotAProfile { path: PathBuf, why: String },
}

/// The largest profile file read: real ones are a few KiB, and a path to a device or a
/// huge file must not make moat read without end.
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

impl Profile {
    /// Parses profile text; `origin` names it in errors (a path, or `built-in:NAME`).
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let source = Source {
            origin: origin.to_string(),
            text: text.to_string(),
        };
        let mut profile: Profile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| source.locate(s.start));
            // toml's messages may span lines ("invalid array\nexpected `]`") or be
            // empty (a value cut short at the end of the file).
            let lines: Vec<&str> = e.message().lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let message = if lines.is_empty() {
                "a value is missing or cut short here (an `=` with nothing after it, or the file ends inside a value)".to_string()
            } else {
                lines.join("; ")
            };
            ProfileError::Syntax {
                origin: origin.to_string(),
                line,
                column,
                message,
            }
        })?;
        profile.source = source;
        Ok(profile)
    }

    /// Parses a profile file's bytes: as [`Profile::parse`], with text that is not
    /// UTF-8 located at its first bad byte.
    pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Profile, ProfileError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse(text, origin),
            Err(e) => {
                let good = &bytes[..e.valid_up_to()];
                let source = Source {
                    origin: origin.to_string(),
                    text: String::from_utf8_lossy(good).into_owned(),
                };
                let (line, column) = source.locate(good.len());
                Err(ProfileError::Syntax {
                    origin: origin.to_string(),
                    line,
                    column,
                    message: format!(
                        "not UTF-8 text (byte {:#04x}); a profile is a TOML file in UTF-8",
                        bytes[e.valid_up_to()]
                    ),
                })
            }
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_and_groups_parse() {
        for (name, text) in super::super::layers::BUILTIN {
            Profile::parse(text, name).unwrap();
        }
    }

    #[test]
    fn unknown_key_is_located() {
        let text = "[process]\nhostname = \"x\"\nhostnmae = \"y\"\n";
        let err = Profile::parse(text, "p.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("p.toml:3:1:"), "{msg}");
        assert!(msg.contains("hostnmae"), "{msg}");
    }

    #[test]
    fn syntax_error_is_located() {
        let err = Profile::parse("[limits]\nwall_time = 5s\n", "q.toml").unwrap_err();
        assert!(err.to_string().starts_with("q.toml:2:"), "{err}");
    }

    #[test]
    fn locate_columns() {
        let s = Source {
            origin: "x".into(),
            text: "ab\ncde\n".into(),
        };
        assert_eq!(s.locate(0), (1, 1));
        assert_eq!(s.locate(4), (2, 2));
    }
}
