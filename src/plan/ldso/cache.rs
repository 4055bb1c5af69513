//! Reader for glibc's `/etc/ld.so.cache`.
//!
//! ld.so consults this cache after DT_RPATH, LD_LIBRARY_PATH and DT_RUNPATH and
//! before its built-in directories, so [`crate::plan::ldso`] needs it to find the same files
//! the loader will open. The format is glibc's private one; the layout below follows
//! `sysdeps/generic/dl-cache.h` (glibc 2.36):
//!
//! ```text
//! new format ("glibc-ld.so.cache1.1"), all integers in host byte order:
//!   0  magic "glibc-ld.so.cache" + version "1.1"   20 bytes
//!  20  nlibs: u32
//!  24  len_strings: u32
//!  28  flags: u8 (bits 0-1: 0 unknown, 1 invalid, 2 little-endian, 3 big-endian)
//!  29  padding: [u8; 3]
//!  32  extension_offset: u32
//!  36  unused: [u32; 3]
//!  48  entries: nlibs x { flags: i32, key: u32, value: u32, osversion: u32, hwcap: u64 }
//!      then the string table; key/value are offsets from the start of this header.
//!
//! old format ("ld.so-1.7.0"), written in front of the new one by old ldconfigs:
//!   0  magic "ld.so-1.7.0"  11 bytes, padded to 12
//!  12  nlibs: u32
//!  16  entries: nlibs x { flags: i32, key: u32, value: u32 }
//!      then either the new format at the next 8-byte boundary, or (old-only files)
//!      the string table, with offsets counted from the end of the entries.
//! ```
//!
//! Every offset read from the file is checked before use: the cache is a file that a
//! hostile or broken system may have corrupted, and a panic here would take the jail
//! planner down with it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where glibc's loader looks for its cache (`LD_SO_CACHE`).
pub const DEFAULT_PATH: &str = "/etc/ld.so.cache";

const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_HEADER_LEN: usize = 16;
const OLD_ENTRY_LEN: usize = 12;
const NEW_HEADER_LEN: usize = 48;
const NEW_ENTRY_LEN: usize = 24;
/// `__alignof__ (struct cache_file_new)` on x86-64: the u64 hwcap field forces 8.
const NEW_ALIGN: usize = 8;

/// `FLAG_ELF_LIBC6`: a glibc (libc6) library; on i386 this alone is the default id.
pub const FLAG_ELF_LIBC6: i32 = 0x0003;
/// `FLAG_ELF`: very old i386 entries that glibc still accepts for 32-bit lookups.
const FLAG_ELF: i32 = 0x0001;
/// `FLAG_X8664_LIB64`: the library lives in a 64-bit x86-64 directory.
pub const FLAG_X8664_LIB64: i32 = 0x0300;
/// `_DL_CACHE_DEFAULT_ID` of x86-64 glibc: the only flags its ld.so accepts.
pub const FLAGS_X86_64: i32 = FLAG_ELF_LIBC6 | FLAG_X8664_LIB64;

/// `DL_CACHE_HWCAP_EXTENSION`: the entry describes a `glibc-hwcaps/<subdir>` variant
/// of a library; ld.so only picks it when the CPU supports that ISA level.
const HWCAP_EXTENSION: u64 = 1 << 62;

/// The cache refuses to be larger than this; real caches are a few hundred KiB and
/// reading an unbounded file into memory on the planner's behalf is not acceptable.
const MAX_CACHE_SIZE: u64 = 256 << 20;

/// One `file_entry`: a soname, the path ldconfig found it at, and the ABI flags.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: Box<[u8]>,
    path: PathBuf,
    flags: i32,
    hwcap: u64,
}

/// The parsed cache, entries kept in file order (which is the order ld.so walks
/// entries of equal name in, so "first match wins" keeps its meaning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdCache {
    entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum LdCacheError {
    #[error("cannot read the loader cache {path}: {source}; check that it is readable, or regenerate it with ldconfig")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the loader cache is malformed: {0}; regenerate it with ldconfig")]
    Malformed(String),
}

