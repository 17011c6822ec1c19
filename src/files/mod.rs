//! The static-file handler.
//!
//! - `path.rs`: request path to a safe relative path, and the one rule of
//!   what is hidden;
//! - `open.rs`: the root, and the one policy for opening beneath it;
//! - `respond.rs`: the pipeline from a request to its response, with the
//!   cache in front;
//! - `negotiate.rs`: precompressed siblings and media types;
//! - `compress.rs`: on-the-fly compression, and the store of its results;
//! - `siblings.rs`: which files have precompressed siblings, per directory;
//! - `conditional.rs`, `range.rs`: validators and preconditions, byte
//!   ranges;
//! - `listing.rs`: directory listings, by the same rule and policy;
//! - `cache.rs`: small files kept in memory;
//! - `options.rs`: [`FilesOptions`].

pub(crate) mod cache;
mod compress;
pub(crate) mod conditional;
mod listing;
mod negotiate;
mod open;
mod options;
pub(crate) mod path;
pub(crate) mod range;
mod respond;
mod siblings;

pub use cache::{CacheOptions, CacheStats};
pub use options::{FilesOptions, Symlinks};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::handler::Handler;
use crate::request::Request;
use crate::response::Response;

use self::cache::FileCache;
use self::compress::CompressedStore;
use self::open::SharedRoot;
use self::respond::Site;
use self::siblings::SiblingIndex;

/// What on-the-fly compression keeps of its results: rust-doc's 22,223
/// compressible files of 1 KiB to 1 MiB (385 MB) take 69 MB as gzip
/// (docs/performance.md).
const COMPRESSED_STORE_BYTES: usize = 128 * 1024 * 1024;

/// Serves the files under one directory: `GET` and `HEAD` with validators
/// (`ETag`, `Last-Modified`) and preconditions, byte ranges, precompressed
/// siblings, `sendfile(2)` for large files and an in-memory cache for small
/// ones; never anything outside the root, no dotfiles but `/.well-known/`.
///
/// It is a [`Handler`]: serve a directory with
/// `server.serve(StaticFiles::new("site", FilesOptions::new())?)`, put it
/// behind routes with [`Router::fallback`](crate::Router::fallback), or
/// call [`StaticFiles::serve`] from a handler. Clones share the root and
/// the cache.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: Arc<SharedRoot>,
    options: Arc<FilesOptions>,
    cache: Option<Arc<FileCache>>,
    siblings: Arc<SiblingIndex>,
    compressed: Option<Arc<CompressedStore>>,
}

impl StaticFiles {
    /// Serves `root`, which must be a directory.
    ///
    /// The path is resolved again at most once a second, so that a root
    /// replaced by a deploy (a symlink swapped, a directory renamed into
    /// place) is served within a second; see [`StaticFiles::root`]. Fails if
    /// `root` is not a directory, or `options` holds a header field that
    /// could not be sent.
    pub fn new(root: impl AsRef<Path>, options: FilesOptions) -> io::Result<StaticFiles> {
        if let Some(refused) = &options.refused {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                refused.to_string(),
            ));
        }
        let cache = options.cache.map(|o| Arc::new(FileCache::new(o)));
        let compressed = options
            .compress
            .then(|| Arc::new(CompressedStore::new(COMPRESSED_STORE_BYTES)));
        Ok(StaticFiles {
            root: Arc::new(SharedRoot::new(root.as_ref())?),
            options: Arc::new(options),
            cache,
            siblings: Arc::default(),
            compressed,
        })
    }

    /// The directory served now: the root path given, canonical, as last
    /// resolved (at most a second ago, when requests come).
    pub fn root(&self) -> PathBuf {
        self.root.get().path.clone()
    }

    /// The file cache's counters, or `None` when the cache is off.
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Answers `req` with the file at `path` (relative to the root, not
    /// percent-encoded; a leading `/` is allowed), with everything the
    /// handler does for a URL: validators, ranges, precompressed siblings,
    /// `sendfile`. A path that climbs out of the root, names a dotfile or
    /// names nothing is a 404; a directory is served by its index file, or
    /// is a 404 (no redirect, no listing: the URL is the caller's).
    ///
    /// ```no_run
    /// # use coserve::{FilesOptions, Router, StaticFiles};
    /// # fn main() -> std::io::Result<()> {
    /// let files = StaticFiles::new("site", FilesOptions::new())?;
    /// let app = Router::new().get("/latest", move |req| files.serve(req, "releases/v2.tar.gz"));
    /// # Ok(()) }
    /// ```
    pub fn serve(&self, req: &Request, path: &str) -> Response {
        let root = Arc::clone(&self.root.get());
        let site = Site {
            root: &root,
            options: &self.options,
            siblings: &self.siblings,
            compressed: self.compressed.as_deref(),
        };
        site.decorate(site.respond_with(req, path::resolve_decoded(path.as_bytes())))
    }
}

impl Handler for StaticFiles {
    fn handle(&self, req: &Request) -> Response {
        // The guard is held only while the cache is asked (no yield there);
        // the slow path keeps its own reference.
        let guard = self.root.get();
        if let Some(cache) = &self.cache
            && let Some(hit) = (Site {
                root: &guard,
                options: &self.options,
                siblings: &self.siblings,
                compressed: self.compressed.as_deref(),
            })
            .cached(cache, req)
        {
            return hit;
        }
        let root = Arc::clone(&guard);
        drop(guard);
        Site {
            root: &root,
            options: &self.options,
            siblings: &self.siblings,
            compressed: self.compressed.as_deref(),
        }
        .uncached(self.cache.as_deref(), req)
    }
}
