//! The static-file handler: request path to a file under the root, and the
//! response for it.
//!
//! Safety comes in two layers. [`resolve_path`] is pure: it decodes the path
//! once, refuses control characters and backslashes, and normalises `.` and
//! `..` so that no spelling can climb above the root (climbing is refused,
//! not clamped). Then [`StaticFiles`] canonicalises the joined path and
//! checks that it is still under the canonical root, so a symlink cannot
//! lead out either, unless that was asked for.

pub mod cache;
pub mod conditional;
pub mod listing;
pub mod range;

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, percent_encode};

use self::conditional::{Precondition, Validators};
use self::range::Ranges;
use crate::files::cache::{CacheOptions, CacheStats, Entry, FileCache, FileId};
use crate::handler::Handler;
use crate::parse::{Method, Request};
use crate::response::{Body, Part, Response};

/// Why a request path does not name anything under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Malformed or hostile: control characters, backslashes, climbing
    /// above the root, not starting with `/`. Answered with 400.
    Invalid,
    /// Names a dotfile, which is hidden. Answered with 404.
    Hidden,
}

/// A request path that has been decoded and normalised, and is safe to join
/// to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    segments: Vec<Vec<u8>>,
    trailing_slash: bool,
}

impl SafePath {
    /// The path relative to the root: no leading `/`, no `.` or `..`.
    pub fn relative(&self) -> PathBuf {
        self.segments.iter().map(|s| OsStr::from_bytes(s)).collect()
    }

    /// The decoded path for display, with leading and trailing `/`.
    pub fn display_path(&self) -> String {
        let mut path = String::from("/");
        for seg in &self.segments {
            path.push_str(&String::from_utf8_lossy(seg));
            path.push('/');
        }
        path
    }

    /// Whether the request path ended in `/`.
    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The normalised path, percent-encoded, with a trailing slash: what a
    /// redirect to the directory points at. It always starts with exactly
    /// one `/`, so it can never be read as `//other-host`.
    pub fn directory_url(&self) -> String {
        let mut url = String::from("/");
        for seg in &self.segments {
            url.extend(percent_encode(seg, SEGMENT));
            url.push('/');
        }
        url
    }
}

/// What gets percent-encoded in a path segment of a URL we generate
/// (redirects, listing links). `:` is encoded too: a relative link such as
/// `javascript:x` or `c:d` would otherwise be read as a URL with a scheme.
/// `'` is encoded so a link is safe inside a single-quoted attribute.
pub(crate) const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'\'')
    .add(b':');

/// Turns the path part of a request target into a [`SafePath`].
///
/// The path is percent-decoded exactly once, so `%252e` stays the literal
/// name `%2e`. Decoded `/` (from `%2f`) separates segments like any other
/// `/`, and `..` segments are resolved after decoding, so `%2e%2e%2f` climbs
/// exactly as `../` would, and is refused when it would leave the root.
pub fn resolve_path(path: &str) -> Result<SafePath, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::Invalid);
    }
    let decoded: Vec<u8> = percent_decode_str(path).collect();
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\') {
        return Err(PathError::Invalid);
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop().ok_or(PathError::Invalid)?;
            }
            _ => segments.push(seg.to_vec()),
        }
    }
    for (i, seg) in segments.iter().enumerate() {
        if seg.starts_with(b".") && !(i == 0 && seg == b".well-known") {
            return Err(PathError::Hidden);
        }
    }
    let trailing_slash =
        decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    Ok(SafePath {
        segments,
        trailing_slash,
    })
}

/// Options for [`StaticFiles`].
#[derive(Debug, Clone)]
pub struct FilesOptions {
    /// Follow symlinks that lead outside the root.
    pub follow_symlinks: bool,
    /// File names that serve a directory, tried in order.
    pub index: Vec<String>,
    /// Serve `foo.br` / `foo.gz` for `foo` when the client accepts them.
    pub precompressed: bool,
    /// Render a listing for directories without an index file.
    pub listing: bool,
    /// `Cache-Control` for file responses.
    pub cache_control: Option<String>,
    /// Extra header fields on every response.
    pub headers: Vec<(String, String)>,
    /// `Access-Control-Allow-Origin: *` and answers to CORS preflights.
    pub cors: bool,
    /// Answer unknown paths without an extension with the root index
    /// (single-page apps).
    pub spa: bool,
    /// Keep small files and their rendered headers in memory (see
    /// [`CacheOptions`]); `None` reads every file from disk each time.
    pub cache: Option<CacheOptions>,
}

