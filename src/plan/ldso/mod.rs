//! Which host files a program needs in order to start: the program, its `#!`
//! interpreters, its ELF interpreter (PT_INTERP) and every shared library the
//! dynamic loader will map.
//!
//! The jail's root starts empty and gets exactly these files, so the answer has to
//! match what glibc's ld.so (2.36, as configured by Debian for x86-64) actually
//! does; a library found in a different place than ld.so would look is a library
//! missing at run time. The rules implemented, in ld.so's order (`man ld.so`,
//! `elf/dl-load.c`, `elf/dl-deps.c`):
//!
//! * dependencies are loaded breadth-first from the executable; a name is resolved
//!   once and later matches an already-loaded object by requested name, path or
//!   DT_SONAME (so `ld-linux-x86-64.so.2` in libc's DT_NEEDED is the interpreter);
//! * a name with a `/` is opened as is; other names are searched in: DT_RPATH of the
//!   requesting object and of every object up the chain that loaded it (only when
//!   the requester has no DT_RUNPATH), the profile's library path
//!   (LD_LIBRARY_PATH), the requester's DT_RUNPATH, `/etc/ld.so.cache`, and the
//!   built-in directories (the last two skipped for DF_1_NODEFLIB requesters);
//! * in each directory, the `glibc-hwcaps/x86-64-vN` and legacy hwcaps
//!   subdirectories this CPU supports are tried before the directory itself;
//! * a candidate of another ELF class or machine is skipped, any other broken
//!   candidate is fatal (ld.so reports "invalid ELF header" instead of going on);
//! * `$ORIGIN`, `$LIB` and `$PLATFORM` (also in `${...}` form) are expanded in
//!   DT_NEEDED, DT_RPATH, DT_RUNPATH and the library path.
//!
//! Files are only read through bounded `pread`s of the parts ld.so looks at (ELF
//! header, program headers, dynamic array, a few strings), so a hostile file can
//! neither make us allocate without limit nor panic us.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub mod cache;
mod elf;
mod error;
mod hwcaps;
mod paths;
mod search;
#[cfg(test)]
mod tests;

use cache::LdCache;
use elf::{
    check_program_header, open_interpreter, open_program, parse_elf, parse_shebang, read_prefix,
    BINPRM_BUF_SIZE,
};
use search::{Object, Resolver};

pub use error::ElfError;
use error::{io_error, malformed};
use paths::{absolutize, parent_dir, path_from_bytes, push_unique};

/// Kernel limit on nested `#!` interpreters we accept (the kernel allows a few more
/// rewrites, but a chain this long is a mistake or an attack).
pub const MAX_SHEBANG_DEPTH: usize = 4;

/// What a program needs from the host file system to start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dependencies {
    /// Every host file the program needs, in discovery order, no duplicates: the
    /// program itself first (unless it was put into the jail), then (for a `#!` script) the script interpreter(s), then
    /// PT_INTERP, then every library found recursively. Paths as found by the search
    /// (made absolute against the current directory, not canonicalized: symlinks on
    /// the way are the caller's to recreate).
    pub files: Vec<PathBuf>,
    /// The program's PT_INTERP, if any (None for a static binary).
    pub interpreter: Option<PathBuf>,
    /// The program's own directory when its DT_RPATH/DT_RUNPATH (or the library path)
    /// uses `$ORIGIN`: ld.so learns it from /proc/self/exe, or, without /proc, from
    /// LD_ORIGIN_PATH, which the jail must then provide.
    pub main_origin: Option<PathBuf>,
    /// Every directory the search looked in (found or not), sorted: a file appearing
    /// in one of them could change what the loader would find, so a cached plan is
    /// checked against them.
    #[serde(default)]
    pub searched: Vec<PathBuf>,
}

/// Finds all files `program` needs to start, the way the kernel and glibc's ld.so
/// would find them. `program` is a host path (normally absolute; a relative one is
/// taken against the current directory). `library_path` plays the role of
/// LD_LIBRARY_PATH.
pub fn resolve(
    program: &Path,
    library_path: &[PathBuf],
    cache: &LdCache,
) -> Result<Dependencies, ElfError> {
    resolve_from(program, None, library_path, cache)
}

