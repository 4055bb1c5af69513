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

use cache::LdCache;

/// Kernel limit on nested `#!` interpreters we accept (the kernel allows a few more
/// rewrites, but a chain this long is a mistake or an attack).
pub const MAX_SHEBANG_DEPTH: usize = 4;
/// More objects than this means a runaway or hostile dependency graph.
pub const MAX_LIBRARIES: usize = 256;

/// `BINPRM_BUF_SIZE`: the kernel only looks at this much of a script's first line.
const BINPRM_BUF_SIZE: usize = 256;
/// Kernel's bound on PT_INTERP (`PATH_MAX`).
const MAX_INTERP_LEN: u64 = 4096;
/// Kernel's bound on the program header table.
const MAX_PHDR_BYTES: u64 = 65536;
/// A real dynamic array has a few dozen entries; 64 Ki entries is generous and
/// keeps a hostile p_filesz from turning into a huge read.
const MAX_DYNAMIC_BYTES: u64 = 1 << 20;
/// Longest DT_NEEDED / DT_RPATH / DT_RUNPATH / DT_SONAME string we read.
const MAX_STRING_LEN: u64 = 64 << 10;

const SIZEOF_EHDR64: usize = 64;
const SIZEOF_PHDR64: u16 = 56;
/// glibc 2.36 `LIBC_ABI_MAX`: EI_ABIVERSION values ld.so accepts for ELFOSABI_GNU.
const LIBC_ABI_MAX: u8 = 4;

/// Not exported by goblin.
const DT_AUXILIARY: u64 = 0x7fff_fffd;
const DT_FILTER: u64 = 0x7fff_ffff;

/// Debian's x86-64 ld.so built-in search path (`ld.so --help`, "system search
/// path"); not the /lib64 of other distributions.
const SYSTEM_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];
/// What Debian's ld.so substitutes for `$LIB` (its `DL_DST_LIB`).
const DST_LIB: &[u8] = b"lib/x86_64-linux-gnu";
/// Where ld.so's cache lives; listed in "searched" so the error shows the step.
const CACHE_PATH: &str = "/etc/ld.so.cache";

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

/// Opens the program or a `#!` interpreter with the checks execve makes: it must
/// exist, be a regular file and carry an execute bit.
fn open_program(path: &Path, script: Option<&Path>) -> Result<File, ElfError> {
    let file = match open_nonblocking(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(match script {
                Some(s) => ElfError::MissingInterpreter {
                    interpreter: path.to_path_buf(),
                    needed_by: s.to_path_buf(),
                },
                None => ElfError::NotFound {
                    path: path.to_path_buf(),
                },
            })
        }
        Err(e) => return Err(io_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(ElfError::NotExecutable {
            path: path.to_path_buf(),
            reason: "it is not a regular file".into(),
        });
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(ElfError::NotExecutable {
            path: path.to_path_buf(),
            reason: "it has no execute permission".into(),
        });
    }
    Ok(file)
}

/// O_NONBLOCK so a FIFO planted under a library's name cannot hang the planner
/// (ld.so itself would block on it); it changes nothing for regular files.
fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Up to `len` bytes from the start; short files give a short buffer.
fn read_prefix(file: &File, path: &Path, len: usize) -> Result<Vec<u8>, ElfError> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, e)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

fn read_range(
    file: &File,
    path: &Path,
    file_len: u64,
    offset: u64,
    len: u64,
    what: &str,
) -> Result<Vec<u8>, ElfError> {
    // Check against the file size before allocating: `len` comes from the file.
    if offset
        .checked_add(len)
        .filter(|&end| end <= file_len)
        .is_none()
    {
        return Err(malformed(path, format!("{what} lies outside the file")));
    }
    let mut buf = vec![0u8; len as usize];
    match file.read_exact_at(&mut buf, offset) {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(malformed(
            path,
            format!("{what} lies outside the file (it shrank while being read)"),
        )),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The interpreter path of a `#!` line, parsed like the kernel's `load_script`:
/// only the first 256 bytes count, the name ends at a space, tab, NUL or the end
/// of the line, and a name that may have been cut off by the 256-byte limit is
/// refused.
fn parse_shebang(head: &[u8]) -> Result<Vec<u8>, String> {
    // The kernel's buffer is zero-filled past the end of a short file.
    let mut buf = [0u8; BINPRM_BUF_SIZE];
    let n = head.len().min(BINPRM_BUF_SIZE);
    buf[..n].copy_from_slice(&head[..n]);
    let spacetab = |c: u8| c == b' ' || c == b'\t';
    let terminator = |c: u8| spacetab(c) || c == 0;
    // Both helpers include `last`, as the kernel's do.
    let next_non_spacetab = |first: usize, last: usize| (first..=last).find(|&i| !spacetab(buf[i]));
    let next_terminator = |first: usize, last: usize| (first..=last).find(|&i| terminator(buf[i]));
    let buf_end = BINPRM_BUF_SIZE - 1;

    let mut i_end = match buf.iter().position(|&c| c == b'\n') {
        Some(i) => i,
        None => {
            let start = next_non_spacetab(2, buf_end).ok_or("the #! line has no interpreter")?;
            if next_terminator(start, buf_end).is_none() {
                return Err(format!(
                    "the #! interpreter path is longer than the kernel's {BINPRM_BUF_SIZE}-byte limit"
                ));
            }
            buf_end
        }
    };
    while i_end > 2 && spacetab(buf[i_end - 1]) {
        i_end -= 1;
    }
    let i_name = match next_non_spacetab(2, i_end) {
        Some(i) if i != i_end => i,
        _ => return Err("the #! line has no interpreter".into()),
    };
    let name_end = next_terminator(i_name, i_end).unwrap_or(i_end);
    // "#!" followed by NULs: the kernel would try to open "" and fail.
    if name_end == i_name {
        return Err("the #! line has no interpreter".into());
    }
    Ok(buf[i_name..name_end].to_vec())
}

/// What the main program's ELF header must say for the jail to run it.
fn check_program_header(path: &Path, head: &[u8]) -> Result<Header, ElfError> {
    if head.len() < SELFMAG || &head[..SELFMAG] != ELFMAG {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
        });
    }
    if head.len() <= EI_DATA {
        return Err(malformed(path, "file too short"));
    }
    match head[EI_CLASS] {
        ELFCLASS64 => {}
        ELFCLASS32 => {
            return Err(ElfError::WrongClass {
                path: path.to_path_buf(),
                found: "a 32-bit ELF program".into(),
            })
        }
        c => return Err(malformed(path, format!("unknown ELF class {c}"))),
    }
    if head[EI_DATA] != ELFDATA2LSB {
        return Err(ElfError::WrongClass {
            path: path.to_path_buf(),
            found: "a big-endian ELF program".into(),
        });
    }
    let ehdr = parse_header(path, head)?;
    if ehdr.e_machine != EM_X86_64 {
        return Err(ElfError::WrongClass {
            path: path.to_path_buf(),
            found: format!("an ELF program for {}", machine_to_str(ehdr.e_machine)),
        });
    }
    if ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN {
        return Err(malformed(
            path,
            format!("it is not an executable (ELF type {})", ehdr.e_type),
        ));
    }
    check_common(path, &ehdr)?;
    Ok(ehdr)
}

