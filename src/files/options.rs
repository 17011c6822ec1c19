//! What a static-file handler serves and how.

use super::cache::CacheOptions;
use crate::response::{HeaderError, check_header};

/// Options for [`StaticFiles`](crate::StaticFiles), built with chained
/// setters from the defaults:
///
/// ```
/// use coserve::FilesOptions;
/// let options = FilesOptions::new()
///     .listing(true)
///     .cache_control("public, max-age=3600")
///     .header("X-Frame-Options", "DENY");
/// ```
///
/// A header field that could not be sent (a name that is not a token, a
/// value with CR or LF) makes [`StaticFiles::new`](crate::StaticFiles::new)
/// fail, rather than every response.
#[derive(Debug, Clone)]
pub struct FilesOptions {
    pub(crate) follow_symlinks: bool,
    pub(crate) index: Vec<String>,
    pub(crate) precompressed: bool,
    pub(crate) listing: bool,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) cache_control: Option<String>,
    pub(crate) cors: bool,
    pub(crate) spa: bool,
    pub(crate) cache: Option<CacheOptions>,
    /// The first header field refused, reported by `StaticFiles::new`.
    pub(crate) refused: Option<HeaderError>,
}

impl Default for FilesOptions {
    fn default() -> Self {
        FilesOptions {
            follow_symlinks: false,
            index: vec!["index.html".into()],
            precompressed: true,
            listing: false,
            headers: Vec::new(),
            cache_control: None,
            cors: false,
            spa: false,
            cache: Some(CacheOptions::default()),
            refused: None,
        }
    }
}

impl FilesOptions {
    /// The defaults: `index.html` serves a directory; precompressed
    /// siblings are served; no listing; symlinks followed only where they
    /// stay beneath the root; the file cache on with
    /// [`CacheOptions::default`].
    pub fn new() -> FilesOptions {
        FilesOptions::default()
    }

    /// Follow symlinks that lead outside the root (off: such a link is a
    /// 404, and a listing leaves it out).
    pub fn follow_symlinks(mut self, follow: bool) -> FilesOptions {
        self.follow_symlinks = follow;
        self
    }

    /// The file names that serve a directory, tried in order
    /// (`index.html`).
    pub fn index<I, S>(mut self, names: I) -> FilesOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.index = names.into_iter().map(Into::into).collect();
        self
    }

    /// Serve `X.br` or `X.gz` for `X` to a client that accepts that coding
    /// (on).
    pub fn precompressed(mut self, on: bool) -> FilesOptions {
        self.precompressed = on;
        self
    }

    /// List directories that have no index file (off).
    pub fn listing(mut self, on: bool) -> FilesOptions {
        self.listing = on;
        self
    }

    /// The `Cache-Control` value of file responses (none).
    pub fn cache_control(mut self, value: impl Into<String>) -> FilesOptions {
        let value = value.into();
        match check_header("Cache-Control", &value) {
            Ok(()) => self.cache_control = Some(value),
            Err(e) => self.refuse(e),
        }
        self
    }

    /// A header field added to every response; may be given many times.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> FilesOptions {
        let (name, value) = (name.into(), value.into());
        match check_header(&name, &value) {
            Ok(()) => self.headers.push((name, value)),
            Err(e) => self.refuse(e),
        }
        self
    }

    /// `Access-Control-Allow-Origin: *` on every response, and answers to
    /// CORS preflights (off).
    pub fn cors(mut self, on: bool) -> FilesOptions {
        self.cors = on;
        self
    }

    /// Answer paths that name nothing and have no extension with the root's
    /// index, for single-page apps (off).
    pub fn spa(mut self, on: bool) -> FilesOptions {
        self.spa = on;
        self
    }

    /// Keep small files and their rendered headers in memory; `None` reads
    /// every file from disk each time.
    pub fn cache(mut self, cache: Option<CacheOptions>) -> FilesOptions {
        self.cache = cache;
        self
    }

    fn refuse(&mut self, e: HeaderError) {
        self.refused.get_or_insert(e);
    }
}
