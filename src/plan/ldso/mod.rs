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

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use goblin::container::{Container, Ctx, Endian};
use goblin::elf::dynamic::{
    Dynamic, DF_1_NODEFLIB, DT_FLAGS_1, DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_SONAME,
    DT_STRSZ, DT_STRTAB,
};
use goblin::elf::header::{
    machine_to_str, Header, EI_ABIVERSION, EI_CLASS, EI_DATA, EI_OSABI, EI_VERSION, ELFCLASS32,
    ELFCLASS64, ELFDATA2LSB, ELFMAG, ELFOSABI_GNU, ELFOSABI_SYSV, EM_X86_64, ET_DYN, ET_EXEC,
    EV_CURRENT, SELFMAG,
};
use goblin::elf::program_header::{ProgramHeader, PT_DYNAMIC, PT_INTERP, PT_LOAD};

pub mod cache;
mod elf;
mod hwcaps;
mod search;
#[cfg(test)]
mod tests;

use cache::LdCache;
use elf::{
    check_program_header, open_interpreter, open_program, parse_elf, parse_shebang, read_prefix,
    BINPRM_BUF_SIZE,
};
use search::{Object, Resolver};

/// Kernel limit on nested `#!` interpreters we accept (the kernel allows a few more
/// rewrites, but a chain this long is a mistake or an attack).
pub const MAX_SHEBANG_DEPTH: usize = 4;
/// More objects than this means a runaway or hostile dependency graph.
pub const MAX_LIBRARIES: usize = 256;

/// What a program needs from the host file system to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependencies {
    /// Every host file the program needs, in discovery order, no duplicates: the
    /// program itself first, then (for a `#!` script) the script interpreter(s), then
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
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{} does not exist; check the program path", .path.display())]
    NotFound { path: PathBuf },

    #[error("{} cannot be executed: {reason}; point the profile at an executable file (chmod +x if it is yours)", .path.display())]
    NotExecutable { path: PathBuf, reason: String },

    #[error("{} is neither an ELF program nor a #! script; give the path of a compiled program or a script with a #! line", .path.display())]
    NotElf { path: PathBuf },

    #[error("{} is {found}; only x86-64 ELF programs (64-bit, little-endian) are supported, use an x86-64 build of it", .path.display())]
    WrongClass { path: PathBuf, found: String },

    #[error("interpreter {}, needed by {}, was not found; install it or fix the program's interpreter path", .interpreter.display(), .needed_by.display())]
    MissingInterpreter {
        interpreter: PathBuf,
        needed_by: PathBuf,
    },

    #[error("library {library}, needed by {}, was not found (searched: {}){}; install it, or add its directory to the profile's library_path",
        .needed_by.display(), join_paths(.searched), other_arch_note(.wrong_class))]
    MissingLibrary {
        library: String,
        needed_by: PathBuf,
        /// Directories searched in order (without the hwcaps subdirectories tried in
        /// each), with `/etc/ld.so.cache` at the point the cache was consulted; for a
        /// name containing `/`, that path.
        searched: Vec<PathBuf>,
        /// Files with the right name that ld.so skips because they are for another
        /// ELF class or machine (e.g. a 32-bit build).
        wrong_class: Vec<PathBuf>,
    },

    #[error("cannot read {}: {source}; check that it exists and is readable", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is unusable: {reason}; the kernel or the dynamic loader would refuse it as well, so repair, rebuild or reinstall it", .path.display())]
    Malformed { path: PathBuf, reason: String },

    #[error("{}: {reason}; run the innermost interpreter directly, or reduce the program's dependencies", .path.display())]
    TooDeep { path: PathBuf, reason: String },
}

fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn other_arch_note(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        String::new()
    } else {
        format!(
            "; skipped because built for another architecture: {}",
            join_paths(paths)
        )
    }
}

fn malformed(path: &Path, reason: impl Into<String>) -> ElfError {
    ElfError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_error(path: &Path, source: io::Error) -> ElfError {
    ElfError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Lexically absolute: ld.so and the kernel resolve relative names against the
/// current directory, and the caller needs host paths it can bind-mount.
fn absolutize(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
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
    let cwd = std::env::current_dir().map_err(|e| io_error(Path::new("."), e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut current = absolutize(&cwd, program);
    let mut script: Option<PathBuf> = None;
    let mut hops = 0;
    let (file, head) = loop {
        let file = open_program(&current, script.as_deref())?;
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
        push_unique(&mut files, current.clone());
        script = Some(current);
        current = absolutize(&cwd, &path_from_bytes(&interp));
    };
    let program_path = current;
    let ehdr = check_program_header(&program_path, &head)?;
    let info = parse_elf(&file, &program_path, &ehdr)?;
    push_unique(&mut files, program_path.clone());

    // Without PT_INTERP nothing runs ld.so, so DT_NEEDED entries (if any) are
    // never looked at: static and static-pie programs need only themselves.
    let Some(interp_raw) = info.interp.clone() else {
        return Ok(Dependencies {
            files,
            interpreter: None,
            main_origin: None,
        });
    };
    let interp_path = absolutize(&cwd, &path_from_bytes(&interp_raw));
    let interp_info = open_interpreter(&interp_path, &program_path)?;
    push_unique(&mut files, interp_path.clone());

    // $ORIGIN of the executable comes from /proc/self/exe in ld.so, which the
    // kernel fills with the resolved path, so symlinks to the program don't count.
    let real = std::fs::canonicalize(&program_path).map_err(|e| io_error(&program_path, e))?;
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
    Ok(Dependencies {
        files: resolver.files,
        interpreter: Some(interp_path),
        main_origin: origin_needed.then(|| parent_dir(&real)),
    })
}

fn push_unique(files: &mut Vec<PathBuf>, path: PathBuf) {
    if !files.contains(&path) {
        files.push(path);
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/"),
    }
}