fn parse_header(path: &Path, head: &[u8]) -> Result<Header, ElfError> {
    if head.len() < SIZEOF_EHDR64 {
        return Err(malformed(path, "file too short"));
    }
    goblin::elf::Elf::parse_header(&head[..SIZEOF_EHDR64])
        .map_err(|e| malformed(path, format!("bad ELF header: {e}")))
}

fn check_common(path: &Path, ehdr: &Header) -> Result<(), ElfError> {
    if ehdr.e_phentsize != SIZEOF_PHDR64 {
        return Err(malformed(
            path,
            "ELF file's phentsize not the expected size",
        ));
    }
    Ok(())
}

/// The outcome of ld.so's `open_verify` on a candidate library.
enum Verified {
    /// Another ELF class or machine: ld.so silently keeps searching.
    OtherArch,
    Usable(Header),
}

/// `open_verify`: which header defects make ld.so skip a file and which make it
/// give up loading altogether.
fn verify_library_header(path: &Path, head: &[u8]) -> Result<Verified, ElfError> {
    if head.len() < SIZEOF_EHDR64 {
        // A 32-bit header is shorter, but ld.so reads a full native header first.
        return Err(malformed(path, "file too short"));
    }
    if &head[..SELFMAG] != ELFMAG {
        return Err(malformed(path, "invalid ELF header"));
    }
    if head[EI_CLASS] != ELFCLASS64 {
        return Ok(Verified::OtherArch);
    }
    if head[EI_DATA] != ELFDATA2LSB {
        return Err(malformed(path, "ELF file data encoding not little-endian"));
    }
    if head[EI_VERSION] != EV_CURRENT {
        return Err(malformed(
            path,
            "ELF file version ident does not match current one",
        ));
    }
    let osabi = head[EI_OSABI];
    if osabi != ELFOSABI_SYSV && osabi != ELFOSABI_GNU {
        return Err(malformed(path, "ELF file OS ABI invalid"));
    }
    let abiversion = head[EI_ABIVERSION];
    if !(abiversion == 0 || (osabi == ELFOSABI_GNU && abiversion < LIBC_ABI_MAX)) {
        return Err(malformed(path, "ELF file ABI version invalid"));
    }
    if head[EI_ABIVERSION + 1..16].iter().any(|&b| b != 0) {
        return Err(malformed(path, "nonzero padding in e_ident"));
    }
    let ehdr = parse_header(path, head)?;
    if ehdr.e_version != u32::from(EV_CURRENT) {
        return Err(malformed(
            path,
            "ELF file version does not match current one",
        ));
    }
    if ehdr.e_machine != EM_X86_64 {
        return Ok(Verified::OtherArch);
    }
    if ehdr.e_type != ET_DYN && ehdr.e_type != ET_EXEC {
        return Err(malformed(path, "only ET_DYN and ET_EXEC can be loaded"));
    }
    check_common(path, &ehdr)?;
    Ok(Verified::Usable(ehdr))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DepKind {
    Needed,
    /// DT_FILTER: must load, like DT_NEEDED.
    Filter,
    /// DT_AUXILIARY: ld.so ignores every failure to load it.
    Auxiliary,
}

/// What ld.so reads from an object before mapping it.
#[derive(Debug, Clone, Default)]
struct ElfInfo {
    has_load: bool,
    /// Some when the object has PT_DYNAMIC, with its p_filesz.
    dynamic_size: Option<u64>,
    interp: Option<Vec<u8>>,
    deps: Vec<(DepKind, Vec<u8>)>,
    soname: Option<Vec<u8>>,
    rpath: Option<Vec<u8>>,
    runpath: Option<Vec<u8>>,
    nodeflib: bool,
}

/// Reads program headers, PT_INTERP and the dynamic array of an x86-64 ELF whose
/// header has been checked.
fn parse_elf(file: &File, path: &Path, ehdr: &Header) -> Result<ElfInfo, ElfError> {
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phdr_bytes = u64::from(ehdr.e_phnum) * u64::from(SIZEOF_PHDR64);
    if phdr_bytes > MAX_PHDR_BYTES {
        return Err(malformed(path, "too many program headers"));
    }
    let raw = read_range(
        file,
        path,
        file_len,
        ehdr.e_phoff,
        phdr_bytes,
        "the program header table",
    )?;
    let phdrs = ProgramHeader::parse(&raw, 0, usize::from(ehdr.e_phnum), ctx)
        .map_err(|e| malformed(path, format!("bad program headers: {e}")))?;
    let loads: Vec<&ProgramHeader> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();

    let mut info = ElfInfo {
        has_load: !loads.is_empty(),
        ..ElfInfo::default()
    };
    // The kernel uses the first PT_INTERP; ld.so, walking all headers, the last
    // PT_DYNAMIC.
    if let Some(ph) = phdrs.iter().find(|p| p.p_type == PT_INTERP) {
        if ph.p_filesz < 2 || ph.p_filesz > MAX_INTERP_LEN {
            return Err(malformed(path, "PT_INTERP has an impossible size"));
        }
        let raw = read_range(file, path, file_len, ph.p_offset, ph.p_filesz, "PT_INTERP")?;
        if raw.last() != Some(&0) {
            return Err(malformed(path, "PT_INTERP is not NUL-terminated"));
        }
        let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        if len == 0 {
            return Err(malformed(path, "PT_INTERP is empty"));
        }
        info.interp = Some(raw[..len].to_vec());
    }
    let Some(dyn_ph) = phdrs.iter().rev().find(|p| p.p_type == PT_DYNAMIC) else {
        return Ok(info);
    };
    info.dynamic_size = Some(dyn_ph.p_filesz);
    if dyn_ph.p_filesz == 0 {
        return Ok(info);
    }
    // ld.so reads the dynamic array where it is mapped (p_vaddr), not at p_offset.
    let (dyn_off, avail) = vaddr_to_offset(&loads, dyn_ph.p_vaddr)
        .ok_or_else(|| malformed(path, "PT_DYNAMIC is not inside a loaded segment"))?;
    let dyn_len = dyn_ph.p_filesz.min(avail).min(MAX_DYNAMIC_BYTES);
    let raw = read_range(
        file,
        path,
        file_len,
        dyn_off,
        dyn_len,
        "the dynamic section",
    )?;
    let synthetic = [ProgramHeader {
        p_type: PT_DYNAMIC,
        p_offset: 0,
        p_filesz: dyn_len,
        ..ProgramHeader::default()
    }];
    let dyns = Dynamic::parse(&raw, &synthetic, ctx)
        .map_err(|e| malformed(path, format!("bad dynamic section: {e}")))?
        .map(|d| d.dyns)
        .unwrap_or_default();

    let mut strtab = None;
    let mut strsz = None;
    for d in &dyns {
        match d.d_tag {
            DT_NULL => break,
            DT_STRTAB => strtab = Some(d.d_val),
            DT_STRSZ => strsz = Some(d.d_val),
            DT_FLAGS_1 => info.nodeflib = d.d_val & DF_1_NODEFLIB != 0,
            _ => {}
        }
    }
    // ld.so never looks at DT_STRSZ; it only keeps our reads inside the table.
    let strings = match strtab {
        Some(addr) => {
            let (off, avail) = vaddr_to_offset(&loads, addr)
                .ok_or_else(|| malformed(path, "DT_STRTAB is not inside a loaded segment"))?;
            Some(StrTab {
                file,
                path,
                offset: off,
                size: strsz.unwrap_or(avail).min(avail),
            })
        }
        None => None,
    };
    let string = |val: u64, tag: &str| -> Result<Vec<u8>, ElfError> {
        match &strings {
            Some(s) => s.get(val),
            None => Err(malformed(path, format!("{tag} without a string table"))),
        }
    };
    for d in &dyns {
        match d.d_tag {
            DT_NULL => break,
            DT_NEEDED => info
                .deps
                .push((DepKind::Needed, string(d.d_val, "DT_NEEDED")?)),
            DT_FILTER => info
                .deps
                .push((DepKind::Filter, string(d.d_val, "DT_FILTER")?)),
            DT_AUXILIARY => info
                .deps
                .push((DepKind::Auxiliary, string(d.d_val, "DT_AUXILIARY")?)),
            // ld.so keeps the last entry of each of these tags.
            DT_SONAME => info.soname = Some(string(d.d_val, "DT_SONAME")?),
            DT_RPATH => info.rpath = Some(string(d.d_val, "DT_RPATH")?),
            DT_RUNPATH => info.runpath = Some(string(d.d_val, "DT_RUNPATH")?),
            _ => {}
        }
    }
    // "If both RUNPATH and RPATH are given, the latter is ignored" (get-dynamic-info.h).
    if info.runpath.is_some() {
        info.rpath = None;
    }
    Ok(info)
}

/// File offset of a virtual address and how many file-backed bytes follow it in
/// its segment.
fn vaddr_to_offset(loads: &[&ProgramHeader], vaddr: u64) -> Option<(u64, u64)> {
    loads.iter().find_map(|ph| {
        let delta = vaddr.checked_sub(ph.p_vaddr)?;
        if delta < ph.p_filesz {
            Some((ph.p_offset.checked_add(delta)?, ph.p_filesz - delta))
        } else {
            None
        }
    })
}

struct StrTab<'a> {
    file: &'a File,
    path: &'a Path,
    offset: u64,
    size: u64,
}