impl Default for FilesOptions {
    fn default() -> Self {
        FilesOptions {
            follow_symlinks: false,
            index: vec!["index.html".into()],
            precompressed: true,
            listing: false,
            cache_control: None,
            headers: Vec::new(),
            cors: false,
            spa: false,
            cache: Some(CacheOptions::default()),
        }
    }
}

/// Precompressed siblings, in order of preference when q-values tie.
const CODINGS: [(&str, &str); 2] = [("br", ".br"), ("gzip", ".gz")];

/// Serves the files under one directory.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: Arc<SharedRoot>,
    options: FilesOptions,
    cache: Option<Arc<FileCache>>,
}

/// The directory served, as resolved at one moment.
#[derive(Debug)]
struct Root {
    /// Canonical: symlinks resolved, absolute.
    path: PathBuf,
    /// `path` opened as a directory, for `openat2(RESOLVE_BENEATH)`.
    dir: File,
    /// Device and inode of `dir`.
    id: (u64, u64),
}

impl Root {
    fn open(given: &Path) -> io::Result<Root> {
        let path = fs::canonicalize(given)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {}", given.display(), e)))?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{}: not a directory", given.display()),
                ),
                _ => io::Error::new(e.kind(), format!("{}: {}", given.display(), e)),
            })?;
        let meta = dir.metadata()?;
        let id = (meta.dev(), meta.ino());
        Ok(Root { path, dir, id })
    }
}

/// The root, as given and as now resolved, shared by a handler's clones.
///
/// The path given is resolved again at most once a second, on a request:
/// a deploy that swaps a symlink (`current -> releases/v2`) or renames a new
/// directory into place is served within a second, as nginx and
/// `python3 -m http.server`, which resolve the path on every request,
/// serve it at once. Until then requests see the old directory, whole.
#[derive(Debug)]
struct SharedRoot {
    given: PathBuf,
    current: std::sync::RwLock<Arc<Root>>,
    /// The second ([`crate::clock::monotonic`]) of the last look.
    checked: std::sync::atomic::AtomicU64,
}