/// As [`resolve`], for a program that is not a host file but is put into the jail
/// (`inside` is its path there, `file` its bytes): it is not among the files to bind,
/// while a `#!` interpreter it names, its loader and libraries are the host's.
pub fn resolve_inside(
    inside: &Path,
    file: std::fs::File,
    library_path: &[PathBuf],
    cache: &LdCache,
) -> Result<Dependencies, ElfError> {
    resolve_from(inside, Some(file), library_path, cache)
}

fn resolve_from(
    program: &Path,
    mut inside: Option<std::fs::File>,
    library_path: &[PathBuf],
    cache: &LdCache,
) -> Result<Dependencies, ElfError> {
    let cwd = std::env::current_dir().map_err(|e| io_error(Path::new("."), e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut current = absolutize(&cwd, program);
    let mut script: Option<PathBuf> = None;
    let mut hops = 0;
    // Whether `current` is the file put into the jail rather than a host file.
    let mut in_jail = inside.is_some();
    let (file, head) = loop {
        let file = match inside.take() {
            Some(f) => f,
            None => open_program(&current, script.as_deref())?,
        };
        let head = read_prefix(&file, &current, BINPRM_BUF_SIZE)?;
        if !head.starts_with(b"#!") {
            break (file, head);
        }
        hops += 1;
        if hops > MAX_SHEBANG_DEPTH {
            return Err(ElfError::TooDeep {
                path: program.to_path_buf(),
                reason: format!("more than {MAX_SHEBANG_DEPTH} nested #! interpreters"),
            });
        }
        let interp = parse_shebang(&head).map_err(|reason| malformed(&current, reason))?;
        if !in_jail {
            push_unique(&mut files, current.clone());
        }
        in_jail = false;
        script = Some(current);
        current = absolutize(&cwd, &path_from_bytes(&interp));
    };
    let program_path = current;
    let ehdr = check_program_header(&program_path, &head)?;
    let info = parse_elf(&file, &program_path, &ehdr)?;
    if !in_jail {
        push_unique(&mut files, program_path.clone());
    }

    // Without PT_INTERP nothing runs ld.so, so DT_NEEDED entries (if any) are
    // never looked at: static and static-pie programs need only themselves.
    let Some(interp_raw) = info.interp.clone() else {
        return Ok(Dependencies {
            files,
            interpreter: None,
            main_origin: None,
            searched: Vec::new(),
        });
    };
    let interp_path = absolutize(&cwd, &path_from_bytes(&interp_raw));
    let interp_info = open_interpreter(&interp_path, &program_path)?;
    push_unique(&mut files, interp_path.clone());

    // $ORIGIN of the executable comes from /proc/self/exe in ld.so, which the
    // kernel fills with the resolved path, so symlinks to the program don't count.
    let real = if in_jail {
        program_path.clone()
    } else {
        std::fs::canonicalize(&program_path).map_err(|e| io_error(&program_path, e))?
    };
    let main_origin = parent_dir(&real);
    let uses_origin = |raw: &[u8]| raw.windows(6).any(|w| w == b"ORIGIN");
    let origin_needed = [&info.rpath, &info.runpath]
        .into_iter()
        .flatten()
        .any(|r| uses_origin(r))
        || library_path
            .iter()
            .any(|d| uses_origin(d.as_os_str().as_bytes()));

    let mut resolver = Resolver {
        cwd,
        cache,
        library_path: Vec::new(),
        objects: Vec::new(),
        files,
        dir_status: HashMap::new(),
    };
    // ld.so expands DSTs in LD_LIBRARY_PATH against the executable.
    resolver.library_path = library_path
        .iter()
        .filter_map(|dir| resolver.search_dir(dir.as_os_str().as_bytes(), &main_origin))
        .collect();
    resolver.objects.push(Object::new(
        &info,
        Vec::new(),
        Vec::new(),
        program_path.clone(),
        main_origin,
        None,
        None,
    ));
    // The interpreter is in ld.so's list of loaded objects under its PT_INTERP name
    // and its soname, but its own dependencies (none, for ld.so) are not loaded.
    resolver.objects.push(Object::new(
        &interp_info,
        interp_raw.clone(),
        interp_raw,
        interp_path.clone(),
        parent_dir(&interp_path),
        None,
        None,
    ));
    resolver.load_all()?;
    let mut searched: Vec<PathBuf> = resolver.dir_status.into_keys().collect();
    searched.sort();
    Ok(Dependencies {
        files: resolver.files,
        interpreter: Some(interp_path),
        main_origin: origin_needed.then(|| parent_dir(&real)),
        searched,
    })
}
