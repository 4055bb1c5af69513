//! The file cache: files taken out of one command's work dir and put into another's,
//! by id, for as long as the cache lives (one `moat exec`, one `moat batch`, or as long
//! as a library caller keeps it). Bounded in bytes: a file that does not fit is a
//! `file_error` of the command that made it, never an unbounded heap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A cached file: its bytes and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// Its bytes, shared by every command that puts it in.
    pub data: Arc<[u8]>,
    /// Its permission bits.
    pub mode: u32,
}

/// Files by id, shared between threads.
#[derive(Debug)]
pub struct FileCache {
    inner: Mutex<Inner>,
    capacity: u64,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<String, Entry>,
    bytes: u64,
    next: u64,
}

#[derive(Debug)]
struct Entry {
    file: Cached,
    /// The name it was stored under (a file service lists files by it).
    name: String,
    stored: std::time::Instant,
}

/// Why a file could not be cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cache is full: {size} bytes do not fit in the {free} left of its {capacity}")]
pub struct CacheFull {
    /// The file's size.
    pub size: u64,
    /// What was left.
    pub free: u64,
    /// The cache's capacity.
    pub capacity: u64,
}

impl Default for FileCache {
    fn default() -> FileCache {
        FileCache::new(FileCache::DEFAULT_CAPACITY)
    }
}

impl FileCache {
    /// The capacity of a cache made with `default()` (`moat batch` unless told).
    pub const DEFAULT_CAPACITY: u64 = 1 << 30;

    /// An empty cache holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> FileCache {
        FileCache {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map half-changed: every change is one
        // insert or remove.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a file under `id`, or under a fresh id when `id` is None; returns the id.
    /// A file already under that id is replaced.
    pub fn insert(
        &self,
        id: Option<&str>,
        data: Arc<[u8]>,
        mode: u32,
    ) -> Result<String, CacheFull> {
        let mut inner = self.lock();
        let id = match id {
            Some(id) => id.to_string(),
            None => {
                inner.next += 1;
                format!("moat-{:016x}-{}", random_word(), inner.next)
            }
        };
        let old = inner.files.get(&id).map_or(0, |c| c.file.data.len() as u64);
        let size = data.len() as u64;
        let free = self.capacity.saturating_sub(inner.bytes - old);
        if size > free {
            return Err(CacheFull {
                size,
                free,
                capacity: self.capacity,
            });
        }
        inner.bytes = inner.bytes - old + size;
        inner.files.insert(
            id.clone(),
            Entry {
                file: Cached { data, mode },
                name: String::new(),
                stored: std::time::Instant::now(),
            },
        );
        Ok(id)
    }

    /// The file under `id`.
    pub fn get(&self, id: &str) -> Option<Cached> {
        self.lock().files.get(id).map(|e| e.file.clone())
    }

    /// Names the file under `id` (what [`FileCache::list`] shows for it).
    pub fn name(&self, id: &str, name: &str) {
        if let Some(e) = self.lock().files.get_mut(id) {
            e.name = name.to_string();
        }
    }

    /// Every id with the name it was given (empty when none was).
    pub fn list(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .lock()
            .files
            .iter()
            .map(|(id, e)| (id.clone(), e.name.clone()))
            .collect();
        all.sort();
        all
    }

    /// The name the file under `id` was given.
    pub fn name_of(&self, id: &str) -> Option<String> {
        self.lock().files.get(id).map(|e| e.name.clone())
    }

    /// Removes every file stored longer ago than `ttl`; how many went.
    pub fn expire(&self, ttl: std::time::Duration) -> usize {
        let mut inner = self.lock();
        let now = std::time::Instant::now();
        let old: Vec<String> = inner
            .files
            .iter()
            .filter(|(_, e)| now.duration_since(e.stored) > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &old {
            if let Some(e) = inner.files.remove(id) {
                inner.bytes -= e.file.data.len() as u64;
            }
        }
        old.len()
    }

    /// Removes the file under `id`; whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        let mut inner = self.lock();
        match inner.files.remove(id) {
            Some(c) => {
                inner.bytes -= c.file.data.len() as u64;
                true
            }
            None => false,
        }
    }

    /// How many files and bytes it holds.
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.files.len(), inner.bytes)
    }
}

/// 64 random bits from the kernel (a clock reading if it has none to give), so ids
/// from two caches or two runs of moat do not look alike.
fn random_word() -> u64 {
    let mut word = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the array.
    let n = unsafe { libc::getrandom(word.as_mut_ptr().cast(), word.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(word);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sizes_and_the_cap() {
        let cache = FileCache::new(10);
        let a = cache.insert(None, b"12345".to_vec().into(), 0o755).unwrap();
        let b = cache.insert(None, b"123".to_vec().into(), 0o644).unwrap();
        assert_ne!(a, b);
        assert_eq!(cache.get(&a).unwrap().mode, 0o755);
        assert_eq!(cache.usage(), (2, 8));
        let full = cache
            .insert(Some("c"), b"123".to_vec().into(), 0)
            .unwrap_err();
        assert_eq!((full.size, full.free, full.capacity), (3, 2, 10));
        // Replacing counts the old file out first.
        cache
            .insert(Some(&a), b"1234567".to_vec().into(), 0)
            .unwrap();
        assert_eq!(cache.usage(), (2, 10));
        assert!(cache.remove(&b));
        assert!(!cache.remove(&b));
        assert_eq!(cache.usage(), (1, 7));
        assert!(cache.get("nope").is_none());
        cache.name(&a, "a.out");
        assert_eq!(cache.list(), [(a.clone(), "a.out".to_string())]);
        assert_eq!(cache.name_of(&a).as_deref(), Some("a.out"));
        assert_eq!(cache.expire(std::time::Duration::from_secs(60)), 0);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(cache.expire(std::time::Duration::from_millis(1)), 1);
        assert_eq!(cache.usage(), (0, 0));
    }
}
