//! On-the-fly compression: `br`, `zstd` and `gzip` for compressible media
//! types, when the client accepts one and the file has no precompressed
//! sibling (a sibling, made ahead at the best level, always wins).
//!
//! - Files up to [`MEMORY_MAX`] are compressed whole, once per file
//!   version and coding, on the blocking pool (a worker thread never
//!   waits for a compressor), and the result is kept in a
//!   [`CompressedStore`] keyed by the file's identity and the coding: an
//!   edited file is a new key, so nothing stale is served.
//! - Larger files are never loaded whole. The first requests get the file
//!   streamed through a fast encoder (level 1), 64 KiB at a time (chunked
//!   to HTTP/1.1 clients), with an ETag of its own (`-gzip-fast`), while
//!   one background job on the blocking pool compresses it at the levels
//!   of small files into an unlinked temporary file; once that is done the
//!   file's later requests get it with `sendfile`, a `Content-Length` and
//!   the coding's ETag. The temporary files are bounded by [`DISK_MAX`]
//!   bytes and [`DISK_FILES`] descriptors, least recently used out
//!   first.
//! - A request with `Range` gets the file as it is (identity), so that byte
//!   ranges always count the file's own bytes.
//!
//! Levels are docs/performance.md's measurements on rust-doc's HTML.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use foldhash::fast::RandomState;

use super::cache::{Doorkeeper, FileId};

/// Smaller files go out as they are: the coding's framing and the CPU
/// would cost more than the bytes saved.
pub(crate) const MIN_SIZE: u64 = 1024;
/// Files up to this size are compressed whole and kept; larger ones are
/// streamed.
pub(crate) const MEMORY_MAX: u64 = 1024 * 1024;
/// What a streamed file is read in.
const STREAM_CHUNK: usize = 64 * 1024;
/// The most the temporary files of compressed large files hold, in bytes
/// (the temporary directory may be memory: tmpfs).
pub(crate) const DISK_MAX: u64 = 256 * 1024 * 1024;
/// The most temporary files held open.
pub(crate) const DISK_FILES: usize = 256;

/// A content coding coserve produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Coding {
    Br,
    Zstd,
    Gzip,
}

/// In order of preference when the client's q-values tie: the smallest
/// output first.
const CODINGS: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

impl Coding {
    /// Its `Content-Encoding` token (RFC 9110 §8.4.1).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Zstd => "zstd",
            Coding::Gzip => "gzip",
        }
    }

    /// Compresses `data` whole, at the level for files kept in memory.
    fn compress(self, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(data.len() / 3 + 64);
        match self {
            Coding::Br => {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data)?;
                w.flush()?;
            }
            Coding::Zstd => {
                out = zstd::bulk::compress(data, 6)?;
            }
            Coding::Gzip => {
                let mut w = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
                w.write_all(data)?;
                out = w.finish()?;
            }
        }
        Ok(out)
    }

    /// The ETag suffix of a file streamed at the fast level, which is
    /// another representation than the one kept.
    pub(crate) fn fast_tag(self) -> &'static str {
        match self {
            Coding::Br => "br-fast",
            Coding::Zstd => "zstd-fast",
            Coding::Gzip => "gzip-fast",
        }
    }

    /// Streams `file` compressed into `out`, read with `pread` from the
    /// start in [`STREAM_CHUNK`]s (so a shared file offset does not
    /// matter): at level 1 when `fast` (a response, on a worker thread),
    /// else at the levels of [`Coding::compress`] (the kept copy, on the
    /// blocking pool).
    fn stream(self, file: &File, out: &mut dyn Write, fast: bool) -> io::Result<()> {
        let mut buf = vec![0u8; STREAM_CHUNK];
        let mut at = 0u64;
        let mut copy = |w: &mut dyn Write| -> io::Result<()> {
            loop {
                let n = file.read_at(&mut buf, at)?;
                if n == 0 {
                    return Ok(());
                }
                at += n as u64;
                w.write_all(&buf[..n])?;
            }
        };
        match self {
            Coding::Br => {
                let mut w = brotli::CompressorWriter::new(out, 4096, if fast { 1 } else { 5 }, 22);
                copy(&mut w)?;
                w.flush()?;
            }
            Coding::Zstd => {
                let mut w = zstd::stream::write::Encoder::new(out, if fast { 1 } else { 6 })?;
                copy(&mut w)?;
                w.finish()?;
            }
            Coding::Gzip => {
                let level = flate2::Compression::new(if fast { 1 } else { 6 });
                let mut w = flate2::write::GzEncoder::new(out, level);
                copy(&mut w)?;
                w.finish()?;
            }
        }
        Ok(())
    }
}