impl StrTab<'_> {
    /// The NUL-terminated string at `index`, read in small pieces: string tables of
    /// big libraries run to megabytes and we need a handful of entries.
    fn get(&self, index: u64) -> Result<Vec<u8>, ElfError> {
        if index >= self.size {
            return Err(malformed(
                self.path,
                "a dynamic string lies outside DT_STRTAB",
            ));
        }
        let limit = (self.size - index).min(MAX_STRING_LEN);
        let start = self
            .offset
            .checked_add(index)
            .ok_or_else(|| malformed(self.path, "a dynamic string lies outside the file"))?;
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while (out.len() as u64) < limit {
            let want = ((limit - out.len() as u64) as usize).min(chunk.len());
            let n = match self
                .file
                .read_at(&mut chunk[..want], start + out.len() as u64)
            {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(self.path, e)),
            };
            if let Some(nul) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Err(malformed(
            self.path,
            "a dynamic string is not NUL-terminated within bounds",
        ))
    }
}

/// PT_INTERP must be an x86-64 ELF too; we read it for its soname, under which
/// libc asks for it again.
fn open_interpreter(path: &Path, program: &Path) -> Result<ElfInfo, ElfError> {
    let file = match open_nonblocking(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ElfError::MissingInterpreter {
                interpreter: path.to_path_buf(),
                needed_by: program.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(malformed(
            path,
            "the program interpreter is not a regular file",
        ));
    }
    let head = read_prefix(&file, path, SIZEOF_EHDR64)?;
    match verify_library_header(path, &head)? {
        Verified::OtherArch => Err(ElfError::WrongClass {
            path: path.to_path_buf(),
            found: "not an x86-64 ELF file (used as the program interpreter)".into(),
        }),
        Verified::Usable(ehdr) => parse_elf(&file, path, &ehdr),
    }
}

/// A loaded object in ld.so's link map.
#[derive(Debug)]
struct Object {
    /// `l_name`: the name it was found under, byte for byte.
    l_name: Vec<u8>,
    /// `l_libname`: every name it was requested by.
    names: Vec<Vec<u8>>,
    soname: Option<Vec<u8>>,
    path: PathBuf,
    origin: PathBuf,
    deps: Vec<(DepKind, Vec<u8>)>,
    rpath: Option<Vec<u8>>,
    runpath: Option<Vec<u8>>,
    nodeflib: bool,
    /// `l_loader`: the object whose dependency this was, for the DT_RPATH chain.
    loader: Option<usize>,
    /// (st_dev, st_ino): ld.so maps a file once even if found under two names.
    file_id: Option<(u64, u64)>,
}

impl Object {
    fn new(
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
    fn matches(&self, name: &[u8]) -> bool {
        self.l_name == name
            || self.names.iter().any(|n| n == name)
            || self.soname.as_deref() == Some(name)
    }
}

/// A library file that passed ld.so's checks.
struct Candidate {
    path: PathBuf,
    l_name: Vec<u8>,
    info: ElfInfo,
    file_id: (u64, u64),
}

enum Probe {
    /// ENOENT/EACCES/ENOTDIR: try the next place.
    Absent,
    /// Any other open error: ld.so abandons this search list (not the search).
    Stop,
    OtherArch,
    Found(Box<Candidate>),
}

struct Resolver<'a> {
    cwd: PathBuf,
    cache: &'a LdCache,
    library_path: Vec<PathBuf>,
    objects: Vec<Object>,
    files: Vec<PathBuf>,
    /// Whether a directory exists, as ld.so remembers per search-path element.
    dir_status: HashMap<PathBuf, bool>,
}

/// What accumulates while one name is searched, for the error message.
#[derive(Default)]
struct Trail {
    searched: Vec<PathBuf>,
    wrong_class: Vec<PathBuf>,
}

impl Trail {
    fn searched(&mut self, dir: &Path) {
        if !self.searched.iter().any(|d| d == dir) {
            self.searched.push(dir.to_path_buf());
        }
    }
}

impl Resolver<'_> {
    /// Breadth-first over the link map, as `_dl_map_object_deps` does.
    fn load_all(&mut self) -> Result<(), ElfError> {
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
    fn load_dep(&mut self, loader: usize, raw: &[u8]) -> Result<Option<usize>, ElfError> {
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
    fn search(
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
    fn split_path(&self, list: &[u8], origin: &Path) -> Vec<PathBuf> {
        list.split(|&b| b == b':')
            .filter_map(|element| self.search_dir(element, origin))
            .collect()
    }

    /// One search-path element: DST-expanded, absolute. Empty elements would mean
    /// the current directory to ld.so, which is not a place the jail provides.
    fn search_dir(&self, element: &[u8], origin: &Path) -> Option<PathBuf> {
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
    fn search_list(
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

    fn is_dir(&mut self, dir: &Path) -> bool {
        if let Some(&known) = self.dir_status.get(dir) {
            return known;
        }
        let exists = std::fs::metadata(dir).is_ok_and(|m| m.is_dir());
        self.dir_status.insert(dir.to_path_buf(), exists);
        exists
    }

    /// `open_verify` plus the parts of `_dl_map_object_from_fd` that decide
    /// whether a file can be a library.
    fn probe(&self, path: &Path, l_name: Vec<u8>) -> Result<Probe, ElfError> {
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
fn expand_dst(input: &[u8], origin: &Path, platform: Option<&[u8]>) -> Option<Vec<u8>> {
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
fn dst_len(input: &[u8], name: &[u8]) -> Option<usize> {
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

/// `$PLATFORM` as glibc computes it: the kernel's AT_PLATFORM, replaced on Intel
/// CPUs by "haswell" or "xeon_phi" (sysdeps/x86/cpu-features.c).
fn platform() -> Option<&'static [u8]> {
    static PLATFORM: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    PLATFORM
        .get_or_init(|| {
            if let Some(p) = cpu::intel_platform() {
                return Some(p.as_bytes().to_vec());
            }
            // SAFETY: getauxval has no preconditions; AT_PLATFORM, when present,
            // points to a NUL-terminated string the kernel placed on our stack,
            // valid for the life of the process.
            let ptr = unsafe { libc::getauxval(libc::AT_PLATFORM) } as *const libc::c_char;
            if ptr.is_null() {
                return None;
            }
            // SAFETY: see above.
            let s = unsafe { std::ffi::CStr::from_ptr(ptr) };
            Some(s.to_bytes().to_vec())
        })
        .as_deref()
}

/// The subdirectories ld.so tries inside each search directory, best first:
/// `glibc-hwcaps/x86-64-v4..v2` the CPU supports, then the legacy hwcaps
/// combinations of "tls", the platform and the hwcap names ("x86_64", "avx512_1").
fn hwcaps_subdirs() -> &'static [PathBuf] {
    static SUBDIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    SUBDIRS.get_or_init(|| {
        let mut out: Vec<PathBuf> = Vec::new();
        for level in (2..=4).rev() {
            if cpu::isa_level() >= level {
                out.push(PathBuf::from(format!("glibc-hwcaps/x86-64-v{level}")));
            }
        }
        // glibc builds every subset of these, in this order, counting down from
        // "all of them" with the first component as the most significant bit.
        let mut parts: Vec<String> = vec!["tls".into()];
        if let Some(p) = platform() {
            parts.push(String::from_utf8_lossy(p).into_owned());
        }
        if cpu::has_avx512_1() {
            parts.push("avx512_1".into());
        }
        if cfg!(target_arch = "x86_64") {
            parts.push("x86_64".into());
        }
        let n = parts.len();
        for mask in (1u32..(1 << n)).rev() {
            let mut sub = PathBuf::new();
            for (bit, part) in parts.iter().enumerate() {
                if mask & (1 << (n - 1 - bit)) != 0 {
                    sub.push(part);
                }
            }
            if !out.contains(&sub) {
                out.push(sub);
            }
        }
        out
    })
}

#[cfg(target_arch = "x86_64")]
mod cpu {
    use std::arch::x86_64::{__cpuid_count, CpuidResult};

    // Newer compilers consider __cpuid_count safe, older ones (rust-version) not.
    #[allow(unused_unsafe)]
    fn cpuid(leaf: u32, sub: u32) -> CpuidResult {
        // SAFETY: CPUID exists on every x86-64 CPU and only reads CPU state.
        unsafe { __cpuid_count(leaf, sub) }
    }

    fn max_leaf() -> u32 {
        cpuid(0, 0).eax
    }

    fn is_intel() -> bool {
        let r = cpuid(0, 0);
        r.ebx.to_le_bytes() == *b"Genu"
            && r.edx.to_le_bytes() == *b"ineI"
            && r.ecx.to_le_bytes() == *b"ntel"
    }

    fn leaf7_ebx() -> u32 {
        if max_leaf() >= 7 {
            cpuid(7, 0).ebx
        } else {
            0
        }
    }

    /// glibc's `get_isa_level` (sysdeps/x86/get-isa-level.h): 1 = baseline.
    pub fn isa_level() -> u32 {
        let osxsave = cpuid(1, 0).ecx & (1 << 27) != 0;
        let lahf = cpuid(0x8000_0000, 0).eax >= 0x8000_0001 && cpuid(0x8000_0001, 0).ecx & 1 != 0;
        let v2 = lahf
            && is_x86_feature_detected!("cmpxchg16b")
            && is_x86_feature_detected!("popcnt")
            && is_x86_feature_detected!("sse3")
            && is_x86_feature_detected!("sse4.1")
            && is_x86_feature_detected!("sse4.2")
            && is_x86_feature_detected!("ssse3");
        let v3 = v2
            && osxsave
            && is_x86_feature_detected!("avx")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("f16c")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("movbe");
        let v4 = v3
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512cd")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl");
        1 + u32::from(v2) + u32::from(v3) + u32::from(v4)
    }

    /// AVX512ER and AVX512PF (Xeon Phi only) are not known to std's detection;
    /// when AVX512CD is usable the OS has enabled the AVX-512 state they need.
    fn xeon_phi() -> bool {
        let ebx = leaf7_ebx();
        is_x86_feature_detected!("avx512cd") && ebx & (1 << 27) != 0 && ebx & (1 << 26) != 0
    }

    fn avx512er() -> bool {
        is_x86_feature_detected!("avx512cd") && leaf7_ebx() & (1 << 27) != 0
    }

    pub fn intel_platform() -> Option<&'static str> {
        if !is_intel() {
            return None;
        }
        if xeon_phi() {
            return Some("xeon_phi");
        }
        let haswell = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("bmi1")
            && is_x86_feature_detected!("bmi2")
            && is_x86_feature_detected!("lzcnt")
            && is_x86_feature_detected!("movbe")
            && is_x86_feature_detected!("popcnt");
        haswell.then_some("haswell")
    }

    /// HWCAP_X86_AVX512_1: Intel, AVX-512 CD/BW/DQ/VL, and not a Xeon Phi.
    pub fn has_avx512_1() -> bool {
        is_intel()
            && is_x86_feature_detected!("avx512cd")
            && !avx512er()
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod cpu {
    pub fn isa_level() -> u32 {
        1
    }
    pub fn intel_platform() -> Option<&'static str> {
        None
    }
    pub fn has_avx512_1() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::process::Command;

    /// A scratch directory under the system temp dir, unique per test and process,
    /// removed on drop. Canonical, so that `$ORIGIN` (a real path) and the paths we
    /// build agree.
    struct Fixture {
        dir: PathBuf,
    }

    impl Fixture {
        fn new(tag: &str) -> Fixture {
            let dir = std::env::temp_dir().join(format!("moat-elf-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Fixture {
                dir: std::fs::canonicalize(&dir).unwrap(),
            }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.join(rel)
        }

        fn write(&self, rel: &str, contents: &[u8], mode: u32) -> PathBuf {
            let path = self.path(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        }

        /// Runs a compiler in the fixture directory; the tests need a toolchain and
        /// say so plainly when there is none.
        fn cc(&self, compiler: &str, args: &[&str]) {
            let out = Command::new(compiler)
                .args(args)
                .current_dir(&self.dir)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {compiler} (install gcc/g++): {e}"));
            assert!(
                out.status.success(),
                "{compiler} {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        fn gcc(&self, args: &[&str]) {
            self.cc("gcc", args);
        }

        /// libfoo.so (foo() returns 0) in `rel_dir`, and main.c calling it.
        fn foo_sources(&self) {
            self.write("foo.c", b"int foo(void) { return 0; }\n", 0o644);
            self.write(
                "main.c",
                b"int foo(void);\nint main(void) { return foo(); }\n",
                0o644,
            );
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn cache() -> LdCache {
        LdCache::load().expect("/etc/ld.so.cache")
    }

    /// The files the real loader maps, from `ldd` (which is ld.so in trace mode).
    fn ldd(program: &Path, library_path: Option<&str>) -> BTreeSet<PathBuf> {
        let mut cmd = Command::new("ldd");
        cmd.arg(program);
        match library_path {
            Some(p) => cmd.env("LD_LIBRARY_PATH", p),
            None => cmd.env_remove("LD_LIBRARY_PATH"),
        };
        let out = cmd.output().expect("run ldd");
        assert!(out.status.success(), "ldd {}: {:?}", program.display(), out);
        let text = String::from_utf8(out.stdout).unwrap();
        let mut files = BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            assert!(!line.contains("not found"), "ldd: {line}");
            let path = match line.split_once(" => ") {
                Some((_, rest)) => rest.split(" (").next().unwrap(),
                None => line.split(" (").next().unwrap(),
            };
            if path.starts_with('/') {
                files.insert(PathBuf::from(path));
            }
        }
        files
    }

    /// Our answer minus the program (and script interpreters): what ldd lists.
    fn loaded(deps: &Dependencies, skip: usize) -> BTreeSet<PathBuf> {
        deps.files[skip..].iter().cloned().collect()
    }

    fn file_names(deps: &Dependencies) -> Vec<String> {
        deps.files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn runs(program: &Path, library_path: Option<&str>) -> bool {
        let mut cmd = Command::new(program);
        if let Some(p) = library_path {
            cmd.env("LD_LIBRARY_PATH", p);
        } else {
            cmd.env_remove("LD_LIBRARY_PATH");
        }
        cmd.output().unwrap().status.success()
    }

    #[test]
    fn c_program_matches_ldd() {
        let fx = Fixture::new("c");
        fx.write(
            "hello.c",
            b"#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n",
            0o644,
        );
        fx.gcc(&["-o", "hello", "hello.c"]);
        let prog = fx.path("hello");
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert_eq!(deps.files[0], prog);
        let interp = deps.interpreter.clone().expect("PT_INTERP");
        assert_eq!(interp, Path::new("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(deps.files[1], interp);
        let names = file_names(&deps);
        assert!(names.contains(&"libc.so.6".to_string()), "{names:?}");
        // libc's own DT_NEEDED on ld-linux-x86-64.so.2 is the interpreter, by
        // soname; it must not be found a second time under another path.
        assert_eq!(
            names
                .iter()
                .filter(|n| *n == "ld-linux-x86-64.so.2")
                .count(),
            1,
            "{:?}",
            deps.files
        );
        assert_eq!(loaded(&deps, 1), ldd(&prog, None));
    }

    #[test]
    fn cxx_program_matches_ldd() {
        let fx = Fixture::new("cxx");
        fx.write(
            "hello.cc",
            b"#include <iostream>\n#include <cmath>\nint main(int c, char **) { std::cout << std::sqrt(double(c)) << std::endl; }\n",
            0o644,
        );
        fx.cc("g++", &["-o", "hello", "hello.cc"]);
        let prog = fx.path("hello");
        let deps = resolve(&prog, &[], &cache()).unwrap();
        let names = file_names(&deps);
        for lib in ["libstdc++.so.6", "libm.so.6", "libgcc_s.so.1", "libc.so.6"] {
            assert!(
                names.iter().any(|n| n == lib),
                "{lib} missing from {names:?}"
            );
        }
        assert_eq!(loaded(&deps, 1), ldd(&prog, None));
        let unique: BTreeSet<_> = deps.files.iter().collect();
        assert_eq!(
            unique.len(),
            deps.files.len(),
            "duplicates in {:?}",
            deps.files
        );
    }

    /// prog -> lib/libfoo.so -> lib2/libbar.so, with the executable's search path
    /// "$ORIGIN/lib:$ORIGIN/lib2" stored as DT_RUNPATH or DT_RPATH.
    fn chain_fixture(tag: &str, rpath: bool) -> (Fixture, PathBuf) {
        let fx = Fixture::new(tag);
        fx.write("bar.c", b"int bar(void) { return 0; }\n", 0o644);
        fx.write(
            "foo.c",
            b"int bar(void);\nint foo(void) { return bar(); }\n",
            0o644,
        );
        fx.write(
            "main.c",
            b"int foo(void);\nint main(void) { return foo(); }\n",
            0o644,
        );
        std::fs::create_dir_all(fx.path("lib")).unwrap();
        std::fs::create_dir_all(fx.path("lib2")).unwrap();
        fx.gcc(&["-shared", "-fPIC", "-o", "lib2/libbar.so", "bar.c"]);
        fx.gcc(&[
            "-shared",
            "-fPIC",
            "-o",
            "lib/libfoo.so",
            "foo.c",
            "-Llib2",
            "-lbar",
        ]);
        let mut args = vec![
            "-o",
            "prog",
            "main.c",
            "-Llib",
            "-lfoo",
            "-Wl,-rpath-link,lib2",
        ];
        if rpath {
            args.push("-Wl,--disable-new-dtags");
        } else {
            args.push("-Wl,--enable-new-dtags");
        }
        args.push("-Wl,-rpath,$ORIGIN/lib:$ORIGIN/lib2");
        fx.gcc(&args);
        let prog = fx.path("prog");
        (fx, prog)
    }

    #[test]
    fn origin_rpath_is_inherited_by_dependencies() {
        let (fx, prog) = chain_fixture("rpath", true);
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert!(
            deps.files.contains(&fx.path("lib/libfoo.so")),
            "{:?}",
            deps.files
        );
        // libfoo has no search path of its own: DT_RPATH of the executable, which
        // loaded it, applies to its dependencies too.
        assert!(
            deps.files.contains(&fx.path("lib2/libbar.so")),
            "{:?}",
            deps.files
        );
        assert!(runs(&prog, None));
        assert_eq!(loaded(&deps, 1), ldd(&prog, None));
    }

    #[test]
    fn origin_runpath_applies_to_the_object_only() {
        let (fx, prog) = chain_fixture("runpath", false);
        // The real loader fails here, and so must we: DT_RUNPATH is not inherited.
        assert!(!runs(&prog, None));
        match resolve(&prog, &[], &cache()) {
            Err(ElfError::MissingLibrary {
                library,
                needed_by,
                searched,
                ..
            }) => {
                assert_eq!(library, "libbar.so");
                assert_eq!(needed_by, fx.path("lib/libfoo.so"));
                assert!(!searched.contains(&fx.path("lib2")), "{searched:?}");
                assert!(searched.contains(&PathBuf::from("/usr/lib/x86_64-linux-gnu")));
            }
            other => panic!("expected MissingLibrary, got {other:?}"),
        }
        // The profile's library path is searched for every object.
        let deps = resolve(&prog, &[fx.path("lib2")], &cache()).unwrap();
        assert!(deps.files.contains(&fx.path("lib/libfoo.so")));
        assert!(deps.files.contains(&fx.path("lib2/libbar.so")));
        let llp = fx.path("lib2");
        assert!(runs(&prog, llp.to_str()));
        assert_eq!(loaded(&deps, 1), ldd(&prog, llp.to_str()));
    }

    #[test]
    fn simple_origin_runpath() {
        let fx = Fixture::new("origin");
        fx.foo_sources();
        std::fs::create_dir_all(fx.path("lib")).unwrap();
        fx.gcc(&["-shared", "-fPIC", "-o", "lib/libfoo.so", "foo.c"]);
        fx.gcc(&[
            "-o",
            "prog",
            "main.c",
            "-Llib",
            "-lfoo",
            "-Wl,-rpath,$ORIGIN/lib",
        ]);
        let prog = fx.path("prog");
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert!(
            deps.files.contains(&fx.path("lib/libfoo.so")),
            "{:?}",
            deps.files
        );
        assert_eq!(loaded(&deps, 1), ldd(&prog, None));

        // Through a symlink, $ORIGIN is still the real directory (/proc/self/exe).
        let elsewhere = Fixture::new("origin-link");
        let link = elsewhere.path("prog-link");
        std::os::unix::fs::symlink(&prog, &link).unwrap();
        let via_link = resolve(&link, &[], &cache()).unwrap();
        assert_eq!(via_link.files[0], link);
        assert!(via_link.files.contains(&fx.path("lib/libfoo.so")));
        assert!(runs(&link, None));
    }

    #[test]
    fn lib_token_in_runpath() {
        let fx = Fixture::new("libtoken");
        fx.foo_sources();
        std::fs::create_dir_all(fx.path("lib/x86_64-linux-gnu")).unwrap();
        fx.gcc(&[
            "-shared",
            "-fPIC",
            "-o",
            "lib/x86_64-linux-gnu/libfoo.so",
            "foo.c",
        ]);
        fx.gcc(&[
            "-o",
            "prog",
            "main.c",
            "-Llib/x86_64-linux-gnu",
            "-lfoo",
            "-Wl,-rpath,${ORIGIN}/$LIB",
        ]);
        let prog = fx.path("prog");
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert!(deps
            .files
            .contains(&fx.path("lib/x86_64-linux-gnu/libfoo.so")));
        assert!(runs(&prog, None));
    }

    #[test]
    fn missing_library_is_named() {
        let fx = Fixture::new("missing");
        fx.foo_sources();
        fx.gcc(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
        fx.gcc(&["-o", "prog", "main.c", "-L.", "-lfoo"]);
        std::fs::remove_file(fx.path("libfoo.so")).unwrap();
        let prog = fx.path("prog");
        let err = resolve(&prog, &[fx.path("nowhere")], &cache()).unwrap_err();
        let msg = err.to_string();
        match &err {
            ElfError::MissingLibrary {
                library,
                needed_by,
                searched,
                wrong_class,
            } => {
                assert_eq!(library, "libfoo.so");
                assert_eq!(needed_by, &prog);
                assert_eq!(searched[0], fx.path("nowhere"));
                assert!(searched.contains(&PathBuf::from(CACHE_PATH)));
                assert!(searched.ends_with(&SYSTEM_DIRS.map(PathBuf::from)));
                assert!(wrong_class.is_empty());
            }
            other => panic!("expected MissingLibrary, got {other:?}"),
        }
        assert!(msg.contains("libfoo.so"), "{msg}");
        assert!(msg.contains(&*prog.to_string_lossy()), "{msg}");
        assert!(msg.contains("library_path"), "{msg}");
    }

    #[test]
    fn static_program_needs_only_itself() {
        let fx = Fixture::new("static");
        fx.write("s.c", b"int main(void) { return 0; }\n", 0o644);
        fx.gcc(&["-static", "-o", "s", "s.c"]);
        let prog = fx.path("s");
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert_eq!(
            deps,
            Dependencies {
                files: vec![prog.clone()],
                interpreter: None,
                main_origin: None,
            }
        );
        fx.gcc(&["-static-pie", "-o", "sp", "s.c"]);
        let deps = resolve(&fx.path("sp"), &[], &cache()).unwrap();
        assert_eq!(deps.files, vec![fx.path("sp")]);
        assert_eq!(deps.interpreter, None);
    }

    #[test]
    fn shell_script_includes_its_interpreter() {
        let fx = Fixture::new("script");
        let script = fx.write("run.sh", b"#!/bin/sh -e\necho hi\n", 0o755);
        let deps = resolve(&script, &[], &cache()).unwrap();
        assert_eq!(deps.files[0], script);
        assert_eq!(deps.files[1], Path::new("/bin/sh"));
        assert_eq!(
            deps.interpreter.as_deref(),
            Some(Path::new("/lib64/ld-linux-x86-64.so.2"))
        );
        assert!(file_names(&deps).contains(&"libc.so.6".to_string()));
        assert_eq!(loaded(&deps, 2), ldd(Path::new("/bin/sh"), None));

        // A script whose interpreter is another script.
        let outer = fx.write(
            "outer",
            format!("#!{}\n", script.display()).as_bytes(),
            0o755,
        );
        let deps2 = resolve(&outer, &[], &cache()).unwrap();
        assert_eq!(deps2.files[0], outer);
        assert_eq!(deps2.files[1..], deps.files[..]);
    }

    #[test]
    fn script_errors() {
        let fx = Fixture::new("script-err");
        let missing = fx.write("missing", b"#!/nonexistent/interp\n", 0o755);
        match resolve(&missing, &[], &cache()) {
            Err(ElfError::MissingInterpreter {
                interpreter,
                needed_by,
            }) => {
                assert_eq!(interpreter, Path::new("/nonexistent/interp"));
                assert_eq!(needed_by, missing);
            }
            other => panic!("{other:?}"),
        }
        let noexec = fx.write("noexec", b"#!/bin/sh\n", 0o644);
        assert!(matches!(
            resolve(&noexec, &[], &cache()),
            Err(ElfError::NotExecutable { .. })
        ));
        // A loop of scripts stops at the depth limit instead of recursing forever.
        let a = fx.path("a");
        let b = fx.path("b");
        fx.write("a", format!("#!{}\n", b.display()).as_bytes(), 0o755);
        fx.write("b", format!("#!{}\n", a.display()).as_bytes(), 0o755);
        assert!(matches!(
            resolve(&a, &[], &cache()),
            Err(ElfError::TooDeep { .. })
        ));
        assert!(matches!(
            resolve(&fx.path("absent"), &[], &cache()),
            Err(ElfError::NotFound { .. })
        ));
        assert!(matches!(
            resolve(&fx.dir, &[], &cache()),
            Err(ElfError::NotExecutable { .. })
        ));
    }

    #[test]
    fn shebang_parsing_follows_the_kernel() {
        let ok = |s: &[u8]| parse_shebang(s).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(ok(b"#!/bin/sh\n").unwrap(), "/bin/sh");
        assert_eq!(ok(b"#!/bin/sh").unwrap(), "/bin/sh");
        assert_eq!(
            ok(b"#! \t/usr/bin/env python3 -u\n").unwrap(),
            "/usr/bin/env"
        );
        assert_eq!(ok(b"#!/bin/bash   \nrest").unwrap(), "/bin/bash");
        assert_eq!(ok(b"#!/bin/sh\0junk\n").unwrap(), "/bin/sh");
        assert!(ok(b"#!\n").is_err());
        assert!(ok(b"#!    \n").is_err());
        assert!(ok(b"#!").is_err());
        // An interpreter name that may have been cut at 256 bytes is refused...
        let mut long = b"#!/".to_vec();
        long.extend([b'x'; 300]);
        assert!(ok(&long).is_err());
        // ...but a long argument after a complete name is fine.
        let mut long_arg = b"#!/bin/sh ".to_vec();
        long_arg.extend([b'x'; 300]);
        assert_eq!(ok(&long_arg).unwrap(), "/bin/sh");
    }

    #[test]
    fn not_elf_and_wrong_class() {
        let fx = Fixture::new("notelf");
        let garbage = fx.write("garbage", b"this is not a program\n", 0o755);
        let err = resolve(&garbage, &[], &cache()).unwrap_err();
        assert!(matches!(err, ElfError::NotElf { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("neither an ELF program nor a #! script"));
        let empty = fx.write("empty", b"", 0o755);
        assert!(matches!(
            resolve(&empty, &[], &cache()),
            Err(ElfError::NotElf { .. })
        ));
        let mut elf32 = elf_header(ELFCLASS32, goblin::elf::header::EM_386);
        elf32.resize(4096, 0);
        let p32 = fx.write("prog32", &elf32, 0o755);
        let err = resolve(&p32, &[], &cache()).unwrap_err();
        assert!(matches!(err, ElfError::WrongClass { .. }), "{err:?}");
        assert!(err.to_string().contains("only x86-64"), "{err}");
        let mut arm = elf_header(ELFCLASS64, goblin::elf::header::EM_AARCH64);
        arm.resize(4096, 0);
        let parm = fx.write("progarm", &arm, 0o755);
        assert!(matches!(
            resolve(&parm, &[], &cache()),
            Err(ElfError::WrongClass { .. })
        ));
    }

    /// The first bytes of an ELF header: enough for class and machine checks, padded
    /// with zeros (a header ld.so would then skip or reject).
    fn elf_header(class: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(ELFMAG);
        h[EI_CLASS] = class;
        h[EI_DATA] = ELFDATA2LSB;
        h[EI_VERSION] = EV_CURRENT;
        h[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h
    }

    #[test]
    fn other_architectures_are_skipped_broken_files_are_fatal() {
        let fx = Fixture::new("arch");
        fx.foo_sources();
        std::fs::create_dir_all(fx.path("good")).unwrap();
        fx.gcc(&["-shared", "-fPIC", "-o", "good/libfoo.so", "foo.c"]);
        fx.gcc(&["-o", "prog", "main.c", "-Lgood", "-lfoo"]);
        let prog = fx.path("prog");
        let mut elf32 = elf_header(ELFCLASS32, goblin::elf::header::EM_386);
        elf32.resize(128, 0);
        fx.write("i386/libfoo.so", &elf32, 0o644);
        let mut arm = elf_header(ELFCLASS64, goblin::elf::header::EM_AARCH64);
        arm.resize(128, 0);
        fx.write("arm/libfoo.so", &arm, 0o644);
        let dirs = [fx.path("i386"), fx.path("arm"), fx.path("good")];
        let deps = resolve(&prog, &dirs, &cache()).unwrap();
        assert!(deps.files.contains(&fx.path("good/libfoo.so")));
        assert!(!deps.files.contains(&fx.path("i386/libfoo.so")));
        let llp = format!(
            "{}:{}:{}",
            dirs[0].display(),
            dirs[1].display(),
            dirs[2].display()
        );
        assert!(runs(&prog, Some(&llp)));
        assert_eq!(loaded(&deps, 1), ldd(&prog, Some(&llp)));

        // Only wrong-architecture copies: reported as such.
        match resolve(&prog, &dirs[..2], &cache()) {
            Err(ElfError::MissingLibrary { wrong_class, .. }) => assert_eq!(
                wrong_class,
                vec![fx.path("i386/libfoo.so"), fx.path("arm/libfoo.so")]
            ),
            other => panic!("{other:?}"),
        }

        // A non-ELF file under the name stops ld.so ("file too short"), even though
        // a good copy comes later; we must not pretend otherwise.
        fx.write("junk/libfoo.so", b"garbage\n", 0o644);
        let junk = [fx.path("junk"), fx.path("good")];
        assert!(!runs(
            &prog,
            Some(&format!("{}:{}", junk[0].display(), junk[1].display()))
        ));
        match resolve(&prog, &junk, &cache()) {
            Err(ElfError::Malformed { path, .. }) => {
                assert_eq!(path, fx.path("junk/libfoo.so"))
            }
            other => panic!("{other:?}"),
        }
        std::fs::create_dir_all(fx.path("dir/libfoo.so")).unwrap();
        assert!(matches!(
            resolve(&prog, &[fx.path("dir"), fx.path("good")], &cache()),
            Err(ElfError::Malformed { .. })
        ));
    }

    #[test]
    fn needed_with_a_slash_is_a_path() {
        let fx = Fixture::new("slash");
        fx.foo_sources();
        // Without -soname the linker records the path it was given as DT_NEEDED.
        fx.gcc(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
        let lib = fx.path("libfoo.so");
        fx.gcc(&["-o", "prog", "main.c", lib.to_str().unwrap()]);
        let prog = fx.path("prog");
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert!(deps.files.contains(&lib), "{:?}", deps.files);
        assert_eq!(loaded(&deps, 1), ldd(&prog, None));
        std::fs::remove_file(&lib).unwrap();
        match resolve(&prog, &[], &cache()) {
            Err(ElfError::MissingLibrary { searched, .. }) => assert_eq!(searched, vec![lib]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dependency_cycles_terminate() {
        let fx = Fixture::new("cycle");
        fx.write("a.c", b"int b(void);\nint a(void) { return 0; }\n", 0o644);
        fx.write("b.c", b"int a(void);\nint b(void) { return a(); }\n", 0o644);
        fx.write(
            "main.c",
            b"int b(void);\nint main(void) { return b(); }\n",
            0o644,
        );
        fx.gcc(&["-shared", "-fPIC", "-o", "liba.so", "a.c"]);
        fx.gcc(&["-shared", "-fPIC", "-o", "libb.so", "b.c", "-L.", "-la"]);
        fx.gcc(&["-shared", "-fPIC", "-o", "liba.so", "a.c", "-L.", "-lb"]);
        fx.gcc(&[
            "-o",
            "prog",
            "main.c",
            "-L.",
            "-lb",
            "-Wl,--disable-new-dtags,-rpath,$ORIGIN",
        ]);
        let prog = fx.path("prog");
        // DT_RPATH: inherited by libb, which needs liba from the same directory.
        let deps = resolve(&prog, &[], &cache()).unwrap();
        assert!(runs(&prog, None));
        assert!(deps.files.contains(&fx.path("liba.so")));
        assert!(deps.files.contains(&fx.path("libb.so")));
        assert_eq!(loaded(&deps, 1), ldd(&prog, None));
    }

    #[test]
    fn truncated_and_mutated_files_are_errors_not_panics() {
        let fx = Fixture::new("fuzz");
        fx.foo_sources();
        std::fs::create_dir_all(fx.path("lib")).unwrap();
        fx.gcc(&["-shared", "-fPIC", "-o", "lib/libfoo.so", "foo.c"]);
        fx.gcc(&[
            "-o",
            "prog",
            "main.c",
            "-Llib",
            "-lfoo",
            "-Wl,-rpath,$ORIGIN/lib",
        ]);
        let prog_bytes = std::fs::read(fx.path("prog")).unwrap();
        let lib_bytes = std::fs::read(fx.path("lib/libfoo.so")).unwrap();
        let cache = cache();
        let target = fx.path("victim");
        let lengths = (0..1024).chain((1024..prog_bytes.len()).step_by(37));
        for len in lengths {
            fx.write("victim", &prog_bytes[..len], 0o755);
            let result = resolve(&target, &[fx.path("lib")], &cache);
            if len < 64 {
                assert!(result.is_err(), "len {len}");
            }
        }
        // Random byte corruption of the program and of the library it loads.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let (victim, original, rel) = if round % 2 == 0 {
                (&target, &prog_bytes, "victim")
            } else {
                (&fx.path("lib/libfoo.so"), &lib_bytes, "lib/libfoo.so")
            };
            let mut bytes = original.clone();
            for _ in 0..1 + next() % 8 {
                // Headers and the dynamic section live in the first pages.
                let at = (next() as usize) % bytes.len().min(16384);
                bytes[at] = next() as u8;
            }
            fx.write(rel, &bytes, 0o755);
            if round % 2 == 1 {
                fx.write("victim", &prog_bytes, 0o755);
            }
            let _ = resolve(victim, &[], &cache);
            let _ = resolve(&target, &[], &cache);
        }
    }

    #[test]
    fn dst_expansion() {
        let origin = Path::new("/opt/app/bin");
        let x = |s: &str| {
            expand_dst(s.as_bytes(), origin, Some(b"x86_64")).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(x("$ORIGIN/../lib").unwrap(), "/opt/app/bin/../lib");
        assert_eq!(x("${ORIGIN}/lib").unwrap(), "/opt/app/bin/lib");
        assert_eq!(x("/x/${ORIGIN}z").unwrap(), "/x//opt/app/binz");
        assert_eq!(x("/usr/$LIB").unwrap(), "/usr/lib/x86_64-linux-gnu");
        assert_eq!(x("/p/$PLATFORM/${PLATFORM}").unwrap(), "/p/x86_64/x86_64");
        // Not tokens: identifier continues, unknown names, unclosed braces.
        assert_eq!(x("$ORIGINAL/x").unwrap(), "$ORIGINAL/x");
        assert_eq!(x("$FOO/$").unwrap(), "$FOO/$");
        assert_eq!(x("${ORIGIN/x").unwrap(), "${ORIGIN/x");
        assert_eq!(x("$LIBS").unwrap(), "$LIBS");
        assert_eq!(expand_dst(b"/a/$PLATFORM", origin, None), None);
        assert_eq!(
            expand_dst(b"/a/$PLATFORMS", origin, None),
            Some(b"/a/$PLATFORMS".to_vec())
        );
    }

    /// Our hwcaps subdirectory list against the one this host's ld.so prints with
    /// LD_DEBUG=libs for a library it cannot find.
    #[test]
    fn hwcaps_subdirs_match_the_real_loader() {
        let fx = Fixture::new("hwcaps");
        fx.foo_sources();
        fx.gcc(&["-shared", "-fPIC", "-o", "libfoo.so", "foo.c"]);
        fx.gcc(&["-o", "prog", "main.c", "-L.", "-lfoo"]);
        std::fs::remove_file(fx.path("libfoo.so")).unwrap();
        let out = Command::new(fx.path("prog"))
            .env("LD_DEBUG", "libs")
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let line = log
            .lines()
            .find(|l| l.contains("search path=") && l.contains("(system search path)"))
            .unwrap_or_else(|| panic!("no system search path in:\n{log}"));
        let list = line.split("search path=").nth(1).unwrap();
        let list = list.split_whitespace().next().unwrap();
        let base = format!("{}/", SYSTEM_DIRS[0]);
        let mut theirs: Vec<PathBuf> = Vec::new();
        let mut dirs_seen: Vec<&str> = Vec::new();
        for entry in list.split(':') {
            let dir = SYSTEM_DIRS
                .iter()
                .find(|d| entry == **d || entry.starts_with(&format!("{d}/")))
                .unwrap_or_else(|| panic!("unexpected entry {entry}"));
            if !dirs_seen.contains(dir) {
                dirs_seen.push(dir);
            }
            let sub = if entry == SYSTEM_DIRS[0] {
                PathBuf::new()
            } else if let Some(rest) = entry.strip_prefix(&base) {
                PathBuf::from(rest)
            } else {
                continue;
            };
            if !theirs.contains(&sub) {
                theirs.push(sub);
            }
        }
        let mut ours = hwcaps_subdirs().to_vec();
        ours.push(PathBuf::new());
        assert_eq!(ours, theirs);
        assert_eq!(dirs_seen, SYSTEM_DIRS.to_vec());
    }

    /// Every ELF program in /usr/bin and /usr/sbin against `ldd`. Slow, hence
    /// ignored; run with `cargo test --lib -- --ignored elf::`.
    #[test]
    #[ignore]
    fn system_programs_match_ldd() {
        let cache = cache();
        let mut checked = 0;
        let mut mismatches = Vec::new();
        for dir in ["/usr/bin", "/usr/sbin"] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let Ok(head) = std::fs::read(&path).map(|b| b[..b.len().min(4)].to_vec()) else {
                    continue;
                };
                if head != ELFMAG {
                    continue;
                }
                let out = Command::new("ldd")
                    .arg(&path)
                    .env_remove("LD_LIBRARY_PATH")
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let ours = resolve(&path, &[], &cache);
                if !out.status.success() || text.contains("statically linked") {
                    match ours {
                        Ok(d) if d.interpreter.is_none() => {}
                        other => mismatches.push(format!("{}: static? {other:?}", path.display())),
                    }
                    continue;
                }
                checked += 1;
                let real = std::fs::canonicalize(&path).unwrap();
                match ours {
                    // ldd takes $ORIGIN from the path it is given, a real exec from
                    // the resolved one; give ldd the resolved one.
                    Ok(deps) if loaded(&deps, 1) == ldd(&real, None) => {}
                    other => mismatches.push(format!("{}: {other:?}", path.display())),
                }
            }
        }
        assert!(
            mismatches.is_empty(),
            "{checked} checked:\n{}",
            mismatches.join("\n")
        );
        eprintln!("{checked} dynamic programs match ldd");
        assert!(checked > 10);
    }
}
