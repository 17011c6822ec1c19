//! The file cache: rendered response headers with small files' bytes, or
//! with an open descriptor of a larger file, kept so that a hit costs one
//! `stat` and a write (of the bytes, or with `sendfile` from the
//! descriptor): no open, no `fstat`, no close, no read.
//!
//! An entry is keyed by the request path as the client spelled it and, when
//! precompressed files are on, its `Accept-Encoding` value: together they
//! decide which file the slow path picked. Only a plain `200` of a whole
//! regular file is cached, and only after the slow path (with every safety
//! check) chose that file.
//!
//! Nothing stale is served:
//! - every hit `stat`s the file again (relative to the root) and is used only
//!   if device, inode, size, modification and change times all match what
//!   was read; a file edited, replaced, truncated or removed misses at once;
//! - a file changed less than [`CacheOptions::settle`] before it was read is
//!   not cached, so a second write within the same file-system timestamp
//!   tick cannot hide behind an unchanged `stat` (git's "racily clean"
//!   problem; Linux stamps files from a clock that ticks every 1-10 ms, or
//!   finer since 6.13 once a timestamp has been looked at);
//! - what a `stat` of the file cannot see (a precompressed sibling or an
//!   earlier index file created next to it) changes its directory: at most
//!   a `RECHECK` (a second) after it was last looked at, a hit also `stat`s
//!   the directory, and is used only if it is as it was when the entry was
//!   built, and had settled before the request that built it began.
//!
//! The same checks keep a held descriptor honest: the `stat` of the path
//! names the file the descriptor is open on (device and inode) as it was
//! (size and times). A descriptor the `stat` finds stale, or that no
//! request used for [`INACTIVE`], is closed, so that the space of a
//! deleted file is given back.
//!
//! The cache holds at most `max_bytes` (bodies, headers and keys) and
//! `max_open` descriptors, evicting the least recently used entries. Its
//! lock is never held across I/O.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::hash::BuildHasher;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use foldhash::fast::RandomState;

use super::conditional::Validators;
use super::siblings::DirStamp;
use crate::response::{Body, Rendered};
use crate::sys;

/// How long after its directory was last found unchanged an entry is used
/// on the strength of its file's `stat` alone.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);
/// Files larger than this are not held open: sending one costs far more
/// than opening it, and a held descriptor keeps a deleted file's space in
/// use until it is closed.
pub(crate) const HOLD_MAX: u64 = 1024 * 1024;
/// A held descriptor no request used for this long is closed.
pub(crate) const INACTIVE: Duration = Duration::from_secs(60);
/// How often inserting looks for such descriptors.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// How many keys missed once the admission rule remembers (8 bytes each).
const DOORKEEPER: usize = 4096;

/// The admission rule's memory for a store that is nearly full (the file
/// cache, and on-the-fly compression's store): the keys seen once
/// recently, so that one seen a second time may go in. When it holds
/// `capacity` keys it starts again, so only repeats close together count:
/// a scan wider than the store never repeats within it, a hot set does.
#[derive(Debug)]
pub(crate) struct Doorkeeper<K> {
    seen: HashSet<K, RandomState>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq> Doorkeeper<K> {
    pub(crate) fn new(capacity: usize) -> Doorkeeper<K> {
        Doorkeeper {
            seen: HashSet::default(),
            capacity,
        }
    }

    /// Whether `key` was seen once already (and forgets it); if not,
    /// remembers it and says no.
    pub(crate) fn seen_before(&mut self, key: K) -> bool {
        if self.seen.remove(&key) {
            return true;
        }
        if self.seen.len() >= self.capacity {
            self.seen.clear();
        }
        self.seen.insert(key);
        false
    }
}
/// What an entry costs beyond its body, headers and key.
const ENTRY_OVERHEAD: usize = 256;

/// The file cache's settings, built with chained setters from the
/// defaults (64 MiB in all, files up to 4 KiB in memory, up to 16,384
/// larger files held open, 20 ms to settle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    pub(crate) max_bytes: usize,
    pub(crate) max_file: u64,
    pub(crate) max_open: usize,
    pub(crate) settle: Duration,
}

