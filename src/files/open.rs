//! Opening beneath the root: the one policy that decides whether a path,
//! symlinks and all, may be served, used by the handler and the listing
//! alike.

use std::collections::HashSet;
use std::ffi::CString;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use super::options::Symlinks;
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
    /// The symlinks refused so far, each warned about once.
    refused: Mutex<HashSet<PathBuf>>,
}

/// The most refused symlinks remembered (and warned about) per root.
const MAX_REFUSALS_LOGGED: usize = 1024;

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
        Ok(Root {
            path,
            dir,
            id,
            refused: Mutex::default(),
        })
    }

    /// Warns that the symlink `link` (relative to the root) was refused,
    /// the first time it is.
    #[cold]
    fn refused(&self, link: PathBuf, target: Option<PathBuf>, why: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() >= MAX_REFUSALS_LOGGED || !refused.insert(link.clone()) {
            return;
        }
        let full = refused.len() == MAX_REFUSALS_LOGGED;
        drop(refused);
        let target = target.map_or_else(|| "outside the root".into(), |t| t.display().to_string());
        log::warn!(
            "not serving /{}: a symlink to {target}, outside {}: {why}{}",
            link.display(),
            self.path.display(),
            if full {
                " (further refused symlinks are not logged)"
            } else {
                ""
            }
        );
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
    /// The path asked for, relative to the root.
    pub rel: PathBuf,
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

/// Opens `rel` under `root`, following symlinks as `policy` says.
///
/// The fast path is one `openat2(RESOLVE_BENEATH)` relative to the root
/// directory: the kernel itself refuses any resolution, `..` or symlink,
/// that would leave the root, with no window between check and open. When
/// it refuses (or the kernel is older than 5.6), [`open_walking`] decides
/// link by link.
///
/// The type is taken from the open descriptor, not the path.
pub(crate) fn open(
    root: &Root,
    rel: &Path,
    policy: Symlinks,
    purpose: Purpose,
) -> io::Result<Opened> {
    let flags = match purpose {
        Purpose::Read => libc::O_RDONLY | libc::O_NONBLOCK,
        Purpose::Inspect => libc::O_PATH,
    };
    let file = if policy == Symlinks::Follow {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_CLOEXEC)
            .open(root.path.join(rel))?
    } else {
        match open_beneath(&root.dir, rel, flags) {
            Ok(file) => file,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EXDEV | libc::ENOSYS | libc::EPERM)
                ) =>
            {
                open_walking(root, rel, flags, policy)?
            }
            Err(e) => return Err(e),
        }
    };
    let meta = file.metadata()?;
    Ok(Opened {
        file,
        meta,
        rel: rel.to_path_buf(),
    })
}

/// Opens `rel` one name at a time from the root, deciding at each symlink:
/// one whose target is beneath the root is followed; one that leads out is
/// followed under [`Symlinks::SameOwner`] only when the link and the
/// target it resolves to have the same owner (nginx's
/// `disable_symlinks if_not_owner`), and never under [`Symlinks::Refuse`].
///
/// Each name is opened with `O_PATH | O_NOFOLLOW`, so a link is looked at
/// through its own descriptor: its owner and its text come from the link
/// that was opened, and the target opened is that text resolved from the
/// link's directory, not the name looked up again. A link swapped in
/// between cannot slip past the check.
fn open_walking(root: &Root, rel: &Path, flags: libc::c_int, policy: Symlinks) -> io::Result<File> {
    let names: Vec<&OsStr> = rel.iter().collect();
    let Some(last) = names.len().checked_sub(1) else {
        return Ok(File::from(sys::openat(root.dir.as_fd(), c".", flags)?));
    };
    let mut dir: Option<OwnedFd> = None;
    for (i, name) in names.iter().enumerate() {
        let at = dir.as_ref().map_or(root.dir.as_fd(), |d| d.as_fd());
        let want = if i == last {
            flags
        } else {
            libc::O_PATH | libc::O_DIRECTORY
        };
        let c_name = CString::new(name.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let node = File::from(sys::openat(at, &c_name, libc::O_PATH | libc::O_NOFOLLOW)?);
        let node_meta = node.metadata()?;
        let next = if node_meta.file_type().is_symlink() {
            let text = sys::readlink_fd(node.as_fd())?;
            let target = sys::openat(at, &text, want)?;
            let target_meta = File::from(target.try_clone()?).metadata()?;
            let at_link = || names[..=i].iter().collect::<PathBuf>();
            follows(
                root,
                &target,
                policy,
                node_meta.uid(),
                target_meta.uid(),
                at_link,
            )?;
            target
        } else if i == last {
            sys::openat(at, &c_name, flags | libc::O_NOFOLLOW)?
        } else if node_meta.is_dir() {
            node.into()
        } else {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        };
        dir = Some(next);
    }
    Ok(File::from(dir.expect("at least one name was opened")))
}

/// Whether a symlink whose target is open on `target` may be followed; a
/// refusal is `NotFound` (the URL gets a 404, as for nothing there) and is
/// logged, once per link.
fn follows(
    root: &Root,
    target: &OwnedFd,
    policy: Symlinks,
    link_owner: u32,
    target_owner: u32,
    link: impl FnOnce() -> PathBuf,
) -> io::Result<()> {
    // Where the target is, from the kernel: `/proc/self/fd` names what the
    // descriptor is open on. Without /proc, the target counts as outside.
    let resolved = fs::read_link(format!("/proc/self/fd/{}", target.as_raw_fd())).ok();
    if resolved.as_ref().is_some_and(|p| p.starts_with(&root.path)) {
        return Ok(());
    }
    let why = match policy {
        Symlinks::Follow => return Ok(()),
        Symlinks::SameOwner if link_owner == target_owner => return Ok(()),
        Symlinks::SameOwner => format!(
            "its target is owned by uid {target_owner}, the link by uid {link_owner} \
             (--symlinks follow serves it)"
        ),
        Symlinks::Refuse => "symlinks out of the root are refused \
             (--symlinks owner serves it if the link and its target have the same owner, \
             --symlinks follow serves it)"
            .to_string(),
    };
    root.refused(link(), resolved, &why);
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "a symlink out of the root, refused",
    ))
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