/// Whether a response of this media type is worth compressing: text,
/// JavaScript, JSON, XML, SVG and wasm; never images, audio, video, fonts
/// in compressed formats or archives, which are compressed already.
pub(crate) fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // Lowercased only when it is not already (ours always are).
    let lower;
    let essence = if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = essence.to_ascii_lowercase();
        lower.as_str()
    } else {
        essence
    };
    essence.starts_with("text/")
        || essence.ends_with("+xml")
        || essence.ends_with("+json")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
                | "application/x-font-ttf"
                | "application/vnd.ms-fontobject"
        )
}

/// The coding to answer with: the acceptable one with the highest q-value
/// (RFC 9110 §12.5.3), ties going to the smallest output. `None` when the
/// client accepts none of them (or no `Accept-Encoding` was sent, which
/// means identity is best: §12.5.3 allows any coding, but a client that
/// says nothing rarely decodes them).
pub(crate) fn choose(accept: Option<&str>) -> Option<Coding> {
    let accept = accept?;
    let mut best: Option<(f32, Coding)> = None;
    for coding in CODINGS {
        let q = super::negotiate::accept_q(accept, coding.name());
        if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, coding));
        }
    }
    best.map(|(_, c)| c)
}

/// The compressed bytes of each file version and coding, least recently
/// used out first, within a byte budget.
#[derive(Debug)]
pub(crate) struct CompressedStore {
    max_bytes: usize,
    inner: Mutex<Store>,
    /// Large files compressed to temporary files.
    disk: Arc<Mutex<Disk>>,
    /// Whether a background job is compressing a large file: one at a
    /// time, so that the blocking pool stays free for everything else.
    busy: Arc<AtomicBool>,
}

/// A kept copy: the temporary file, its length, and when it was last
/// used.
type Kept = (Arc<File>, u64, u64);

#[derive(Debug, Default)]
struct Disk {
    map: HashMap<(FileId, Coding), Kept, RandomState>,
    bytes: u64,
    tick: u64,
}

impl Disk {
    /// Drops the least recently used files until both bounds hold.
    fn trim(&mut self) {
        while self.bytes > DISK_MAX || self.map.len() > DISK_FILES {
            let Some(oldest) = self.map.iter().min_by_key(|(_, v)| v.2).map(|(k, _)| *k) else {
                return;
            };
            if let Some((_, len, _)) = self.map.remove(&oldest) {
                self.bytes -= len;
            }
        }
    }
}

#[derive(Debug)]
struct Store {
    map: HashMap<(FileId, Coding), (Bytes, u64), RandomState>,
    bytes: usize,
    tick: u64,
    /// Keys compressed once while the store was nearly full (see
    /// `insert`).
    seen: Doorkeeper<(FileId, Coding)>,
}

/// How many keys compressed once the admission rule remembers.
const DOORKEEPER: usize = 8192;

