//! Opening beneath the root: the one policy that decides whether a path,
//! symlinks and all, may be served, used by the handler and the listing
//! alike.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use crate::sys;

/// The directory served, as resolved at one moment.
#[derive(Debug)]
pub(crate) struct Root {
    /// Canonical: symlinks resolved, absolute.
    pub path: PathBuf,
    /// `path` opened as a directory, for `openat2(RESOLVE_BENEATH)`.
    pub dir: File,
    /// Device and inode of `dir`.
    id: (u64, u64),
}

impl Root {
    pub(crate) fn open(given: &Path) -> io::Result<Root> {
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
pub(crate) struct SharedRoot {
    given: PathBuf,
    current: RwLock<Arc<Root>>,
    /// The second ([`crate::clock::monotonic`]) of the last look.
    checked: AtomicU64,
}

impl SharedRoot {
    pub(crate) fn new(given: &Path) -> io::Result<SharedRoot> {
        Ok(SharedRoot {
            given: given.to_path_buf(),
            current: RwLock::new(Arc::new(Root::open(given)?)),
            checked: AtomicU64::new(0),
        })
    }

    /// The root now; looks at the given path again if a second has passed.
    pub(crate) fn get(&self) -> RwLockReadGuard<'_, Arc<Root>> {
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

/// A file opened for serving (or, in [`Purpose::Inspect`], for its
/// metadata only).
pub(crate) struct Opened {
    pub file: File,
    pub meta: fs::Metadata,
    /// The root's path joined with the relative path asked for.
    pub path: PathBuf,
}

/// What a path is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// To read: `O_RDONLY | O_NONBLOCK`, so that a FIFO cannot block.
    Read,
    /// To look at its type, size and time (a listing): `O_PATH`, which
    /// opens nothing.
    Inspect,
}

/// Opens `rel` under `root`, following symlinks only where they stay
/// beneath it, unless `follow_symlinks` says any will do.
///
/// The fast path is one `openat2(RESOLVE_BENEATH)` relative to the root
/// directory: the kernel itself refuses any resolution, `..` or symlink,
/// that would leave the root, with no window between check and open. When
/// it refuses (or the kernel is older than 5.6), the canonical path
/// decides: an absolute symlink that lands inside the root is allowed.
///
/// The type is taken from the open descriptor, not the path.
pub(crate) fn open(
    root: &Root,
    rel: &Path,
    follow_symlinks: bool,
    purpose: Purpose,
) -> io::Result<Opened> {
    let path = root.path.join(rel);
    let flags = match purpose {
        Purpose::Read => libc::O_RDONLY | libc::O_NONBLOCK,
        Purpose::Inspect => libc::O_PATH,
    };
    if !follow_symlinks {
        match open_beneath(&root.dir, rel, flags) {
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
    let (target, flags) = if follow_symlinks {
        (path.clone(), flags)
    } else {
        let canonical = fs::canonicalize(&path)?;
        if !canonical.starts_with(&root.path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "outside the root"));
        }
        (canonical, flags | libc::O_NOFOLLOW)
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_CLOEXEC)
        .open(&target)?;
    let meta = file.metadata()?;
    Ok(Opened { file, meta, path })
}

/// `openat2(dir, rel, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`.
fn open_beneath(dir: &File, rel: &Path, flags: libc::c_int) -> io::Result<File> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c_rel = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let fd = sys::openat2(
        dir.as_fd(),
        &c_rel,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )?;
    Ok(File::from(fd))
}

/// Whether an open failed for want of resources (or an I/O error), rather
/// than because the path names nothing.
pub(crate) fn is_resource_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EIO)
    )
}