impl CacheOptions {
    /// The default of [`CacheOptions::max_bytes`]: 64 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
    /// The default of [`CacheOptions::max_file`]: 4 KiB. Above it,
    /// `sendfile` from a held descriptor costs the server less than
    /// copying the bytes out of memory (docs/performance.md#whole-site).
    pub const DEFAULT_MAX_FILE: u64 = 4 * 1024;
    /// The default of [`CacheOptions::max_open`]: 16,384.
    pub const DEFAULT_MAX_OPEN: usize = 16 * 1024;

    /// The defaults.
    pub fn new() -> CacheOptions {
        CacheOptions::default()
    }

    /// The most the cache holds, in bytes (bodies, headers, keys and a
    /// fixed overhead each); the least recently used entries go first.
    pub fn max_bytes(mut self, bytes: usize) -> CacheOptions {
        self.max_bytes = bytes;
        self
    }

    /// Files up to this size are kept in memory; larger ones go out with
    /// `sendfile`, from a descriptor the cache holds open (see
    /// [`max_open`](CacheOptions::max_open)).
    pub fn max_file(mut self, bytes: u64) -> CacheOptions {
        self.max_file = bytes;
        self
    }

    /// The most descriptors of files larger than
    /// [`max_file`](CacheOptions::max_file) (and at most 1 MiB) the cache
    /// holds open, so that a hit skips the open, `fstat` and close; 0
    /// holds none. The cache
    /// never holds more than a quarter of the process's limit on open
    /// descriptors (`ulimit -n`), read when the cache is made. A held
    /// descriptor no request used for a minute is closed.
    pub fn max_open(mut self, descriptors: usize) -> CacheOptions {
        self.max_open = descriptors;
        self
    }

    /// A file changed less than this before it is read is not cached: two
    /// writes within one timestamp tick would look alike. Two ticks of the
    /// coarsest kernel clock (100 Hz) by default.
    pub fn settle(mut self, d: Duration) -> CacheOptions {
        self.settle = d;
        self
    }
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_bytes: CacheOptions::DEFAULT_MAX_BYTES,
            max_file: CacheOptions::DEFAULT_MAX_FILE,
            max_open: CacheOptions::DEFAULT_MAX_OPEN,
            settle: Duration::from_millis(20),
        }
    }
}

/// What identifies the content of a file: if none of it changed, neither
/// did the bytes (given the settle rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    pub(crate) fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn of_stat(st: &libc::stat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// Whether the file last changed at least `settle` before `now`, so that
    /// any later change gets a later timestamp.
    pub(crate) fn settled(&self, now: SystemTime, settle: Duration) -> bool {
        let changed = self.mtime.max(self.ctime);
        let changed = UNIX_EPOCH
            + Duration::new(
                changed.0.max(0) as u64,
                changed.1.clamp(0, 999_999_999) as u32,
            );
        now.duration_since(changed).is_ok_and(|age| age >= settle)
    }
}

/// What a cached response's body comes from.
#[derive(Debug, Clone)]
pub(crate) enum Held {
    /// A small file's bytes.
    Bytes(Bytes),
    /// A larger file, open.
    File(Arc<File>),
}

/// A cached `200` response.
#[derive(Debug)]
pub(crate) struct Entry {
    path: Box<str>,
    accept: Box<[u8]>,
    /// The file served, relative to the root, `stat`ed on every hit.
    rel: CString,
    id: FileId,
    /// The directory the request's path named (`.` for the root), and what
    /// it was when the entry was built.
    dir: CString,
    dir_stamp: DirStamp,
    /// For the request's preconditions.
    pub validators: Validators,
    /// The resource's header fields, rendered.
    pub headers: Rendered,
    body: Held,
    /// When the directory was last found unchanged, in milliseconds of
    /// [`crate::clock::monotonic`].
    checked: AtomicU64,
    last_used: AtomicU64,
}

impl Entry {
    pub(crate) fn new(
        path: &str,
        accept: &[u8],
        file: (CString, FileId),
        dir: (CString, DirStamp),
        validators: Validators,
        headers: Rendered,
        body: Held,
    ) -> Entry {
        Entry {
            path: path.into(),
            accept: accept.into(),
            rel: file.0,
            id: file.1,
            dir: dir.0,
            dir_stamp: dir.1,
            validators,
            headers,
            body,
            checked: AtomicU64::new(now_ms()),
            last_used: AtomicU64::new(0),
        }
    }

