//! The loader's search: every DT_NEEDED, breadth-first, through DT_RPATH,
//! LD_LIBRARY_PATH, DT_RUNPATH, ld.so.cache and the built-in directories, in ld.so's
//! order, with `$ORIGIN`-style substitutions.

use super::cache::LdCache;
use super::elf::*;
use super::error::{io_error, malformed, ElfError};
use super::hwcaps::{hwcaps_subdirs, platform};
use super::paths::{absolutize, parent_dir, path_from_bytes, push_unique};
use goblin::elf::header::ET_DYN;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// More objects than this means a runaway or hostile dependency graph.
pub const MAX_LIBRARIES: usize = 256;

/// Debian's x86-64 ld.so built-in search path (`ld.so --help`, "system search
/// path"); not the /lib64 of other distributions.
pub(super) const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];
/// What Debian's ld.so substitutes for `$LIB` (its `DL_DST_LIB`).
pub(super) const DST_LIB: &[u8] = b"lib/x86_64-linux-gnu";
/// Where ld.so's cache lives; listed in "searched" so the error shows the step.
pub(super) const CACHE_PATH: &str = "/etc/ld.so.cache";

/// A loaded object in ld.so's link map.
#[derive(Debug)]
pub(super) struct Object {
    /// `l_name`: the name it was found under, byte for byte.
    pub(super) l_name: Vec<u8>,
    /// `l_libname`: every name it was requested by.
    pub(super) names: Vec<Vec<u8>>,
    pub(super) soname: Option<Vec<u8>>,
    pub(super) path: PathBuf,
    pub(super) origin: PathBuf,
    pub(super) deps: Vec<(DepKind, Vec<u8>)>,
    pub(super) rpath: Option<Vec<u8>>,
    pub(super) runpath: Option<Vec<u8>>,
    pub(super) nodeflib: bool,
    /// `l_loader`: the object whose dependency this was, for the DT_RPATH chain.
    pub(super) loader: Option<usize>,
    /// (st_dev, st_ino): ld.so maps a file once even if found under two names.
    pub(super) file_id: Option<(u64, u64)>,
}

impl Object {
    pub(super) fn new(
        info: &ElfInfo,
        l_name: Vec<u8>,
        name: Vec<u8>,
        path: PathBuf,
        origin: PathBuf,
        loader: Option<usize>,
        file_id: Option<(u64, u64)>,
    ) -> Object {
        Object {
            l_name,
            names: if name.is_empty() { vec![] } else { vec![name] },
            soname: info.soname.clone(),
            path,
            origin,
            deps: info.deps.clone(),
            rpath: info.rpath.clone(),
            runpath: info.runpath.clone(),
            nodeflib: info.nodeflib,
            loader,
            file_id,
        }
    }

    /// `_dl_name_match_p` plus the DT_SONAME check of `_dl_map_object`.
    pub(super) fn matches(&self, name: &[u8]) -> bool {
        self.l_name == name
            || self.names.iter().any(|n| n == name)
            || self.soname.as_deref() == Some(name)
    }
}

/// A library file that passed ld.so's checks.
pub(super) struct Candidate {
    pub(super) path: PathBuf,
    pub(super) l_name: Vec<u8>,
    pub(super) info: ElfInfo,
    pub(super) file_id: (u64, u64),
}

pub(super) enum Probe {
    /// ENOENT/EACCES/ENOTDIR: try the next place.
    Absent,
    /// Any other open error: ld.so abandons this search list (not the search).
    Stop,
    OtherArch,
    Found(Box<Candidate>),
}

pub(super) struct Resolver<'a> {
    pub(super) cwd: PathBuf,
    pub(super) cache: &'a LdCache,
    pub(super) library_path: Vec<PathBuf>,
    pub(super) objects: Vec<Object>,
    pub(super) files: Vec<PathBuf>,
    /// Whether a directory exists, as ld.so remembers per search-path element.
    pub(super) dir_status: HashMap<PathBuf, bool>,
}

