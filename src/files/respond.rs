//! The response pipeline: from a request to the file, directory, listing
//! or error page it gets, with preconditions and ranges; and the file
//! cache's place in front of it.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::cache::{Entry, FileCache, FileId, Held};
use super::compress::{self, CompressedStore};
use super::conditional::{self, Precondition, Validators};
use super::listing::render_listing;
use super::negotiate::{content_type, negotiate};
use super::open::{Opened, Purpose, Root, is_resource_error, open};
use super::options::FilesOptions;
use super::path::{PathError, SafePath, resolve_path};
use super::range::{self, Ranges};
use super::siblings::{DirStamp, SiblingIndex};
use crate::request::{Method, Request};
use crate::response::{Body, Part, Response};
use crate::status::StatusCode;

/// What the slow path tells the cache about a plain `200` of a whole file.
pub(crate) struct Fill {
    /// The file sent (perhaps a precompressed sibling), relative to the root.
    rel: PathBuf,
    id: FileId,
    validators: Validators,
    /// Its directory's stamp, if the sibling index just took it.
    dir_stamp: Option<DirStamp>,
}

/// Who named the path being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// The request's URL: a directory without its trailing slash is
    /// redirected, one without an index may be listed, and `spa` applies.
    ByUrl,
    /// A handler, with [`StaticFiles::serve`](crate::StaticFiles::serve):
    /// the URL is the handler's, so a directory is served by its index or
    /// not at all.
    ByHandler,
}

const BUILTIN_404: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n<body><h1>404 Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n";

const LISTING_OFF_404: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>404 Not Found</title></head>\n<body><h1>404 Not Found</h1><p>The requested URL was not found on this server.</p>\n<p>This directory has no index file, and directory listing is off.</p></body></html>\n";

/// One request's view of the site: the root as now resolved, and the
/// options.
pub(crate) struct Site<'a> {
    pub root: &'a Root,
    pub options: &'a FilesOptions,
    pub siblings: &'a SiblingIndex,
    /// On-the-fly compression's store, when it is on.
    pub compressed: Option<&'a CompressedStore>,
}

