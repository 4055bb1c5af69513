//! Reading an ELF file the way the kernel and ld.so read it: the header, the program
//! headers, PT_INTERP and the dynamic array, through bounded reads only.

use super::error::{io_error, malformed, ElfError};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

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

/// `BINPRM_BUF_SIZE`: the kernel only looks at this much of a script's first line.
pub(super) const BINPRM_BUF_SIZE: usize = 256;
/// Kernel's bound on PT_INTERP (`PATH_MAX`).
pub(super) const MAX_INTERP_LEN: u64 = 4096;
/// Kernel's bound on the program header table.
pub(super) const MAX_PHDR_BYTES: u64 = 65536;
/// A real dynamic array has a few dozen entries; 64 Ki entries is generous and
/// keeps a hostile p_filesz from turning into a huge read.
pub(super) const MAX_DYNAMIC_BYTES: u64 = 1 << 20;
/// Longest DT_NEEDED / DT_RPATH / DT_RUNPATH / DT_SONAME string we read.
pub(super) const MAX_STRING_LEN: u64 = 64 << 10;

pub(super) const SIZEOF_EHDR64: usize = 64;
pub(super) const SIZEOF_PHDR64: u16 = 56;
/// glibc 2.36 `LIBC_ABI_MAX`: EI_ABIVERSION values ld.so accepts for ELFOSABI_GNU.
pub(super) const LIBC_ABI_MAX: u8 = 4;

/// Not exported by goblin.
pub(super) const DT_AUXILIARY: u64 = 0x7fff_fffd;
pub(super) const DT_FILTER: u64 = 0x7fff_ffff;

/// Opens the program or a `#!` interpreter with the checks execve makes: it must
/// exist, be a regular file and carry an execute bit.
pub(super) fn open_program(path: &Path, script: Option<&Path>) -> Result<File, ElfError> {
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
pub(super) fn open_nonblocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Up to `len` bytes from the start; short files give a short buffer.
pub(super) fn read_prefix(file: &File, path: &Path, len: usize) -> Result<Vec<u8>, ElfError> {
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

pub(super) fn read_range(
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
pub(super) fn parse_shebang(head: &[u8]) -> Result<Vec<u8>, String> {
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
pub(super) fn check_program_header(path: &Path, head: &[u8]) -> Result<Header, ElfError> {
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

pub(super) fn parse_header(path: &Path, head: &[u8]) -> Result<Header, ElfError> {
    if head.len() < SIZEOF_EHDR64 {
        return Err(malformed(path, "file too short"));
    }
    goblin::elf::Elf::parse_header(&head[..SIZEOF_EHDR64])
        .map_err(|e| malformed(path, format!("bad ELF header: {e}")))
}

pub(super) fn check_common(path: &Path, ehdr: &Header) -> Result<(), ElfError> {
    if ehdr.e_phentsize != SIZEOF_PHDR64 {
        return Err(malformed(
            path,
            "ELF file's phentsize not the expected size",
        ));
    }
    Ok(())
}

/// The outcome of ld.so's `open_verify` on a candidate library.
pub(super) enum Verified {
    /// Another ELF class or machine: ld.so silently keeps searching.
    OtherArch,
    Usable(Header),
}

/// `open_verify`: which header defects make ld.so skip a file and which make it
/// give up loading altogether.
pub(super) fn verify_library_header(path: &Path, head: &[u8]) -> Result<Verified, ElfError> {
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
pub(super) enum DepKind {
    Needed,
    /// DT_FILTER: must load, like DT_NEEDED.
    Filter,
    /// DT_AUXILIARY: ld.so ignores every failure to load it.
    Auxiliary,
}

/// What ld.so reads from an object before mapping it.
#[derive(Debug, Clone, Default)]
pub(super) struct ElfInfo {
    pub(super) has_load: bool,
    /// Some when the object has PT_DYNAMIC, with its p_filesz.
    pub(super) dynamic_size: Option<u64>,
    pub(super) interp: Option<Vec<u8>>,
    pub(super) deps: Vec<(DepKind, Vec<u8>)>,
    pub(super) soname: Option<Vec<u8>>,
    pub(super) rpath: Option<Vec<u8>>,
    pub(super) runpath: Option<Vec<u8>>,
    pub(super) nodeflib: bool,
}

/// Reads program headers, PT_INTERP and the dynamic array of an x86-64 ELF whose
/// header has been checked.
pub(super) fn parse_elf(file: &File, path: &Path, ehdr: &Header) -> Result<ElfInfo, ElfError> {
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
pub(super) fn vaddr_to_offset(loads: &[&ProgramHeader], vaddr: u64) -> Option<(u64, u64)> {
    loads.iter().find_map(|ph| {
        let delta = vaddr.checked_sub(ph.p_vaddr)?;
        if delta < ph.p_filesz {
            Some((ph.p_offset.checked_add(delta)?, ph.p_filesz - delta))
        } else {
            None
        }
    })
}

pub(super) struct StrTab<'a> {
    pub(super) file: &'a File,
    pub(super) path: &'a Path,
    pub(super) offset: u64,
    pub(super) size: u64,
}

impl StrTab<'_> {
    /// The NUL-terminated string at `index`, read in small pieces: string tables of
    /// big libraries run to megabytes and we need a handful of entries.
    pub(super) fn get(&self, index: u64) -> Result<Vec<u8>, ElfError> {
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
pub(super) fn open_interpreter(path: &Path, program: &Path) -> Result<ElfInfo, ElfError> {
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
