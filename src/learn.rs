//! Learning mode: what a program needed beyond its base profile, and the profile that
//! grants it. `moat learn` runs the program with every call outside the base noted and
//! allowed (the always-denied core still ends the run), notes every file it opens, and
//! writes a TOML profile extending the base that lists exactly that.

use crate::config::policy::normalize;
use crate::plan::rootfs::Step;
use crate::plan::Plan;
use crate::seccomp::{self, FILE_CALLS, TRACE_DENIED, TRACE_FILE};
use crate::watch::hook::{Hook, TracedCall};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What the program did that its base profile does not allow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learned {
    /// Syscalls made outside the base profile.
    pub syscalls: BTreeSet<String>,
    /// Absolute paths the program opened or executed (as it named them).
    pub files: BTreeSet<PathBuf>,
    /// It executed another program after starting.
    pub exec: bool,
}

/// The monitor's hook in a learning run: notes every call outside the base profile
/// and lets it go on, notes the files the program opens. Foreign architectures and
/// the always-denied core stay violations: a learned profile could not allow them.
#[derive(Debug, Default)]
pub struct Learner {
    /// What has been seen so far.
    pub learned: Learned,
    /// The program's working directory inside, for relative paths it opens.
    cwd: PathBuf,
}

impl Learner {
    /// A learner for a run of `plan`.
    pub fn new(plan: &Plan) -> Learner {
        Learner {
            learned: Learned::default(),
            cwd: plan.policy.cwd.clone(),
        }
    }
}

impl Hook for Learner {
    fn traced(&mut self, call: &TracedCall) -> bool {
        let name = seccomp::syscall_name(call.arch, call.nr);
        if seccomp::arch_name(call.arch, call.nr) != "x86_64" || seccomp::core::is_denied(&name) {
            return false;
        }
        let path_arg = FILE_CALLS.iter().find(|(n, _)| *n == name).map(|(_, i)| *i);
        if let Some(i) = path_arg {
            // openat-style calls with a directory fd other than AT_FDCWD name a path
            // we cannot place; note only absolute and cwd-relative ones.
            let dirfd_ok = i == 0 || call.args[0] as i32 == libc::AT_FDCWD;
            if let Some(path) = call.read_path(call.args[i]).filter(|_| dirfd_ok) {
                self.learned.files.insert(normalize(&self.cwd.join(path)));
            }
        }
        match call.data {
            TRACE_FILE => true,
            TRACE_DENIED => {
                if name == "execve" || name == "execveat" {
                    self.learned.exec = true;
                } else {
                    self.learned.syscalls.insert(name);
                }
                true
            }
            _ => false,
        }
    }
}

/// Whether `path` (inside the jail) is already provided by the plan's tree.
fn in_jail(plan: &Plan, path: &Path) -> bool {
    plan.tree.steps.iter().any(|s| match s {
        Step::Bind { dst, .. } => path.starts_with(dst),
        Step::Tmpfs { dst, .. } | Step::Proc { dst } | Step::Seal { dst } => path.starts_with(dst),
        Step::Symlink { path: p, .. }
        | Step::File { path: p, .. }
        | Step::InnerBind { dst: p, .. } => p == path,
        Step::Mkdir { .. } => false,
    })
}

/// The host files a learned profile should bind: files the program opened that exist
/// on the host (regular files only) and that the jail did not have, neither at the
/// path named nor at its real path (libraries are bound at their real paths). Files a
/// rootfs template provides are left to the template: the host's /etc/passwd would
/// name the host's users.
pub fn missing_files(plan: &Plan, learned: &Learned) -> Vec<PathBuf> {
    learned
        .files
        .iter()
        .filter(|p| p.is_absolute() && !p.starts_with("/proc") && !p.starts_with("/dev"))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .filter(|p| !in_jail(plan, p))
        .filter(|p| std::fs::canonicalize(p).map_or(true, |real| !in_jail(plan, &real)))
        .filter(|p| !from_template(p))
        .cloned()
        .collect()
}

/// Whether the `base` rootfs template provides this path.
fn from_template(path: &Path) -> bool {
    crate::config::templates::files("base").any(|(p, _)| Path::new("/").join(p) == path)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The profile text: extends `base`, allows what was learned, binds what was missing.
pub fn profile_text(
    base: &str,
    plan: &Plan,
    learned: &Learned,
    summary: &str,
    command: &[String],
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "# Written by `moat learn` for: {}", command.join(" "));
    let _ = writeln!(
        t,
        "# The learning run ended with: {}",
        summary.trim_start_matches("moat: ")
    );
    let _ = writeln!(
        t,
        "# Review it before use: it grants what this one run did, nothing more."
    );
    let _ = writeln!(
        t,
        "description = {}",
        quoted(&format!(
            "learned from {}",
            command.first().map_or("", String::as_str)
        ))
    );
    let _ = writeln!(t, "extends = {}", quoted(base));
    if learned.exec {
        let _ = writeln!(
            t,
            "\n[process]\n# The program started other programs.\nallow_exec = true"
        );
    }
    if plan.policy.template.is_none() && learned.files.iter().any(|f| from_template(f)) {
        let _ = writeln!(
            t,
            "\n[filesystem]\n# The program read /etc files such as passwd: the template provides\n# them for the jail's own user.\ntemplate = \"base\""
        );
    }
    let _ = writeln!(t, "\n[syscalls]");
    let names: Vec<String> = learned.syscalls.iter().map(|s| quoted(s)).collect();
    let _ = writeln!(t, "# Calls the program made beyond {base}.");
    let _ = writeln!(t, "allow = [{}]", names.join(", "));
    let binds = missing_files(plan, learned);
    if !binds.is_empty() {
        let _ = writeln!(
            t,
            "\n# Files the program opened that the jail did not have."
        );
    }
    for file in binds {
        let _ = writeln!(
            t,
            "[[filesystem.bind]]\nsrc = {}\noptional = true",
            quoted(&file.display().to_string())
        );
    }
    if !learned.files.is_empty() {
        let _ = writeln!(t, "\n# Every file the program opened:");
        for f in &learned.files {
            let _ = writeln!(t, "#   {}", f.display());
        }
    }
    t
}