impl SharedRoot {
    /// The root now; looks at the given path again if a second has passed.
    fn get(&self) -> std::sync::RwLockReadGuard<'_, Arc<Root>> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = crate::clock::monotonic().as_secs();
        if self.checked.load(Relaxed) != now && self.checked.swap(now, Relaxed) != now {
            self.refresh();
        }
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens the given path again if it now names another directory. One
    /// that does not resolve (a deploy half done, a typo) keeps the old.
    #[cold]
    fn refresh(&self) {
        let Ok(meta) = fs::metadata(&self.given) else {
            return;
        };
        if (meta.dev(), meta.ino()) == self.current.read().unwrap_or_else(|e| e.into_inner()).id {
            return;
        }
        match Root::open(&self.given) {
            Ok(root) => {
                log::info!(
                    "{} now resolves to {}: serving that",
                    self.given.display(),
                    root.path.display()
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(root);
            }
            Err(e) => log::warn!("the root changed, but cannot be opened: {e}"),
        }
    }
}

/// What the slow path tells the cache about a plain `200` of a whole file.
struct Fill {
    /// The file sent (perhaps a precompressed sibling), relative to the root.
    rel: PathBuf,
    id: FileId,
    validators: Validators,
}

/// A file opened for serving.
struct Opened {
    file: File,
    meta: fs::Metadata,
    path: PathBuf,
}

const BUILTIN_404: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n<body><h1>404 Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n";

impl StaticFiles {
    /// Serves `root`, which must be an existing directory.
    ///
    /// The path is resolved again at most once a second, so that a root
    /// replaced by a deploy (a symlink swapped, a directory renamed into
    /// place) is served within a second; see [`StaticFiles::root`].
    pub fn new(root: impl AsRef<Path>, options: FilesOptions) -> io::Result<StaticFiles> {
        let given = root.as_ref();
        let root = Root::open(given)?;
        let cache = options.cache.map(|o| Arc::new(FileCache::new(o)));
        Ok(StaticFiles {
            root: Arc::new(SharedRoot {
                given: given.to_path_buf(),
                current: std::sync::RwLock::new(Arc::new(root)),
                checked: std::sync::atomic::AtomicU64::new(0),
            }),
            options,
            cache,
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

    /// Opens `rel` under the root without following anything out of it.
    ///
    /// The fast path is one `openat2(RESOLVE_BENEATH)` relative to the root
    /// directory: the kernel itself refuses any resolution, `..` or symlink,
    /// that would leave the root, with no window between check and open.
    /// When it refuses (or the kernel is older than 5.6), the canonical path
    /// decides: an absolute symlink that lands inside the root is allowed.
    ///
    /// Files are opened with `O_NONBLOCK` so that a FIFO cannot block the
    /// worker, and the type is checked on the open descriptor, not the path.
    fn open(&self, root: &Root, rel: &Path) -> io::Result<Opened> {
        let path = root.path.join(rel);
        if !self.options.follow_symlinks {
            match open_beneath(&root.dir, rel) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    return Ok(Opened { file, meta, path });
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::ENOSYS | libc::EPERM)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        let target = if self.options.follow_symlinks {
            path.clone()
        } else {
            let canonical = fs::canonicalize(&path)?;
            if !canonical.starts_with(&root.path) {
                return Err(io::Error::new(io::ErrorKind::NotFound, "outside the root"));
            }
            canonical
        };
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if !self.options.follow_symlinks {
            flags |= libc::O_NOFOLLOW;
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(&target)?;
        let meta = file.metadata()?;
        Ok(Opened { file, meta, path })
    }

    /// Serves a regular file: picks the representation (precompressed or
    /// not), evaluates preconditions, then ranges.
    /// `fill`, when given, receives what the cache needs if the answer is a
    /// plain `200` of the whole file.
    fn serve_file(
        &self,
        root: &Root,
        req: &Request,
        opened: Opened,
        fill: Option<&mut Option<Fill>>,
    ) -> Response {
        let content_type = content_type(&opened.path);
        let (opened, coding, vary) = self.negotiate(root, req, opened);
        let Opened { file, meta, path } = opened;
        let validators = Validators::of(&meta, coding);
        let mut headers = vec![("ETag".to_string(), validators.etag.clone())];
        if let Some(mtime) = validators.last_modified {
            headers.push(("Last-Modified".into(), httpdate::fmt_http_date(mtime)));
        }
        if let Some(cc) = &self.options.cache_control {
            headers.push(("Cache-Control".into(), cc.clone()));
        }
        if vary {
            headers.push(("Vary".into(), "Accept-Encoding".into()));
        }
        let with = |mut resp: Response, headers: Vec<(String, String)>| {
            for (n, v) in headers {
                resp = resp.header(n, v);
            }
            resp
        };
        match conditional::evaluate(req, &validators) {
            Precondition::Proceed => {}
            // §15.4.5: a 304 carries the validators and caching fields.
            Precondition::NotModified => return with(Response::new(304), headers),
            Precondition::Failed => return Response::error(412),
        }
        headers.push(("Accept-Ranges".into(), "bytes".into()));
        let mut resp = Response::new(200).header("Content-Type", content_type.clone());
        if let Some(coding) = coding {
            resp = resp.header("Content-Encoding", coding);
        }
        let len = meta.len();
        let ranges = match req.header_str("range") {
            // §14.2: Range is defined for GET only; HEAD gets the 200 headers.
            Some(value)
                if *req.method() == Method::Get
                    && conditional::if_range_allows(req, &validators) =>
            {
                range::parse_ranges(value, len)
            }
            _ => Ranges::Ignore,
        };
        match ranges {
            Ranges::Ignore => {
                if let (Some(fill), Ok(rel)) = (fill, path.strip_prefix(&root.path)) {
                    *fill = Some(Fill {
                        rel: rel.to_path_buf(),
                        id: FileId::of(&meta),
                        validators,
                    });
                }
                with(resp, headers).body(Body::File {
                    file,
                    offset: 0,
                    len,
                })
            }
            Ranges::Unsatisfiable => with(Response::error(416), headers)
                .header("Content-Range", format!("bytes */{len}")),
            Ranges::Satisfiable(ranges) if ranges.len() == 1 => {
                let r = &ranges[0];
                let mut resp = with(resp, headers);
                resp.set_status(206);
                resp.header(
                    "Content-Range",
                    format!("bytes {}-{}/{len}", r.start, r.end - 1),
                )
                .body(Body::File {
                    file,
                    offset: r.start,
                    len: r.end - r.start,
                })
            }
            Ranges::Satisfiable(ranges) => {
                let boundary = boundary();
                let mut parts = Vec::with_capacity(ranges.len() * 2 + 1);
                for r in &ranges {
                    let head = format!(
                        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{len}\r\n\r\n",
                        r.start,
                        r.end - 1
                    );
                    parts.push(Part::Bytes(Bytes::from(head)));
                    parts.push(Part::File {
                        offset: r.start,
                        len: r.end - r.start,
                    });
                }
                parts.push(Part::Bytes(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
                let mut resp = with(Response::new(206), headers).header(
                    "Content-Type",
                    format!("multipart/byteranges; boundary={boundary}"),
                );
                if let Some(coding) = coding {
                    resp = resp.header("Content-Encoding", coding);
                }
                resp.body(Body::Parts { file, parts })
            }
        }
    }

    /// Picks a precompressed sibling if the client accepts one. Returns the
    /// file to send, its content coding, and whether the response varies by
    /// `Accept-Encoding` (it does whenever a sibling exists).
    fn negotiate(
        &self,
        root: &Root,
        req: &Request,
        opened: Opened,
    ) -> (Opened, Option<&'static str>, bool) {
        if !self.options.precompressed {
            return (opened, None, false);
        }
        let Ok(rel) = opened.path.strip_prefix(&root.path).map(Path::to_path_buf) else {
            return (opened, None, false);
        };
        let accept = req.header_str("accept-encoding").unwrap_or("");
        let mut best: Option<(f32, &'static str, Opened)> = None;
        let mut vary = false;
        for (coding, suffix) in CODINGS {
            let mut name = rel.clone().into_os_string();
            name.push(suffix);
            let Ok(sibling) = self.open(root, Path::new(&name)) else {
                continue;
            };
            if !sibling.meta.is_file() {
                continue;
            }
            vary = true;
            let q = accept_q(accept, coding);
            if q > 0.0 && best.as_ref().is_none_or(|(bq, _, _)| q > *bq) {
                best = Some((q, coding, sibling));
            }
        }
        match best {
            Some((_, coding, sibling)) => (sibling, Some(coding), vary),
            None => (opened, None, vary),
        }
    }

    /// The 404 page: the root's `404.html` if there is one, else a built-in
    /// page.
    fn not_found(&self, root: &Root) -> Response {
        let page = self
            .open(root, Path::new("404.html"))
            .ok()
            .filter(|o| o.meta.is_file() && o.meta.len() <= 1024 * 1024)
            .and_then(|mut o| {
                let mut buf = Vec::with_capacity(o.meta.len() as usize);
                o.file.read_to_end(&mut buf).ok().map(|_| buf)
            });
        let body = match page {
            Some(bytes) => Bytes::from(bytes),
            None => Bytes::from_static(BUILTIN_404.as_bytes()),
        };
        Response::new(404)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(Body::Bytes(body))
    }

    /// Maps a failure to open or list a path to a response. Only errors that
    /// say the path names nothing are a 404: running out of descriptors or
    /// memory is the server's trouble, not a missing file.
    fn open_failed(&self, root: &Root, req: &Request, err: &io::Error) -> Response {
        match err.raw_os_error() {
            Some(libc::EIO) => {
                log::error!("cannot read a file: {err}");
                Response::error(500)
            }
            _ if is_resource_error(err) => {
                log::warn!("cannot open a file: {err}");
                Response::error(503).header("Retry-After", "1")
            }
            _ if err.kind() == io::ErrorKind::PermissionDenied => Response::error(403),
            _ => self.missing(root, req),
        }
    }

    /// A path that names nothing: the SPA's index for extension-less paths
    /// when `spa` is on, else 404.
    fn missing(&self, root: &Root, req: &Request) -> Response {
        let last = req.path().rsplit('/').next().unwrap_or("");
        if self.options.spa && !last.contains('.') {
            for index in &self.options.index {
                if let Ok(o) = self.open(root, Path::new(index))
                    && o.meta.is_file()
                {
                    return self.serve_file(root, req, o, None);
                }
            }
        }
        self.not_found(root)
    }

    /// Answers a CORS preflight (an OPTIONS request when `cors` is on).
    fn preflight(&self, req: &Request) -> Response {
        let mut resp = Response::new(204)
            .header("Allow", "GET, HEAD, OPTIONS")
            .header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            .header("Access-Control-Max-Age", "86400");
        if let Some(h) = req.header_str("access-control-request-headers") {
            resp = resp.header("Access-Control-Allow-Headers", h);
        }
        resp
    }

    /// Adds the fields every response of this handler carries.
    fn decorate(&self, mut resp: Response) -> Response {
        if self.options.cors {
            resp = resp.header("Access-Control-Allow-Origin", "*");
        }
        for (n, v) in &self.options.headers {
            resp = resp.header(n.clone(), v.clone());
        }
        resp
    }

    fn respond(&self, root: &Root, req: &Request, fill: &mut Option<Fill>) -> Response {
        match req.method() {
            Method::Get | Method::Head => {}
            Method::Options if self.options.cors => return self.preflight(req),
            m if m.is_standard() => return Response::error(405).header("Allow", "GET, HEAD"),
            _ => return Response::error(501),
        }
        let safe = match resolve_path(req.path()) {
            Ok(safe) => safe,
            Err(PathError::Invalid) => return Response::error(400),
            Err(PathError::Hidden) => return self.not_found(root),
        };
        let rel = safe.relative();
        let opened = match self.open(root, &rel) {
            Ok(o) => o,
            Err(e) => return self.open_failed(root, req, &e),
        };
        if opened.meta.is_file() {
            return self.serve_file(root, req, opened, Some(fill));
        }
        if !opened.meta.is_dir() {
            // FIFOs, sockets, devices: never served.
            return self.not_found(root);
        }
        if !safe.has_trailing_slash() {
            let mut location = safe.directory_url();
            if let Some(q) = req.query() {
                location.push('?');
                location.push_str(q);
            }
            return Response::error(301).header("Location", location);
        }
        for index in &self.options.index {
            match self.open(root, &rel.join(index)) {
                Ok(o) if o.meta.is_file() => return self.serve_file(root, req, o, Some(fill)),
                // An index that exists but cannot be opened right now must
                // not turn into a 404 (or a listing).
                Err(e) if is_resource_error(&e) => return self.open_failed(root, req, &e),
                _ => continue,
            }
        }
        if self.options.listing {
            let dir = root.path.join(&rel);
            return match crate::files::listing::render_listing(&dir, &safe.display_path()) {
                Ok(html) => Response::new(200)
                    .header("Content-Type", "text/html; charset=utf-8")
                    .body(Body::Bytes(Bytes::from(html))),
                Err(e) => self.open_failed(root, req, &e),
            };
        }
        self.not_found(root)
    }
}

impl StaticFiles {
    /// The cache key's second half: the `Accept-Encoding` value when it can
    /// change which file is sent.
    fn accept_key<'r>(&self, req: &'r Request) -> &'r [u8] {
        if self.options.precompressed {
            req.header("accept-encoding").unwrap_or(b"")
        } else {
            b""
        }
    }

    /// Everything but a cache hit. Out of line, so that a hit runs in a
    /// small stack frame: with a thousand connections, each one's stack is
    /// cold when its next request comes.
    #[inline(never)]
    fn handle_uncached(&self, root: &Root, req: &Request) -> Response {
        let mut fill = None;
        let resp = self.decorate(self.respond(root, req, &mut fill));
        match fill {
            Some(fill) => self.fill_cache(req, fill, resp),
            None => resp,
        }
    }

    /// A `200` from the cache, when it holds this path, the file is
    /// unchanged and the preconditions let it through. Everything else
    /// (ranges, `304`, `412`, other methods) takes the slow path.
    fn cached(&self, root: &Root, req: &Request) -> Option<Response> {
        let cache = self.cache.as_ref()?;
        if !matches!(req.method(), Method::Get | Method::Head) || req.header("range").is_some() {
            return None;
        }
        let entry = cache.get(&root.dir, req.path(), self.accept_key(req))?;
        if conditional::evaluate(req, &entry.validators) != Precondition::Proceed {
            return None;
        }
        Some(
            Response::new(200)
                .raw_headers(entry.headers.clone())
                .body(Body::Bytes(entry.body.clone())),
        )
    }

    /// Puts a slow-path `200` in the cache when the file is small, settled,
    /// and did not change while it was read. Returns the response to send:
    /// the same head, with the bytes just read as its body.
    fn fill_cache(&self, req: &Request, fill: Fill, resp: Response) -> Response {
        let Some(cache) = &self.cache else {
            return resp;
        };
        let Body::File {
            file,
            offset: 0,
            len,
        } = resp.body_ref()
        else {
            return resp;
        };
        // A file the whole cache could not hold is not read into memory
        // (`--cache-max-file` above `--cache-size`).
        if resp.status() != 200
            || *len != fill.id.size()
            || *len > cache.options().max_file
            || *len >= cache.options().max_bytes as u64
            || !fill
                .id
                .settled(std::time::SystemTime::now(), cache.options().settle)
        {
            return resp;
        }
        let Ok(rel) = CString::new(fill.rel.into_os_string().into_vec()) else {
            return resp;
        };
        let mut bytes = vec![0u8; *len as usize];
        if file.read_exact_at(&mut bytes, 0).is_err()
            || file.metadata().map(|m| FileId::of(&m)).ok() != Some(fill.id)
        {
            return resp;
        }
        let headers = resp.rendered_headers();
        let body = Bytes::from(bytes);
        cache.insert(Entry::new(
            req.path(),
            self.accept_key(req),
            rel,
            fill.id,
            fill.validators,
            headers.clone(),
            body.clone(),
        ));
        Response::new(200)
            .raw_headers(headers)
            .body(Body::Bytes(body))
    }
}

impl Handler for StaticFiles {
    fn handle(&self, req: &Request) -> Response {
        // The guard is held only while the cache is asked (no yield there);
        // the slow path keeps its own reference.
        let guard = self.root.get();
        if let Some(hit) = self.cached(&guard, req) {
            return hit;
        }
        let root = Arc::clone(&guard);
        drop(guard);
        self.handle_uncached(&root, req)
    }
}

/// Whether an open failed for want of resources (or an I/O error), rather
/// than because the path names nothing.
fn is_resource_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EIO)
    )
}

/// The q-value `Accept-Encoding` gives `coding` (RFC 9110 §12.5.3): its own
/// entry, else `*`, else 0 (not acceptable).
fn accept_q(accept: &str, coding: &str) -> f32 {
    let mut star = None;
    for item in accept.split(',') {
        let mut params = item.split(';');
        let name = params.next().unwrap_or("").trim();
        let q = params
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q;
        }
        if name == "*" {
            star = Some(q);
        }
    }
    star.unwrap_or(0.0)
}

/// A multipart boundary no file is likely to contain.
fn boundary() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "coserve{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

/// `openat2(dir, rel, O_RDONLY | O_NONBLOCK, RESOLVE_BENEATH |
/// RESOLVE_NO_MAGICLINKS)`.
fn open_beneath(dir: &File, rel: &Path) -> io::Result<File> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c_rel = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    /// `struct open_how` from linux/openat2.h (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `dir` is an open directory descriptor for the duration of the
    // call, `c_rel` is a NUL-terminated string and `how` a valid `open_how`
    // whose size is passed alongside it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c_rel.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

/// The `Content-Type` for a file, by extension. Text types say they are
/// UTF-8; unknown types are `application/octet-stream`.
pub fn content_type(path: &Path) -> String {
    let Some(mime) = mime_guess::from_path(path).first() else {
        return "application/octet-stream".into();
    };
    match mime.essence_str() {
        "application/javascript" | "text/javascript" => "text/javascript; charset=utf-8".into(),
        "application/json" => "application/json; charset=utf-8".into(),
        "image/svg+xml" => "image/svg+xml; charset=utf-8".into(),
        _ if mime.type_() == mime_guess::mime::TEXT => {
            format!("{}; charset=utf-8", mime.essence_str())
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(path: &str) -> Result<PathBuf, PathError> {
        resolve_path(path).map(|s| s.relative())
    }

    #[test]
    fn traversal_spellings_never_leave_the_root() {
        let invalid = [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/%2e./etc/passwd",
            "/..%2fetc%2fpasswd",
            "/..%2Fetc/passwd",
            "/a%2f..%2f..%2fetc/passwd",
            "/..\\etc\\passwd",
            "/%5c..%5cetc/passwd",
            "/a/%5c../b",
            "/%00",
            "/a%00.html",
            "/a%0d%0ab",
            "/a%7fb",
            "/a%1bb",
            "relative",
            "*",
            "",
        ];
        for p in invalid {
            assert_eq!(rel(p), Err(PathError::Invalid), "{p}");
        }
    }

    #[test]
    fn double_encoding_is_decoded_once() {
        // `%252e%252e` is the literal directory name `%2e%2e`, not `..`.
        assert_eq!(rel("/%252e%252e/x"), Ok(PathBuf::from("%2e%2e/x")));
        assert_eq!(rel("/%252f"), Ok(PathBuf::from("%2f")));
    }

    #[test]
    fn normalisation() {
        let ok = [
            ("/", ""),
            ("/index.html", "index.html"),
            ("//a//b/", "a/b"),
            ("/a/./b", "a/b"),
            ("/a/../b", "b"),
            ("/a/b/..", "a"),
            ("/%e2%9c%93.txt", "\u{2713}.txt"),
            ("/a%20b", "a b"),
            ("/a%2fb", "a/b"),
            ("/.well-known/acme", ".well-known/acme"),
            ("/%zz", "%zz"),
        ];
        for (p, want) in ok {
            assert_eq!(rel(p), Ok(PathBuf::from(want)), "{p}");
        }
        assert!(resolve_path("/a/").unwrap().has_trailing_slash());
        assert!(resolve_path("/a/.").unwrap().has_trailing_slash());
        assert!(!resolve_path("/a").unwrap().has_trailing_slash());
    }

    #[test]
    fn dotfiles_are_hidden_except_well_known() {
        for p in [
            "/.env",
            "/.git/config",
            "/a/.htpasswd",
            "/%2egit/HEAD",
            "/.well-known/.secret",
        ] {
            assert_eq!(rel(p), Err(PathError::Hidden), "{p}");
        }
        assert!(rel("/.well-known/security.txt").is_ok());
    }

    #[test]
    fn redirect_target_is_never_protocol_relative() {
        for p in [
            "//evil.example/..",
            "//evil.example",
            "/%2fevil.example",
            "///evil.example//x",
        ] {
            let url = resolve_path(p).unwrap().directory_url();
            assert!(
                url.starts_with('/') && !url.starts_with("//"),
                "{p} -> {url}"
            );
        }
        assert_eq!(
            resolve_path("//evil.example").unwrap().directory_url(),
            "/evil.example/"
        );
        assert_eq!(
            resolve_path("/a b/c?d").unwrap().directory_url(),
            "/a%20b/c%3Fd/"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.css")), "text/css; charset=utf-8");
        assert_eq!(
            content_type(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(
            content_type(Path::new("a.unknownext")),
            "application/octet-stream"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