    /// Whether the directory is as it was, looked at again when the last
    /// look is a [`RECHECK`] old.
    fn dir_unchanged(&self, root: &impl AsFd) -> bool {
        let now = now_ms();
        if now.saturating_sub(self.checked.load(Ordering::Relaxed)) < RECHECK.as_millis() as u64 {
            return true;
        }
        let same =
            sys::fstatat(root.as_fd(), &self.dir, DirStamp::of).is_ok_and(|s| s == self.dir_stamp);
        if same {
            self.checked.store(now, Ordering::Relaxed);
        }
        same
    }

    /// The response body: the bytes, or the whole held file.
    pub(crate) fn body(&self) -> Body {
        match &self.body {
            Held::Bytes(b) => Body::from(b.clone()),
            Held::File(f) => Body::shared_file(Arc::clone(f), 0, self.id.size),
        }
    }

    fn holds_file(&self) -> bool {
        matches!(self.body, Held::File(_))
    }

    fn cost(&self) -> usize {
        let body = match &self.body {
            Held::Bytes(b) => b.len(),
            Held::File(_) => 0,
        };
        body + self.headers.bytes.len()
            + self.path.len()
            + self.accept.len()
            + self.rel.as_bytes().len()
            + self.dir.as_bytes().len()
            + self.validators.etag.len()
            + ENTRY_OVERHEAD
    }
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<u64, Arc<Entry>, RandomState>,
    bytes: usize,
    /// Entries that hold a descriptor.
    open: usize,
}

impl Map {
    fn remove(&mut self, key: &u64) -> Option<Arc<Entry>> {
        let old = self.entries.remove(key)?;
        self.bytes -= old.cost();
        self.open -= usize::from(old.holds_file());
        Some(old)
    }
}

/// The file cache's counters, for tests and curious operators
/// ([`StaticFiles::cache_stats`](crate::StaticFiles::cache_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Requests answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing usable.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes held now (bodies, headers, keys and a fixed overhead each).
    pub bytes: usize,
    /// Entries evicted to stay within the size.
    pub evictions: u64,
    /// Descriptors of larger files held open now.
    pub open: usize,
}

