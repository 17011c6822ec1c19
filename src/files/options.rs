//! What a static-file handler serves and how.

use super::cache::CacheOptions;
use crate::response::{HeaderError, check_header};

/// Which symlinks [`StaticFiles`](crate::StaticFiles) follows out of its
/// root. A symlink that stays beneath the root is always followed; `..` in a
/// URL never climbs out, whatever the policy. docs/security.md has the
/// threat model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symlinks {
    /// Never serve a file outside the root: a symlink that leads out is a
    /// 404.
    Refuse,
    /// Follow a symlink out of the root only when the link and its target
    /// have the same owner, as nginx's `disable_symlinks if_not_owner`: a
    /// link can expose only what its owner could publish anyway. The
    /// default: it serves sites whose shared assets are links (Debian's
    /// documentation packages) and refuses a link someone planted to
    /// another user's file.
    #[default]
    SameOwner,
    /// Follow every symlink, as `python3 -m http.server` does.
    Follow,
}

impl Symlinks {
    /// The name the command line's `--symlinks` takes.
    pub fn name(self) -> &'static str {
        match self {
            Symlinks::Refuse => "refuse",
            Symlinks::SameOwner => "owner",
            Symlinks::Follow => "follow",
        }
    }
}

impl std::str::FromStr for Symlinks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(Symlinks::Refuse),
            "owner" => Ok(Symlinks::SameOwner),
            "follow" => Ok(Symlinks::Follow),
            other => Err(format!(
                "unknown symlink policy {other:?} (refuse, owner or follow)"
            )),
        }
    }
}

impl std::fmt::Display for Symlinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Options for [`StaticFiles`](crate::StaticFiles), built with chained
/// setters from the defaults:
///
/// ```
/// use coserve::FilesOptions;
/// let options = FilesOptions::new()
///     .listing(false)
///     .cache_control("public, max-age=3600")
///     .header("X-Frame-Options", "DENY");
/// ```
///
/// A header field that could not be sent (a name that is not a token, a
/// value with CR or LF) makes [`StaticFiles::new`](crate::StaticFiles::new)
/// fail, rather than every response.
#[derive(Debug, Clone)]
pub struct FilesOptions {
    pub(crate) symlinks: Symlinks,
    pub(crate) index: Vec<String>,
    pub(crate) precompressed: bool,
    pub(crate) compress: bool,
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
            symlinks: Symlinks::SameOwner,
            index: vec!["index.html".into()],
            precompressed: true,
            compress: true,
            listing: true,
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
    /// The defaults, which are the `coserve` command's: `index.html` serves
    /// a directory, and a directory without one is listed; precompressed
    /// siblings are served; symlinks out of the root are followed when the
    /// link and its target have the same owner ([`Symlinks::SameOwner`]);
    /// the file cache on with [`CacheOptions::default`].
    pub fn new() -> FilesOptions {
        FilesOptions::default()
    }

    /// Which symlinks out of the root are followed
    /// ([`Symlinks::SameOwner`]). A link refused is a 404, a listing leaves
    /// it out, and a warning names it once.
    pub fn symlinks(mut self, policy: Symlinks) -> FilesOptions {
        self.symlinks = policy;
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

    /// Compress text, JavaScript, JSON, XML, SVG and wasm files of 1 KiB
    /// or more with `br`, `zstd` or `gzip`, as the client accepts, when
    /// they have no precompressed sibling (on). Each file version is
    /// compressed once and kept (128 MiB at most, least recently used out
    /// first); files over 1 MiB are streamed through a fast encoder. A
    /// request with `Range` gets the file as it is.
    pub fn compress(mut self, on: bool) -> FilesOptions {
        self.compress = on;
        self
    }

    /// List directories that have no index file (on). Off, such a
    /// directory is a 404 whose page says that listing is off.
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
