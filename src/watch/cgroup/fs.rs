//! The file-system side of cgroups: the few operations where cgroupfs and an ordinary
//! directory tree differ (behind [`Fs`], which tests replace with a fake that plays the
//! kernel), and reads and writes of control files.

use super::types::{hint, CgroupError};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// The host as the cgroup code sees it: the operations where cgroupfs and an ordinary
/// directory tree behave differently (the kernel fills a new cgroup with control files
/// and removes them with it), and the reads the layout is detected from. Tests replace
/// it to run the real logic on a fake tree (`moat check`'s tests on an in-memory one);
/// the control files of a run's own cgroups are read and written directly.
pub(crate) trait Fs: Send + Sync + fmt::Debug {
    fn mkdir(&self, dir: &Path) -> io::Result<()>;
    fn rmdir(&self, dir: &Path) -> io::Result<()>;
    fn check_writable(&self, path: &Path) -> io::Result<()>;
    fn read(&self, path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    /// The uid the writability checks are for (named in the reasons given).
    fn uid(&self) -> u32 {
        uid()
    }
}

/// The words of a file read through `fs` (`+` prefixes of subtree_control dropped).
pub(crate) fn words_via(fs: &dyn Fs, path: &Path) -> Vec<String> {
    fs.read(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.trim_start_matches('+').to_string())
        .collect()
}

#[derive(Debug)]
pub(crate) struct HostFs;

impl Fs for HostFs {
    fn mkdir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir(dir)
    }
    fn rmdir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }
    fn check_writable(&self, path: &Path) -> io::Result<()> {
        use nix::unistd::{access, AccessFlags};
        access(path, AccessFlags::W_OK).map_err(io::Error::from)
    }
}

pub(crate) fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(|w| w.trim_start_matches('+').to_string())
        .collect()
}

#[cfg(test)]
pub(crate) fn has_processes(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
}

/// "Permission denied" rather than "Permission denied (os error 13)", for one-line reports.
pub(crate) fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

pub(crate) fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// One write per call: each write to a control file is one command to the kernel.
pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?
        .write_all(value.as_bytes())
}

pub(crate) fn set(dir: &Path, file: &str, value: impl fmt::Display) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let value = value.to_string();
    write_file(&path, &value).map_err(|source| CgroupError::Write {
        hint: hint(&source),
        path,
        value,
        source,
    })
}

pub(crate) fn key_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        if it.next()? != key {
            return None;
        }
        it.next()?.parse().ok()
    })
}

pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every entry of a cgroup.procs, including the 0s the kernel shows for processes
/// outside our pid namespace (they still populate the cgroup).
pub(crate) fn read_pids(procs: &Path) -> Vec<i32> {
    fs::read_to_string(procs)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}