/// The cache shared by every connection of a [`StaticFiles`](crate::StaticFiles).
#[derive(Debug)]
pub(crate) struct FileCache {
    options: CacheOptions,
    /// `options.max_open`, within a quarter of the descriptor limit.
    max_open: usize,
    /// When inserting last closed idle descriptors, in milliseconds.
    swept: AtomicU64,
    /// foldhash, seeded per cache: the key is hashed on every request, and
    /// SipHash (std's default) was 6.5% of a cached request's instructions.
    /// A collision can only cost a miss: a hit also compares the path and
    /// the coding.
    hasher: RandomState,
    map: RwLock<Map>,
    /// Keys missed once while the cache was nearly full (see `admit`).
    seen: Mutex<Doorkeeper<u64>>,
    clock: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl FileCache {
    pub(crate) fn new(options: CacheOptions) -> FileCache {
        FileCache {
            max_open: options.max_open.min(
                usize::try_from(sys::open_files_limit().unwrap_or(1024)).unwrap_or(usize::MAX) / 4,
            ),
            swept: AtomicU64::new(now_ms()),
            options,
            hasher: RandomState::default(),
            map: RwLock::new(Map::default()),
            seen: Mutex::new(Doorkeeper::new(DOORKEEPER)),
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub(crate) fn options(&self) -> &CacheOptions {
        &self.options
    }

    /// Whether a file of `len` bytes can be cached: in memory, or held
    /// open.
    pub(crate) fn can_hold(&self, len: u64) -> bool {
        if len <= self.options.max_file {
            len < self.options.max_bytes as u64
        } else {
            self.max_open > 0 && len <= HOLD_MAX
        }
    }

    fn key(&self, path: &str, accept: &[u8]) -> u64 {
        self.hasher.hash_one((path, accept))
    }

    /// The entry for this request path and `Accept-Encoding`, if it is still
    /// the file on disk. `root` is the root directory's descriptor.
    pub(crate) fn get(&self, root: &impl AsFd, path: &str, accept: &[u8]) -> Option<Arc<Entry>> {
        let key = self.key(path, accept);
        let entry = {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            map.entries.get(&key).cloned()
        };
        let entry = entry.filter(|e| &*e.path == path && &*e.accept == accept);
        let found = match entry {
            Some(e)
                if stat_at(root, &e.rel).is_some_and(|id| id == e.id) && e.dir_unchanged(root) =>
            {
                Some(e)
            }
            Some(stale) => {
                self.drop_stale(key, &stale);
                None
            }
            None => None,
        };
        match &found {
            Some(e) => {
                let tick = self.clock.fetch_add(1, Ordering::Relaxed);
                e.last_used.store(tick, Ordering::Relaxed);
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        found
    }

    /// Takes out an entry found stale (unless it was replaced meanwhile),
    /// so that a descriptor of a deleted file is closed now.
    #[cold]
    fn drop_stale(&self, key: u64, stale: &Arc<Entry>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.entries.get(&key).is_some_and(|e| Arc::ptr_eq(e, stale)) {
            map.remove(&key);
        }
    }

    /// Whether a response for this key, just built by the slow path, may
    /// go into the cache. While the cache has room, any may. Once it is
    /// nearly full, only one asked for twice within the last
    /// `DOORKEEPER` misses may: a scan of a site wider than the cache (a
    /// crawler, a mirror) would otherwise read every file into memory only
    /// to evict it before it is asked for again, and push out the hot set.
    ///
    /// `len` is the file's size: one larger than `max_file` would hold a
    /// descriptor, and counts against `max_open` too.
    pub(crate) fn admit(&self, path: &str, accept: &[u8], len: u64) -> bool {
        let full = {
            let map = self.map.read().unwrap_or_else(|e| e.into_inner());
            map.bytes >= self.options.max_bytes / 4 * 3
                || (len > self.options.max_file && map.open >= self.max_open / 4 * 3)
        };
        if !full {
            return true;
        }
        let key = self.key(path, accept);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen_before(key)
    }

    /// Stores an entry, replacing the one under the same key and evicting
    /// the least recently used ones beyond the size.
    pub(crate) fn insert(&self, entry: Entry) {
        let cost = entry.cost();
        if cost > self.options.max_bytes || (entry.holds_file() && self.max_open == 0) {
            return;
        }
        let key = self.key(&entry.path, &entry.accept);
        entry.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let holds_file = entry.holds_file();
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&key);
        map.entries.insert(key, Arc::new(entry));
        map.bytes += cost;
        map.open += usize::from(holds_file);
        if map.bytes > self.options.max_bytes || map.open > self.max_open {
            self.evict(&mut map);
        }
        let now = now_ms();
        if now.saturating_sub(self.swept.load(Ordering::Relaxed)) >= SWEEP_EVERY.as_millis() as u64
        {
            self.swept.store(now, Ordering::Relaxed);
            Self::close_idle(&mut map, now);
        }
    }

    /// Closes the descriptors no request used for [`INACTIVE`]. A hit
    /// refreshes an entry's `checked` time at least once a [`RECHECK`].
    fn close_idle(map: &mut Map, now: u64) {
        let idle: Vec<u64> = map
            .entries
            .iter()
            .filter(|(_, e)| {
                e.holds_file()
                    && now.saturating_sub(e.checked.load(Ordering::Relaxed))
                        >= INACTIVE.as_millis() as u64
            })
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            map.remove(&key);
        }
    }

    /// Drops the least recently used entries until the cache is at most
    /// 90% full, in bytes and in descriptors, so that evictions come in
    /// batches.
    fn evict(&self, map: &mut Map) {
        let target = self.options.max_bytes / 10 * 9;
        let open_target = self.max_open / 10 * 9;
        let mut by_age: Vec<(u64, u64)> = map
            .entries
            .iter()
            .map(|(k, e)| (e.last_used.load(Ordering::Relaxed), *k))
            .collect();
        by_age.sort_unstable();
        for (_, key) in by_age {
            if map.bytes <= target && map.open <= open_target {
                break;
            }
            // Over the descriptors only: entries in memory stay.
            if map.bytes <= target && !map.entries[&key].holds_file() {
                continue;
            }
            if map.remove(&key).is_some() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: map.entries.len(),
            bytes: map.bytes,
            evictions: self.evictions.load(Ordering::Relaxed),
            open: map.open,
        }
    }
}

/// `fstatat(root, rel)`, following symlinks as opening it would; `None`
/// unless it names a regular file.
fn stat_at(root: &impl AsFd, rel: &CString) -> Option<FileId> {
    sys::fstatat(root.as_fd(), rel, |st| {
        ((st.st_mode & libc::S_IFMT) == libc::S_IFREG).then(|| FileId::of_stat(st))
    })
    .ok()
    .flatten()
}

/// Now, in milliseconds of [`crate::clock::monotonic`].
fn now_ms() -> u64 {
    crate::clock::monotonic().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{self, File};

    fn entry(dir: &std::path::Path, name: &str, body: &[u8]) -> Entry {
        let meta = fs::metadata(dir.join(name)).unwrap();
        let dir_stamp = sys::fstatat(File::open(dir).unwrap().as_fd(), c".", DirStamp::of).unwrap();
        Entry::new(
            &format!("/{name}"),
            b"",
            (CString::new(name).unwrap(), FileId::of(&meta)),
            (CString::new(".").unwrap(), dir_stamp),
            Validators::of(&meta, None),
            Rendered::default(),
            Held::Bytes(Bytes::copy_from_slice(body)),
        )
    }

    #[test]
    fn a_changed_file_misses_and_the_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = File::open(dir.path()).unwrap();
        let cache = FileCache::new(
            CacheOptions::new()
                .max_bytes(4 * (1000 + ENTRY_OVERHEAD + 40))
                .max_file(1000)
                .settle(Duration::ZERO),
        );
        for i in 0..10 {
            let name = format!("f{i}");
            fs::write(dir.path().join(&name), vec![b'a'; 1000]).unwrap();
            cache.insert(entry(dir.path(), &name, &[b'a'; 1000]));
            let stats = cache.stats();
            assert!(stats.bytes <= 4 * (1000 + ENTRY_OVERHEAD + 40), "{stats:?}");
        }
        let stats = cache.stats();
        assert!(stats.entries < 10 && stats.evictions > 0, "{stats:?}");
        // The newest is kept; the oldest is gone.
        assert!(cache.get(&root, "/f9", b"").is_some());
        assert!(cache.get(&root, "/f0", b"").is_none());
        // Another spelling or coding is another key.
        assert!(cache.get(&root, "/f9", b"gzip").is_none());
        assert!(cache.get(&root, "//f9", b"").is_none());
        // A change of size, or removal, misses at once.
        fs::write(dir.path().join("f9"), b"short").unwrap();
        assert!(cache.get(&root, "/f9", b"").is_none());
        cache.insert(entry(dir.path(), "f9", b"short"));
        assert!(cache.get(&root, "/f9", b"").is_some());
        fs::remove_file(dir.path().join("f9")).unwrap();
        assert!(cache.get(&root, "/f9", b"").is_none());
    }

    #[test]
    fn a_file_changed_just_now_is_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        let id = FileId::of(&fs::metadata(dir.path().join("f")).unwrap());
        let now = SystemTime::now();
        let settle = Duration::from_millis(20);
        assert!(!id.settled(now, settle));
        assert!(id.settled(now + settle + Duration::from_millis(1), settle));
        assert!(id.settled(now, Duration::ZERO));
    }

    /// While the cache has room everything is admitted; once it is three
    /// quarters full, a key only on its second miss, so that a scan wider
    /// than the cache does not churn it.
    #[test]
    fn a_nearly_full_cache_admits_a_key_on_its_second_miss() {
        let dir = tempfile::tempdir().unwrap();
        // Three entries of about 1,300 bytes fill more than three quarters.
        let max = 4000;
        let cache = FileCache::new(
            CacheOptions::new()
                .max_bytes(max)
                .max_file(1000)
                .settle(Duration::ZERO),
        );
        assert!(cache.admit("/new", b"", 1));
        assert!(cache.admit("/new", b"", 1), "room: admitted every time");
        for i in 0..3 {
            let name = format!("f{i}");
            fs::write(dir.path().join(&name), vec![b'a'; 1000]).unwrap();
            cache.insert(entry(dir.path(), &name, &[b'a'; 1000]));
        }
        let stats = cache.stats();
        assert!(
            stats.bytes >= max / 4 * 3 && stats.entries == 3,
            "{stats:?}"
        );
        assert!(
            !cache.admit("/scan-1", b"", 1000),
            "first miss of a full cache"
        );
        assert!(!cache.admit("/scan-2", b"", 1000));
        assert!(cache.admit("/scan-1", b"", 1000), "second miss");
        assert!(!cache.admit("/scan-1", b"", 1000), "remembered once only");
        assert!(
            !cache.admit("/scan-2", b"gzip", 1000),
            "another coding is another key"
        );
    }
}