impl Site<'_> {
    fn open(&self, rel: &Path) -> io::Result<Opened> {
        open(self.root, rel, self.options.symlinks, Purpose::Read)
    }

    /// Answers a request for its URL's path.
    pub(crate) fn respond(&self, req: &Request, fill: &mut Option<Fill>) -> Response {
        if let Some(refused) = self.refuse_method(req) {
            return refused;
        }
        match resolve_path(req.path()) {
            Ok(safe) => self.serve_path(req, &safe, Named::ByUrl, Some(fill)),
            Err(PathError::Invalid) => Response::error(StatusCode::BAD_REQUEST),
            Err(PathError::Hidden) => self.not_found(),
        }
    }

    /// Answers a request with the file a handler named.
    pub(crate) fn respond_with(
        &self,
        req: &Request,
        path: Result<SafePath, PathError>,
    ) -> Response {
        if let Some(refused) = self.refuse_method(req) {
            return refused;
        }
        match path {
            Ok(safe) => self.serve_path(req, &safe, Named::ByHandler, None),
            Err(_) => self.not_found(),
        }
    }

    /// Files are read with `GET` and `HEAD` (and, for CORS, asked about
    /// with `OPTIONS`); everything else is refused here.
    fn refuse_method(&self, req: &Request) -> Option<Response> {
        match req.method() {
            Method::Get | Method::Head => None,
            Method::Options if self.options.cors => Some(self.preflight(req)),
            m if m.is_standard() => {
                Some(Response::error(StatusCode::METHOD_NOT_ALLOWED).header("Allow", "GET, HEAD"))
            }
            _ => Some(Response::error(StatusCode::NOT_IMPLEMENTED)),
        }
    }

    fn serve_path(
        &self,
        req: &Request,
        safe: &SafePath,
        named: Named,
        mut fill: Option<&mut Option<Fill>>,
    ) -> Response {
        let rel = safe.relative();
        let opened = match self.open(&rel) {
            Ok(o) => o,
            Err(e) => return self.open_failed(req, &e, named),
        };
        if opened.meta.is_file() {
            // `/file.txt/` names a directory that is not there; served as
            // the file, its relative links would resolve below it (Go and
            // nginx answer 404 too).
            if safe.has_trailing_slash() {
                return self.not_found();
            }
            return self.serve_file(req, opened, fill);
        }
        if !opened.meta.is_dir() {
            // FIFOs, sockets, devices: never served.
            return self.not_found();
        }
        if named == Named::ByUrl && !safe.has_trailing_slash() {
            let mut location = safe.directory_url();
            if let Some(q) = req.query() {
                location.push('?');
                location.push_str(q);
            }
            return Response::redirect(StatusCode::MOVED_PERMANENTLY, &location);
        }
        for index in &self.options.index {
            match self.open(&rel.join(index)) {
                Ok(o) if o.meta.is_file() => return self.serve_file(req, o, fill.take()),
                // An index that exists but cannot be opened right now must
                // not turn into a 404 (or a listing).
                Err(e) if is_resource_error(&e) => return self.open_failed(req, &e, named),
                _ => continue,
            }
        }
        if named == Named::ByUrl {
            if !self.options.listing {
                return self.not_listed();
            }
            return match render_listing(self.root, safe, self.options.symlinks) {
                Ok(html) => Response::html(html),
                Err(e) => self.open_failed(req, &e, named),
            };
        }
        self.not_found()
    }

    /// The 404 for a directory without an index file when listing is off:
    /// the site's `404.html` if it has one, else a page that says why, so
    /// that whoever started the server sees what to change.
    fn not_listed(&self) -> Response {
        self.custom_404()
            .unwrap_or_else(|| builtin_404(LISTING_OFF_404))
    }

    /// Serves a regular file: picks the representation (precompressed or
    /// not), evaluates preconditions, then ranges. `fill`, when given,
    /// receives what the cache needs if the answer is a plain `200` of the
    /// whole file.
    fn serve_file(
        &self,
        req: &Request,
        opened: Opened,
        fill: Option<&mut Option<Fill>>,
    ) -> Response {
        let content_type = content_type(&opened.rel);
        let (opened, mut coding, mut vary, dir_stamp) = if self.options.precompressed {
            negotiate(self.root, req, opened, self.options.symlinks, self.siblings)
        } else {
            (opened, None, false, None)
        };
        let Opened { file, meta, rel } = opened;
        // Without a sibling, a compressible file is compressed here.
        let mut on_the_fly = None;
        if coding.is_none()
            && let Some(store) = self.compressed
            && meta.len() >= compress::MIN_SIZE
            && compress::compressible(&content_type)
        {
            vary = true;
            // Ranges count the file's own bytes: a request with one gets
            // the file as it is.
            let chosen = match req.header("range") {
                Some(_) => None,
                None => compress::choose(req.header_str("accept-encoding")),
            };
            if let Some(c) = chosen {
                // A client that holds this coding already gets its 304
                // before anything is compressed.
                let coded = Validators::of(&meta, Some(c.name()));
                if conditional::evaluate(req, &coded) == Precondition::NotModified {
                    return self.not_modified(&coded, vary);
                }
                let id = FileId::of(&meta);
                on_the_fly = if meta.len() > compress::MEMORY_MAX {
                    match store.large(&file, id, c) {
                        Some((temp, len)) => Some((c, c.name(), Body::shared_file(temp, 0, len))),
                        None => file
                            .try_clone()
                            .ok()
                            .map(|f| (c, c.fast_tag(), compress::stream_body(f, c))),
                    }
                } else {
                    store
                        .compressed(&file, id, c)
                        .map(|bytes| (c, c.name(), Body::from(bytes)))
                };
            }
            coding = on_the_fly.as_ref().map(|(_, tag, _)| *tag);
        }
        let validators = Validators::of(&meta, coding);
        let mut headers = vec![("ETag", validators.etag.clone())];
        if let Some(mtime) = validators.last_modified {
            headers.push(("Last-Modified", httpdate::fmt_http_date(mtime)));
        }
        if let Some(cc) = &self.options.cache_control {
            headers.push(("Cache-Control", cc.clone()));
        }
        if vary {
            headers.push(("Vary", "Accept-Encoding".into()));
        }
        let with = |mut resp: Response, headers: Vec<(&str, String)>| {
            for (n, v) in headers {
                resp = resp.header(n, v);
            }
            resp
        };
        match conditional::evaluate(req, &validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => return self.not_modified(&validators, vary),
            Precondition::Failed => return Response::error(StatusCode::PRECONDITION_FAILED),
        }
        if let Some((c, _, body)) = on_the_fly {
            // Not cached as a response (`fill` stays empty): the
            // compressed bytes are kept by the store, per file version.
            return with(Response::new(StatusCode::OK), headers)
                .header("Content-Type", content_type)
                .header("Content-Encoding", c.name())
                .body(body);
        }
        headers.push(("Accept-Ranges", "bytes".into()));
        let mut resp = Response::new(StatusCode::OK).header("Content-Type", content_type.clone());
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
                if let Some(fill) = fill {
                    *fill = Some(Fill {
                        rel,
                        id: FileId::of(&meta),
                        validators,
                        dir_stamp,
                    });
                }
                with(resp, headers).body(Body::file_range(file, 0, len))
            }
            Ranges::Unsatisfiable => {
                with(Response::error(StatusCode::RANGE_NOT_SATISFIABLE), headers)
                    .header("Content-Range", format!("bytes */{len}"))
            }
            Ranges::Satisfiable(ranges) if ranges.len() == 1 => {
                let r = &ranges[0];
                with(resp, headers)
                    .with_status(StatusCode::PARTIAL_CONTENT)
                    .header(
                        "Content-Range",
                        format!("bytes {}-{}/{len}", r.start, r.end - 1),
                    )
                    .body(Body::file_range(file, r.start, r.end - r.start))
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
                let mut resp = with(Response::new(StatusCode::PARTIAL_CONTENT), headers).header(
                    "Content-Type",
                    format!("multipart/byteranges; boundary={boundary}"),
                );
                if let Some(coding) = coding {
                    resp = resp.header("Content-Encoding", coding);
                }
                resp.body(Body::parts(file, parts))
            }
        }
    }

    /// §15.4.5: a 304 carries the validators and caching fields.
    fn not_modified(&self, validators: &Validators, vary: bool) -> Response {
        let mut resp =
            Response::new(StatusCode::NOT_MODIFIED).header("ETag", validators.etag.clone());
        if let Some(mtime) = validators.last_modified {
            resp = resp.header("Last-Modified", httpdate::fmt_http_date(mtime));
        }
        if let Some(cc) = &self.options.cache_control {
            resp = resp.header("Cache-Control", cc.clone());
        }
        if vary {
            resp = resp.header("Vary", "Accept-Encoding");
        }
        resp
    }

    /// The 404 page: the root's `404.html` if there is one, else a built-in
    /// page.
    fn not_found(&self) -> Response {
        self.custom_404()
            .unwrap_or_else(|| builtin_404(BUILTIN_404))
    }

    /// The root's `404.html`, if it has one of at most a megabyte.
    fn custom_404(&self) -> Option<Response> {
        let page = self
            .open(Path::new("404.html"))
            .ok()
            .filter(|o| o.meta.is_file() && o.meta.len() <= 1024 * 1024)
            .and_then(|mut o| {
                let mut buf = Vec::with_capacity(o.meta.len() as usize);
                o.file.read_to_end(&mut buf).ok().map(|_| buf)
            });
        page.map(|bytes| page_404(Bytes::from(bytes)))
    }

    /// Maps a failure to open or list a path to a response. Only errors that
    /// say the path names nothing are a 404: running out of descriptors or
    /// memory is the server's trouble, not a missing file.
    fn open_failed(&self, req: &Request, err: &io::Error, named: Named) -> Response {
        match err.raw_os_error() {
            Some(libc::EIO) => {
                log::error!("cannot read a file: {err}");
                Response::error(StatusCode::INTERNAL_SERVER_ERROR)
            }
            _ if is_resource_error(err) => {
                log::warn!("cannot open a file: {err}");
                Response::error(StatusCode::SERVICE_UNAVAILABLE).header("Retry-After", "1")
            }
            _ if err.kind() == io::ErrorKind::PermissionDenied => {
                Response::error(StatusCode::FORBIDDEN)
            }
            _ => self.missing(req, named),
        }
    }

    /// A path that names nothing: the SPA's index for extension-less URLs
    /// when `spa` is on, else 404.
    fn missing(&self, req: &Request, named: Named) -> Response {
        let last = req.path().rsplit('/').next().unwrap_or("");
        if named == Named::ByUrl && self.options.spa && !last.contains('.') {
            for index in &self.options.index {
                if let Ok(o) = self.open(Path::new(index))
                    && o.meta.is_file()
                {
                    return self.serve_file(req, o, None);
                }
            }
        }
        self.not_found()
    }

    /// Answers a CORS preflight (an OPTIONS request when `cors` is on).
    fn preflight(&self, req: &Request) -> Response {
        let mut resp = Response::new(StatusCode::NO_CONTENT)
            .header("Allow", "GET, HEAD, OPTIONS")
            .header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
            .header("Access-Control-Max-Age", "86400");
        if let Some(h) = req.header_str("access-control-request-headers") {
            resp = resp.header("Access-Control-Allow-Headers", h);
        }
        resp
    }

    /// Adds the fields every response of this handler carries.
    pub(crate) fn decorate(&self, mut resp: Response) -> Response {
        if self.options.cors {
            resp = resp.header("Access-Control-Allow-Origin", "*");
        }
        for (n, v) in &self.options.headers {
            resp = resp.header(n.clone(), v.clone());
        }
        resp
    }

    /// Everything but a cache hit. Out of line, so that a hit runs in a
    /// small stack frame: with a thousand connections, each one's stack is
    /// cold when its next request comes.
    #[inline(never)]
    pub(crate) fn uncached(&self, cache: Option<&FileCache>, req: &Request) -> Response {
        let began = std::time::SystemTime::now();
        let mut fill = None;
        let resp = self.decorate(self.respond(req, &mut fill));
        match (cache, fill) {
            (Some(cache), Some(fill)) => self.fill_cache(cache, req, fill, resp, began),
            _ => resp,
        }
    }

    /// A `200` from the cache, when it holds this path, the file is
    /// unchanged and the preconditions let it through. Everything else
    /// (ranges, `304`, `412`, other methods) takes the slow path. Inlined
    /// into the handler, so that a hit costs one frame less of stack.
    #[inline]
    pub(crate) fn cached(&self, cache: &FileCache, req: &Request) -> Option<Response> {
        if !matches!(req.method(), Method::Get | Method::Head) || req.header("range").is_some() {
            return None;
        }
        let entry = cache.get(&self.root.dir, req.path(), self.accept_key(req))?;
        if conditional::evaluate(req, &entry.validators) != Precondition::Proceed {
            return None;
        }
        Some(
            Response::new(StatusCode::OK)
                .rendered_headers(entry.headers.clone())
                .body(entry.body()),
        )
    }

    /// The cache key's second half: the `Accept-Encoding` value when it can
    /// change which file is sent.
    fn accept_key<'r>(&self, req: &'r Request) -> &'r [u8] {
        if self.options.precompressed || self.options.compress {
            req.header("accept-encoding").unwrap_or(b"")
        } else {
            b""
        }
    }

    /// Puts a slow-path `200` in the cache when the file is small, settled,
    /// and did not change while it was read. Returns the response to send:
    /// the same head, with the bytes just read as its body.
    ///
    /// The directory the file is in is looked at too: the entry is used
    /// only while it stays as it was (a sibling or an index created there
    /// changes it), and only if it had settled before this request began,
    /// so that nothing this request decided (which sibling, which index)
    /// can have changed unseen.
    fn fill_cache(
        &self,
        cache: &FileCache,
        req: &Request,
        fill: Fill,
        resp: Response,
        began: std::time::SystemTime,
    ) -> Response {
        let Some((file, 0, len)) = resp.body_ref().as_file() else {
            return resp;
        };
        if resp.status() != StatusCode::OK
            || resp.refused_header().is_some()
            || len != fill.id.size()
            || !cache.can_hold(len)
            || !fill
                .id
                .settled(std::time::SystemTime::now(), cache.options().settle)
        {
            return resp;
        }
        if !cache.admit(req.path(), self.accept_key(req), len) {
            return resp;
        }
        let dir = match fill.rel.parent().map(|d| d.as_os_str().as_bytes()) {
            Some(d) if !d.is_empty() => d.to_vec(),
            _ => b".".to_vec(),
        };
        let Ok(dir) = CString::new(dir) else {
            return resp;
        };
        // The stamp the sibling index took for this request, or one taken
        // now: either way after `began`, and before anything this request
        // decided from the directory could have changed unseen.
        let dir_stamp = match fill.dir_stamp {
            Some(stamp) => stamp,
            None => match crate::sys::fstatat(self.root.dir.as_fd(), &dir, DirStamp::of) {
                Ok(stamp) => stamp,
                Err(_) => return resp,
            },
        };
        if !dir_stamp.settled(began, cache.options().settle) {
            return resp;
        }
        let Ok(rel) = CString::new(fill.rel.into_os_string().into_vec()) else {
            return resp;
        };
        // A small file is read into memory; a larger one is held open.
        let (held, body) = if len <= cache.options().max_file {
            let mut bytes = vec![0u8; len as usize];
            if file.read_exact_at(&mut bytes, 0).is_err()
                || file.metadata().map(|m| FileId::of(&m)).ok() != Some(fill.id)
            {
                return resp;
            }
            let bytes = Bytes::from(bytes);
            (Held::Bytes(bytes.clone()), Body::from(bytes))
        } else {
            let file = Arc::clone(file);
            (
                Held::File(Arc::clone(&file)),
                Body::shared_file(file, 0, len),
            )
        };
        let headers = resp.render_headers();
        cache.insert(Entry::new(
            req.path(),
            self.accept_key(req),
            (rel, fill.id),
            (dir, dir_stamp),
            fill.validators,
            headers.clone(),
            held,
        ));
        Response::new(StatusCode::OK)
            .rendered_headers(headers)
            .body(body)
    }
}

/// A `404` with an HTML page.
fn page_404(page: Bytes) -> Response {
    Response::new(StatusCode::NOT_FOUND)
        .header("Content-Type", "text/html; charset=utf-8")
        .body(page)
}

/// A `404` with one of the built-in pages.
fn builtin_404(page: &'static str) -> Response {
    page_404(Bytes::from_static(page.as_bytes()))
}

/// A multipart boundary no file is likely to contain.
fn boundary() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "coserve{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}