fn malformed(msg: impl Into<String>) -> LdCacheError {
    LdCacheError::Malformed(msg.into())
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let raw = bytes.get(at..end)?;
    Some(u32::from_ne_bytes(raw.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    let raw = bytes.get(at..end)?;
    Some(u64::from_ne_bytes(raw.try_into().ok()?))
}

/// A NUL-terminated string at `offset` inside `table`; `None` if the offset or the
/// terminator lies outside it.
fn c_string(table: &[u8], offset: u32) -> Option<&[u8]> {
    let rest = table.get(usize::try_from(offset).ok()?..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    Some(&rest[..len])
}

/// Byte range `[start, start + count * size)` if it fits in `len`.
fn table_end(start: usize, count: u32, size: usize, len: usize) -> Option<usize> {
    let bytes = usize::try_from(count).ok()?.checked_mul(size)?;
    let end = start.checked_add(bytes)?;
    (end <= len).then_some(end)
}

impl LdCache {
    /// Reads [`DEFAULT_PATH`]. A system without a cache is legitimate (ld.so then
    /// searches its default directories), so a missing file yields an empty cache.
    pub fn load() -> Result<LdCache, LdCacheError> {
        Self::load_from(Path::new(DEFAULT_PATH))
    }

    /// Like [`LdCache::load`] for another file (a chroot's cache, or a test).
    pub fn load_from(path: &Path) -> Result<LdCache, LdCacheError> {
        use std::io::Read;
        let io_err = |source| LdCacheError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LdCache::default()),
            Err(e) => return Err(io_err(e)),
        };
        // Room for the whole file up front, so it comes in one read rather than a
        // read-to-end doubling from 32 bytes (eleven calls for Debian's 33 KiB cache).
        // Not mapped: a file truncated under a mapping would end moat with SIGBUS.
        let hint = file
            .metadata()
            .map_or(0, |m| m.len().min(MAX_CACHE_SIZE) + 1);
        let mut bytes = Vec::with_capacity(hint as usize);
        // Read one byte past the limit so an oversized file is detected without
        // trusting its metadata (it may grow while we read).
        file.take(MAX_CACHE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_CACHE_SIZE {
            return Err(malformed(format!(
                "{} is larger than {} MiB",
                path.display(),
                MAX_CACHE_SIZE >> 20
            )));
        }
        Self::parse(&bytes)
    }

    /// Parses a cache image. Pure: never touches the file system, never panics.
    pub fn parse(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
        if bytes.starts_with(MAGIC_NEW) {
            return Self::parse_new(bytes);
        }
        if !bytes.starts_with(MAGIC_OLD) {
            return Err(malformed(
                "unknown header (expected \"glibc-ld.so.cache1.1\" or \"ld.so-1.7.0\")",
            ));
        }
        let nlibs = read_u32(bytes, 12).ok_or_else(|| malformed("truncated old-format header"))?;
        let entries_end =
            table_end(OLD_HEADER_LEN, nlibs, OLD_ENTRY_LEN, bytes.len()).ok_or_else(|| {
                malformed(format!("old-format table of {nlibs} entries is truncated"))
            })?;
        // glibc ignores the old table whenever a new-format cache follows it: only the
        // new one carries the x86-64 flags and hwcap data its lookup needs.
        let new_at = entries_end.checked_next_multiple_of(NEW_ALIGN);
        if let Some(new) = new_at.and_then(|at| bytes.get(at..)) {
            if new.starts_with(MAGIC_NEW) {
                return Self::parse_new(new);
            }
        }
        let strings = &bytes[entries_end..];
        let mut entries = Vec::with_capacity(nlibs as usize);
        for i in 0..nlibs as usize {
            let at = OLD_HEADER_LEN + i * OLD_ENTRY_LEN;
            let (flags, key, value) = match (
                read_u32(bytes, at),
                read_u32(bytes, at + 4),
                read_u32(bytes, at + 8),
            ) {
                (Some(f), Some(k), Some(v)) => (f as i32, k, v),
                _ => return Err(malformed(format!("old-format entry {i} is truncated"))),
            };
            entries.push(Self::entry(strings, i, flags, key, value, 0)?);
        }
        Ok(LdCache { entries })
    }

    /// `bytes` starts at the new-format header; string offsets count from there.
    fn parse_new(bytes: &[u8]) -> Result<LdCache, LdCacheError> {
        if bytes.len() < NEW_HEADER_LEN {
            return Err(malformed("truncated header"));
        }
        let nlibs = read_u32(bytes, 20).ok_or_else(|| malformed("truncated header"))?;
        // A cache written for the other byte order would decode as nonsense; glibc
        // refuses it too (cache_file_new_matches_endian).
        let endian = bytes[28] & 3;
        let native = if cfg!(target_endian = "little") { 2 } else { 3 };
        if endian != 0 && endian != native {
            return Err(malformed(format!(
                "byte-order flag {endian} does not match this host"
            )));
        }
        table_end(NEW_HEADER_LEN, nlibs, NEW_ENTRY_LEN, bytes.len())
            .ok_or_else(|| malformed(format!("table of {nlibs} entries is truncated")))?;
        let mut entries = Vec::with_capacity(nlibs as usize);
        for i in 0..nlibs as usize {
            let at = NEW_HEADER_LEN + i * NEW_ENTRY_LEN;
            let (flags, key, value, hwcap) = match (
                read_u32(bytes, at),
                read_u32(bytes, at + 4),
                read_u32(bytes, at + 8),
                read_u64(bytes, at + 16),
            ) {
                (Some(f), Some(k), Some(v), Some(h)) => (f as i32, k, v, h),
                _ => return Err(malformed(format!("entry {i} is truncated"))),
            };
            entries.push(Self::entry(bytes, i, flags, key, value, hwcap)?);
        }
        Ok(LdCache { entries })
    }

    fn entry(
        strings: &[u8],
        index: usize,
        flags: i32,
        key: u32,
        value: u32,
        hwcap: u64,
    ) -> Result<Entry, LdCacheError> {
        let name = c_string(strings, key).ok_or_else(|| {
            malformed(format!(
                "entry {index}: name offset {key:#x} is out of bounds"
            ))
        })?;
        let path = c_string(strings, value).ok_or_else(|| {
            malformed(format!(
                "entry {index}: path offset {value:#x} is out of bounds"
            ))
        })?;
        Ok(Entry {
            name: name.into(),
            path: PathBuf::from(OsStr::from_bytes(path)),
            flags,
            hwcap,
        })
    }

    /// Number of entries (all ABIs).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The path ld.so would take from the cache for `soname`, for an x86-64
    /// requester (`x86_64 == true`) or an i386 one.
    #[cfg(test)]
    pub fn lookup(&self, soname: &str, x86_64: bool) -> Option<&Path> {
        self.lookup_os(OsStr::new(soname), x86_64)
    }

    /// [`LdCache::lookup`] for a soname that need not be UTF-8 (DT_NEEDED strings
    /// are bytes).
    pub fn lookup_os(&self, soname: &OsStr, x86_64: bool) -> Option<&Path> {
        let name = soname.as_bytes();
        // glibc's x86-64 loader accepts exactly its default id; the generic (i386)
        // one also accepts bare FLAG_ELF but keeps looking for a FLAG_ELF_LIBC6 entry.
        let mut fallback = None;
        for e in self.entries.iter().filter(|e| &*e.name == name) {
            // glibc-hwcaps variants are only right on CPUs of that ISA level; the
            // baseline copy is what every CPU can load, so it is what we return.
            if e.hwcap & HWCAP_EXTENSION != 0 {
                continue;
            }
            if x86_64 {
                if e.flags == FLAGS_X86_64 {
                    return Some(&e.path);
                }
            } else if e.flags == FLAG_ELF_LIBC6 {
                return Some(&e.path);
            } else if e.flags == FLAG_ELF && fallback.is_none() {
                fallback = Some(e.path.as_path());
            }
        }
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new-format image built by hand: (name, path, flags, hwcap) per entry.
    fn build_new(entries: &[(&str, &str, i32, u64)]) -> Vec<u8> {
        let table_len = NEW_HEADER_LEN + entries.len() * NEW_ENTRY_LEN;
        let mut strings = Vec::new();
        let mut offsets = Vec::new();
        for (name, path, _, _) in entries {
            let key = table_len + strings.len();
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
            let value = table_len + strings.len();
            strings.extend_from_slice(path.as_bytes());
            strings.push(0);
            offsets.push((key as u32, value as u32));
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC_NEW);
        out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
        out.extend_from_slice(&[2, 0, 0, 0]);
        out.extend_from_slice(&[0; 16]);
        assert_eq!(out.len(), NEW_HEADER_LEN);
        for ((_, _, flags, hwcap), (key, value)) in entries.iter().zip(&offsets) {
            out.extend_from_slice(&flags.to_ne_bytes());
            out.extend_from_slice(&key.to_ne_bytes());
            out.extend_from_slice(&value.to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&hwcap.to_ne_bytes());
        }
        out.extend_from_slice(&strings);
        out
    }

    const SAMPLE: &[(&str, &str, i32, u64)] = &[
        (
            "libz.so.1",
            "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1",
            FLAGS_X86_64,
            HWCAP_EXTENSION,
        ),
        (
            "libz.so.1",
            "/usr/lib/i386-linux-gnu/libz.so.1",
            FLAG_ELF_LIBC6,
            0,
        ),
        ("libz.so.1", "/usr/libx32/libz.so.1", 0x0803, 0),
        (
            "libz.so.1",
            "/usr/lib/x86_64-linux-gnu/libz.so.1",
            FLAGS_X86_64,
            0,
        ),
        ("libz.so.1", "/opt/second/libz.so.1", FLAGS_X86_64, 0),
        (
            "libold.so",
            "/usr/lib/i386-linux-gnu/libold.so",
            FLAG_ELF,
            0,
        ),
    ];

    #[test]
    fn real_cache_has_libc() {
        let cache = LdCache::load().expect("parse /etc/ld.so.cache");
        if !Path::new(DEFAULT_PATH).exists() {
            assert!(cache.is_empty());
            return;
        }
        let libc = cache.lookup("libc.so.6", true).expect("libc.so.6 in cache");
        assert!(libc.is_absolute(), "{}", libc.display());
        assert!(libc.exists(), "{}", libc.display());
        assert!(cache.lookup("libdoes-not-exist.so.42", true).is_none());
    }

    #[test]
    fn hand_built_new_format() {
        let cache = LdCache::parse(&build_new(SAMPLE)).unwrap();
        assert_eq!(cache.len(), SAMPLE.len());
        // The hwcaps variant is skipped, the i386/x32 entries have the wrong flags,
        // and the first baseline x86-64 entry wins over a later one.
        assert_eq!(
            cache.lookup("libz.so.1", true),
            Some(Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1"))
        );
        assert_eq!(
            cache.lookup("libz.so.1", false),
            Some(Path::new("/usr/lib/i386-linux-gnu/libz.so.1"))
        );
        assert_eq!(cache.lookup("libold.so", true), None);
        assert_eq!(
            cache.lookup("libold.so", false),
            Some(Path::new("/usr/lib/i386-linux-gnu/libold.so"))
        );
        assert_eq!(cache.lookup("libz.so", true), None);
    }

    #[test]
    fn old_header_followed_by_new() {
        let new = build_new(SAMPLE);
        let mut image = Vec::new();
        image.extend_from_slice(MAGIC_OLD);
        image.push(0);
        image.extend_from_slice(&1u32.to_ne_bytes());
        // One old entry whose offsets are meaningless to the new table; glibc
        // ignores it, and so must we.
        image.extend_from_slice(&FLAG_ELF_LIBC6.to_ne_bytes());
        image.extend_from_slice(&0xffff_fff0u32.to_ne_bytes());
        image.extend_from_slice(&0xffff_fff0u32.to_ne_bytes());
        assert_eq!(image.len(), 28);
        image.resize(32, 0);
        image.extend_from_slice(&new);
        let cache = LdCache::parse(&image).unwrap();
        assert_eq!(cache, LdCache::parse(&new).unwrap());
    }

    #[test]
    fn old_format_only() {
        let mut image = Vec::new();
        image.extend_from_slice(MAGIC_OLD);
        image.push(0);
        image.extend_from_slice(&1u32.to_ne_bytes());
        image.extend_from_slice(&FLAG_ELF_LIBC6.to_ne_bytes());
        image.extend_from_slice(&0u32.to_ne_bytes());
        image.extend_from_slice(&8u32.to_ne_bytes());
        image.extend_from_slice(b"libx.so\0/lib/libx.so\0");
        let cache = LdCache::parse(&image).unwrap();
        assert_eq!(
            cache.lookup("libx.so", false),
            Some(Path::new("/lib/libx.so"))
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let image = build_new(SAMPLE);
        for len in 0..image.len() {
            // Cutting inside the string table loses a terminator or an offset
            // target; cutting earlier loses the header or an entry.
            assert!(LdCache::parse(&image[..len]).is_err(), "len {len}");
        }
        if let Ok(real) = std::fs::read(DEFAULT_PATH) {
            for len in (0..real.len()).step_by(97) {
                let _ = LdCache::parse(&real[..len]);
            }
        }
    }

    #[test]
    fn hostile_headers() {
        assert!(LdCache::parse(b"").is_err());
        assert!(LdCache::parse(b"\x7fELF garbage garbage garbage").is_err());
        // An entry count that would overflow or exceed the file.
        let mut huge = build_new(&[]);
        huge[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(LdCache::parse(&huge).is_err());
        let mut old = MAGIC_OLD.to_vec();
        old.push(0);
        old.extend_from_slice(&u32::MAX.to_ne_bytes());
        assert!(LdCache::parse(&old).is_err());
        // String offsets past the end.
        let mut bad = build_new(&SAMPLE[..1]);
        bad[NEW_HEADER_LEN + 4..NEW_HEADER_LEN + 8].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(LdCache::parse(&bad).is_err());
        // The other byte order.
        let mut swapped = build_new(SAMPLE);
        swapped[28] = 3;
        assert!(LdCache::parse(&swapped).is_err());
        // Pseudo-random garbage after a valid magic.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut buf = MAGIC_NEW.to_vec();
            let len = (state % 300) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(state as u8);
            }
            let _ = LdCache::parse(&buf);
        }
    }

    #[test]
    fn missing_file_is_empty_cache() {
        let cache = LdCache::load_from(Path::new("/nonexistent/ld.so.cache")).unwrap();
        assert!(cache.is_empty());
    }
}