impl CompressedStore {
    pub(crate) fn new(max_bytes: usize) -> CompressedStore {
        CompressedStore {
            max_bytes,
            inner: Mutex::new(Store {
                map: HashMap::default(),
                bytes: 0,
                tick: 0,
                seen: Doorkeeper::new(DOORKEEPER),
            }),
            disk: Arc::default(),
            busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A large `file` (identity `id`) compressed with `coding`, as a
    /// temporary file and its length, if it is ready. If it is not, and no
    /// other one is being compressed, starts compressing it in the
    /// background; the caller streams it meanwhile.
    pub(crate) fn large(
        &self,
        file: &File,
        id: FileId,
        coding: Coding,
    ) -> Option<(Arc<File>, u64)> {
        let key = (id, coding);
        {
            let mut disk = self.disk.lock().unwrap_or_else(|e| e.into_inner());
            disk.tick += 1;
            let tick = disk.tick;
            if let Some((f, len, used)) = disk.map.get_mut(&key) {
                *used = tick;
                return Some((Arc::clone(f), *len));
            }
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return None;
        }
        let Ok(file) = file.try_clone() else {
            self.busy.store(false, Ordering::Release);
            return None;
        };
        let busy = Arc::clone(&self.busy);
        let disk = Arc::clone(&self.disk);
        crate::blocking::spawn(move || {
            match compress_to_temp(&file, id, coding) {
                Ok(Some((temp, len))) => {
                    let mut disk = disk.lock().unwrap_or_else(|e| e.into_inner());
                    disk.tick += 1;
                    let tick = disk.tick;
                    disk.bytes += len;
                    if let Some((_, old, _)) = disk.map.insert(key, (Arc::new(temp), len, tick)) {
                        disk.bytes -= old;
                    }
                    disk.trim();
                }
                // Does not compress, or changed meanwhile: streamed.
                Ok(None) => {}
                Err(e) => log::warn!("compressing a large file in the background: {e}"),
            }
            busy.store(false, Ordering::Release);
        });
        None
    }

    fn get(&self, key: (FileId, Coding)) -> Option<Bytes> {
        let mut store = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        store.tick += 1;
        let tick = store.tick;
        store.map.get_mut(&key).map(|(bytes, used)| {
            *used = tick;
            bytes.clone()
        })
    }

    /// Keeps `bytes`. Once the store is three quarters full, only a key
    /// compressed for the second time within the last [`DOORKEEPER`] is
    /// kept: a site whose compressed files do not all fit, asked for in
    /// turn, would otherwise evict each file just before it comes round
    /// again, and never hit; this way most of it stays.
    fn insert(&self, key: (FileId, Coding), bytes: Bytes) {
        if bytes.len() > self.max_bytes / 4 {
            return;
        }
        let mut store = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if store.bytes >= self.max_bytes / 4 * 3 && !store.seen.seen_before(key) {
            return;
        }
        store.tick += 1;
        let tick = store.tick;
        store.bytes += bytes.len();
        if let Some((old, _)) = store.map.insert(key, (bytes, tick)) {
            store.bytes -= old.len();
        }
        if store.bytes > self.max_bytes {
            // Down to 90%, oldest first, so that evictions come in batches.
            let target = self.max_bytes / 10 * 9;
            let mut by_age: Vec<_> = store.map.iter().map(|(k, (_, t))| (*t, *k)).collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            for (_, k) in by_age {
                if store.bytes <= target {
                    break;
                }
                if let Some((old, _)) = store.map.remove(&k) {
                    store.bytes -= old.len();
                }
            }
        }
    }

    /// `file` (whose identity is `id`) compressed with `coding`: from the
    /// store, or compressed now on the blocking pool and kept. The file
    /// is read with `pread`, so its offset does not matter; `None` if it
    /// cannot be read whole as it was (changed meanwhile) or does not
    /// compress.
    pub(crate) fn compressed(&self, file: &File, id: FileId, coding: Coding) -> Option<Bytes> {
        let key = (id, coding);
        if let Some(hit) = self.get(key) {
            return Some(hit);
        }
        let file = file.try_clone().ok()?;
        let len = usize::try_from(id.size()).ok()?;
        let compressed = crate::blocking(move || -> io::Result<Vec<u8>> {
            use std::os::unix::fs::FileExt;
            let mut data = vec![0u8; len];
            file.read_exact_at(&mut data, 0)?;
            if file.metadata().map(|m| FileId::of(&m)).ok() != Some(id) {
                return Err(io::Error::other("changed while read"));
            }
            coding.compress(&data)
        })
        .ok()?;
        // Not worth it: the file goes out as it is.
        if compressed.len() as u64 >= id.size() {
            return None;
        }
        let bytes = Bytes::from(compressed);
        self.insert(key, bytes.clone());
        Some(bytes)
    }
}

/// A body that streams `file` through `coding`'s encoder.
pub(crate) fn stream_body(file: File, coding: Coding) -> crate::response::Body {
    crate::response::Body::stream(move |out| coding.stream(&file, out, true))
}

/// Compresses `file` into a new temporary file, as [`Coding::stream`]
/// does. `None` if the result is no smaller, or the file changed while it
/// was read.
fn compress_to_temp(file: &File, id: FileId, coding: Coding) -> io::Result<Option<(File, u64)>> {
    let temp = temp_file()?;
    {
        let mut out = io::BufWriter::with_capacity(STREAM_CHUNK, &temp);
        coding.stream(file, &mut out, false)?;
        out.flush()?;
    }
    if file.metadata().map(|m| FileId::of(&m)).ok() != Some(id) {
        return Ok(None);
    }
    let len = temp.metadata()?.len();
    Ok((len < id.size()).then_some((temp, len)))
}

/// A file in the temporary directory that has no name (`O_TMPFILE`), or
/// whose name is removed at once where the file system cannot do that: its
/// space goes back when it is closed, and nothing is left behind.
fn temp_file() -> io::Result<File> {
    let dir = std::env::temp_dir();
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(&dir);
    if let Ok(f) = unnamed {
        return Ok(f);
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = dir.join(format!(
        "coserve-{}-{nanos}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn compressible_types() {
        for t in [
            "text/html; charset=utf-8",
            "text/css",
            "application/javascript",
            "application/json",
            "image/svg+xml",
            "application/wasm",
            "application/atom+xml",
            "Text/HTML; charset=UTF-8",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "image/jpeg",
            "image/webp",
            "font/woff2",
            "application/zip",
            "application/gzip",
            "video/mp4",
            "application/octet-stream",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }

    #[test]
    fn the_best_acceptable_coding_wins() {
        assert_eq!(choose(None), None);
        assert_eq!(choose(Some("")), None);
        assert_eq!(choose(Some("identity")), None);
        assert_eq!(choose(Some("gzip")), Some(Coding::Gzip));
        assert_eq!(choose(Some("gzip, deflate, br, zstd")), Some(Coding::Br));
        assert_eq!(choose(Some("gzip, zstd")), Some(Coding::Zstd));
        assert_eq!(choose(Some("br;q=0.5, gzip")), Some(Coding::Gzip));
        assert_eq!(choose(Some("br;q=0, *")), Some(Coding::Zstd));
        assert_eq!(choose(Some("*;q=0")), None);
    }

    /// Once three quarters full, the store keeps a result only when the
    /// same file and coding come back a second time.
    #[test]
    fn a_nearly_full_store_keeps_a_result_on_its_second_compression() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<FileId> = (0..5)
            .map(|i| {
                let path = dir.path().join(format!("f{i}"));
                std::fs::write(&path, vec![b'x'; 10 + i]).unwrap();
                FileId::of(&std::fs::metadata(&path).unwrap())
            })
            .collect();
        let store = CompressedStore::new(4000);
        for id in &ids[..3] {
            store.insert((*id, Coding::Gzip), Bytes::from(vec![0u8; 1000]));
            assert!(
                store.get((*id, Coding::Gzip)).is_some(),
                "room: kept at once"
            );
        }
        let late = (ids[3], Coding::Gzip);
        store.insert(late, Bytes::from(vec![0u8; 900]));
        assert!(store.get(late).is_none(), "nearly full: not on the first");
        store.insert(late, Bytes::from(vec![0u8; 900]));
        assert!(store.get(late).is_some(), "kept on the second");
        // Within its budget, the oldest out first.
        let inner = store.inner.lock().unwrap();
        assert!(inner.bytes <= 4000, "{}", inner.bytes);
    }

    #[test]
    fn each_coding_round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("<p>line {} of the page</p>\n", i % 977).into_bytes())
            .collect();
        for coding in CODINGS {
            let packed = coding.compress(&data).unwrap();
            assert!(packed.len() < data.len() / 4, "{coding:?}");
            let mut streamed = Vec::new();
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("f"), &data).unwrap();
            coding
                .stream(
                    &File::open(dir.path().join("f")).unwrap(),
                    &mut streamed,
                    true,
                )
                .unwrap();
            for bytes in [&packed, &streamed] {
                let mut plain = Vec::new();
                match coding {
                    Coding::Br => {
                        brotli::Decompressor::new(&bytes[..], 4096)
                            .read_to_end(&mut plain)
                            .unwrap();
                    }
                    Coding::Zstd => plain = zstd::decode_all(&bytes[..]).unwrap(),
                    Coding::Gzip => {
                        flate2::read::GzDecoder::new(&bytes[..])
                            .read_to_end(&mut plain)
                            .unwrap();
                    }
                }
                assert!(plain == data, "{coding:?}");
            }
        }
    }
}