/// What accumulates while one name is searched, for the error message.
#[derive(Default)]
pub(super) struct Trail {
    pub(super) searched: Vec<PathBuf>,
    pub(super) wrong_class: Vec<PathBuf>,
}

impl Trail {
    pub(super) fn searched(&mut self, dir: &Path) {
        if !self.searched.iter().any(|d| d == dir) {
            self.searched.push(dir.to_path_buf());
        }
    }
}

impl Resolver<'_> {
    /// Breadth-first over the link map, as `_dl_map_object_deps` does.
    pub(super) fn load_all(&mut self) -> Result<(), ElfError> {
        let mut queue = VecDeque::from([0usize]);
        while let Some(idx) = queue.pop_front() {
            let deps = self.objects[idx].deps.clone();
            for (kind, raw) in deps {
                match self.load_dep(idx, &raw) {
                    Ok(Some(new)) => queue.push_back(new),
                    Ok(None) => {}
                    Err(_) if kind == DepKind::Auxiliary => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Maps one dependency of `loader`; returns the index of a newly loaded object.
    pub(super) fn load_dep(
        &mut self,
        loader: usize,
        raw: &[u8],
    ) -> Result<Option<usize>, ElfError> {
        let needed_by = self.objects[loader].path.clone();
        let missing = |trail: Trail| ElfError::MissingLibrary {
            library: String::from_utf8_lossy(raw).into_owned(),
            needed_by: needed_by.clone(),
            searched: trail.searched,
            wrong_class: trail.wrong_class,
        };
        let origin = self.objects[loader].origin.clone();
        let name = if raw.contains(&b'$') {
            expand_dst(raw, &origin, platform()).ok_or_else(|| {
                malformed(
                    &needed_by,
                    format!(
                        "dependency {} uses $PLATFORM, which ld.so cannot expand on this CPU",
                        String::from_utf8_lossy(raw)
                    ),
                )
            })?
        } else {
            raw.to_vec()
        };
        if name.is_empty() {
            return Err(malformed(&needed_by, "a dependency has an empty name"));
        }
        if let Some(existing) = self.objects.iter_mut().find(|o| o.matches(&name)) {
            if !existing.names.contains(&name) {
                existing.names.push(name);
            }
            return Ok(None);
        }

        let mut trail = Trail::default();
        let found = if name.contains(&b'/') {
            let path = absolutize(&self.cwd, &path_from_bytes(&name));
            trail.searched(&path);
            match self.probe(&path, name.clone())? {
                Probe::Found(c) => Some(*c),
                Probe::OtherArch => {
                    trail.wrong_class.push(path);
                    None
                }
                Probe::Absent | Probe::Stop => None,
            }
        } else {
            self.search(loader, &name, &mut trail)?
        };
        let Some(cand) = found else {
            return Err(missing(trail));
        };

        // Same file under another name: ld.so opens it (so the path must exist in
        // the jail) but reuses the mapping and does not walk its dependencies again.
        // The executable and the interpreter have no file id in ld.so's map.
        if let Some(existing) = self
            .objects
            .iter_mut()
            .find(|o| o.file_id == Some(cand.file_id))
        {
            if !existing.names.contains(&name) {
                existing.names.push(name);
            }
            push_unique(&mut self.files, cand.path);
            return Ok(None);
        }
        if self.objects.len() >= MAX_LIBRARIES + 2 {
            return Err(ElfError::TooDeep {
                path: self.objects[0].path.clone(),
                reason: format!("it needs more than {MAX_LIBRARIES} libraries"),
            });
        }
        if cand.info.dynamic_size.unwrap_or(0) == 0 {
            return Err(malformed(&cand.path, "object file has no dynamic section"));
        }
        if !cand.info.has_load {
            return Err(malformed(
                &cand.path,
                "object file has no loadable segments",
            ));
        }
        push_unique(&mut self.files, cand.path.clone());
        let origin = parent_dir(&cand.path);
        self.objects.push(Object::new(
            &cand.info,
            cand.l_name,
            name,
            cand.path,
            origin,
            Some(loader),
            Some(cand.file_id),
        ));
        Ok(Some(self.objects.len() - 1))
    }

    /// The `strchr (name, '/') == NULL` branch of `_dl_map_object`.
    pub(super) fn search(
        &mut self,
        loader: usize,
        name: &[u8],
        trail: &mut Trail,
    ) -> Result<Option<Candidate>, ElfError> {
        if self.objects[loader].runpath.is_none() {
            let mut next = Some(loader);
            while let Some(idx) = next {
                if let Some(rpath) = &self.objects[idx].rpath {
                    // The DT_RPATH's own object supplies $ORIGIN, not the requester.
                    let dirs = self.split_path(rpath, &self.objects[idx].origin);
                    if let Some(c) = self.search_list(name, &dirs, trail)? {
                        return Ok(Some(c));
                    }
                }
                next = self.objects[idx].loader;
            }
        }
        let llp = self.library_path.clone();
        if let Some(c) = self.search_list(name, &llp, trail)? {
            return Ok(Some(c));
        }
        if let Some(runpath) = &self.objects[loader].runpath {
            let dirs = self.split_path(runpath, &self.objects[loader].origin);
            if let Some(c) = self.search_list(name, &dirs, trail)? {
                return Ok(Some(c));
            }
        }
        let nodeflib = self.objects[loader].nodeflib;
        trail.searched(Path::new(CACHE_PATH));
        if let Some(cached) = self.cache.lookup_os(OsStr::from_bytes(name), true) {
            // A DF_1_NODEFLIB object may not get libraries from the default
            // directories, even through the cache (prefix test as in glibc).
            let in_system_dir = SYSTEM_DIRS.iter().any(|d| {
                let mut prefix = d.as_bytes().to_vec();
                prefix.push(b'/');
                cached.as_os_str().as_bytes().starts_with(&prefix)
            });
            if !(nodeflib && in_system_dir) {
                let cached = cached.to_path_buf();
                match self.probe(&cached, cached.as_os_str().as_bytes().to_vec())? {
                    Probe::Found(c) => return Ok(Some(*c)),
                    Probe::OtherArch => trail.wrong_class.push(cached),
                    Probe::Absent | Probe::Stop => {}
                }
            }
        }
        if !nodeflib {
            let dirs: Vec<PathBuf> = SYSTEM_DIRS.iter().map(PathBuf::from).collect();
            if let Some(c) = self.search_list(name, &dirs, trail)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// DT_RPATH / DT_RUNPATH as ld.so's `fillin_rpath` splits it.
    pub(super) fn split_path(&self, list: &[u8], origin: &Path) -> Vec<PathBuf> {
        list.split(|&b| b == b':')
            .filter_map(|element| self.search_dir(element, origin))
            .collect()
    }

    /// One search-path element: DST-expanded, absolute. Empty elements would mean
    /// the current directory to ld.so, which is not a place the jail provides.
    pub(super) fn search_dir(&self, element: &[u8], origin: &Path) -> Option<PathBuf> {
        if element.is_empty() {
            return None;
        }
        let expanded = expand_dst(element, origin, platform())?;
        if expanded.is_empty() {
            return None;
        }
        Some(absolutize(&self.cwd, &path_from_bytes(&expanded)))
    }

    /// `open_path`: every directory, each with its hwcaps subdirectories first.
    pub(super) fn search_list(
        &mut self,
        name: &[u8],
        dirs: &[PathBuf],
        trail: &mut Trail,
    ) -> Result<Option<Candidate>, ElfError> {
        let file_name = OsStr::from_bytes(name);
        for dir in dirs {
            trail.searched(dir);
            let subdirs = hwcaps_subdirs()
                .iter()
                .map(|s| dir.join(s))
                .chain(std::iter::once(dir.clone()));
            for sub in subdirs {
                if !self.is_dir(&sub) {
                    continue;
                }
                let path = sub.join(file_name);
                let l_name = path.as_os_str().as_bytes().to_vec();
                match self.probe(&path, l_name)? {
                    Probe::Found(c) => return Ok(Some(*c)),
                    Probe::OtherArch => trail.wrong_class.push(path),
                    Probe::Absent => {}
                    Probe::Stop => return Ok(None),
                }
            }
        }
        Ok(None)
    }

    pub(super) fn is_dir(&mut self, dir: &Path) -> bool {
        if let Some(&known) = self.dir_status.get(dir) {
            return known;
        }
        let exists = std::fs::metadata(dir).is_ok_and(|m| m.is_dir());
        self.dir_status.insert(dir.to_path_buf(), exists);
        exists
    }

    /// `open_verify` plus the parts of `_dl_map_object_from_fd` that decide
    /// whether a file can be a library.
    pub(super) fn probe(&self, path: &Path, l_name: Vec<u8>) -> Result<Probe, ElfError> {
        let file = match open_nonblocking(path) {
            Ok(f) => f,
            Err(e) => {
                let skip = matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
                ) || e.raw_os_error() == Some(libc::ENOTDIR);
                return Ok(if skip { Probe::Absent } else { Probe::Stop });
            }
        };
        let meta = file.metadata().map_err(|e| io_error(path, e))?;
        if !meta.is_file() {
            // ld.so fails on these (a directory gives EISDIR, a device "file too
            // short"), or hangs on a FIFO; either way the program cannot start.
            return Err(malformed(path, "it is not a regular file"));
        }
        let head = read_prefix(&file, path, SIZEOF_EHDR64)?;
        let ehdr = match verify_library_header(path, &head)? {
            Verified::OtherArch => return Ok(Probe::OtherArch),
            Verified::Usable(h) => h,
        };
        if ehdr.e_type != ET_DYN {
            return Err(malformed(path, "cannot dynamically load executable"));
        }
        let info = parse_elf(&file, path, &ehdr)?;
        Ok(Probe::Found(Box::new(Candidate {
            path: path.to_path_buf(),
            l_name,
            info,
            file_id: (meta.dev(), meta.ino()),
        })))
    }
}

/// `_dl_dst_substitute`: replaces `$ORIGIN`, `$LIB`, `$PLATFORM` and their `${}`
/// forms. Returns None when a known token has no value (ld.so then drops the path
/// element, or fails for DT_NEEDED). Unknown `$NAME`s are kept literally.
pub(super) fn expand_dst(input: &[u8], origin: &Path, platform: Option<&[u8]>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'$' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let rest = &input[i + 1..];
        let tokens: [(&[u8], Option<&[u8]>); 3] = [
            (b"ORIGIN", Some(origin.as_os_str().as_bytes())),
            (b"PLATFORM", platform),
            (b"LIB", Some(DST_LIB)),
        ];
        let mut matched = false;
        for (token, value) in tokens {
            if let Some(len) = dst_len(rest, token) {
                out.extend_from_slice(value?);
                i += 1 + len;
                matched = true;
                break;
            }
        }
        if !matched {
            out.push(b'$');
            i += 1;
        }
    }
    Some(out)
}

/// `is_dst`: length of `NAME` or `{NAME}` at the start of `input`, if the token is
/// there and (without braces) not followed by more identifier characters.
pub(super) fn dst_len(input: &[u8], name: &[u8]) -> Option<usize> {
    if let Some(inner) = input.strip_prefix(b"{") {
        let after = inner.strip_prefix(name)?;
        return (after.first() == Some(&b'}')).then_some(name.len() + 2);
    }
    let after = input.strip_prefix(name)?;
    match after.first() {
        Some(c) if c.is_ascii_alphanumeric() || *c == b'_' => None,
        _ => Some(name.len()),
    }
}
