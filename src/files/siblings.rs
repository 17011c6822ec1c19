//! Which files have precompressed siblings (`X.br`, `X.gz`), known per
//! directory, so that a request for a file without any (nearly all of
//! them, on most sites) costs one `stat` of its directory instead of two
//! failed opens, each a walk of the whole path.
//!
//! A directory's names are read once and trusted while the directory's
//! own `stat` (device, inode, modification and change times) is what it
//! was: creating, removing or renaming a file in it changes its times, so
//! a sibling created after a miss is seen on the next request. As in the
//! file cache, a directory changed less than `SETTLE` before it was read
//! is not trusted, since a second change within the same timestamp tick
//! would not show.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldhash::fast::RandomState;

use super::open::Root;
use crate::sys;

/// How old a directory's last change must be for its listing to be
/// trusted.
const SETTLE: Duration = Duration::from_millis(20);
/// The most directories remembered; past it the index starts again.
const MAX_DIRS: usize = 16 * 1024;

/// A directory as `stat` describes it: what changes when a name in it
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirStamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl DirStamp {
    pub(crate) fn of(st: &libc::stat) -> DirStamp {
        DirStamp {
            dev: st.st_dev,
            ino: st.st_ino,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// Whether the last change is at least `settle` before `now`.
    pub(crate) fn settled(&self, now: SystemTime, settle: Duration) -> bool {
        let (secs, nanos) = self.mtime.max(self.ctime);
        let Ok(secs) = u64::try_from(secs) else {
            return true;
        };
        let changed = UNIX_EPOCH + Duration::new(secs, nanos.clamp(0, 999_999_999) as u32);
        now.duration_since(changed).is_ok_and(|age| age >= settle)
    }
}

#[derive(Debug)]
struct Dir {
    stamp: DirStamp,
    /// The names `X` for which `X.br` or `X.gz` is in the directory.
    with_siblings: HashSet<OsString, RandomState>,
}

/// The index, shared by a handler's clones.
#[derive(Debug, Default)]
pub(crate) struct SiblingIndex {
    dirs: RwLock<HashMap<OsString, Arc<Dir>, RandomState>>,
}

impl SiblingIndex {
    /// Whether `rel` (a file, relative to the root) may have a
    /// precompressed sibling: `false` only when its directory, unchanged
    /// since it was read, holds none. With it, the directory's stamp as
    /// it was looked at, for the file cache.
    pub(crate) fn may_have_siblings(&self, root: &Root, rel: &Path) -> (bool, Option<DirStamp>) {
        let (Some(name), dir) = (rel.file_name(), rel.parent().unwrap_or(Path::new(""))) else {
            return (true, None);
        };
        let dir_key = dir.as_os_str();
        let Ok(c_dir) = CString::new(if dir_key.is_empty() {
            b".".as_slice()
        } else {
            dir_key.as_bytes()
        }) else {
            return (true, None);
        };
        let Ok(stamp) = sys::fstatat(root.dir.as_fd(), &c_dir, DirStamp::of) else {
            return (true, None);
        };
        let known = self
            .dirs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(dir_key)
            .cloned();
        if let Some(known) = known
            && known.stamp == stamp
        {
            return (known.with_siblings.contains(name), Some(stamp));
        }
        (self.read(root, dir_key, stamp, name), Some(stamp))
    }

    /// Reads the directory's names (after its stamp was taken, so that
    /// nothing older than the stamp is missed), remembers them if the
    /// directory has settled, and answers for `name`.
    #[cold]
    fn read(&self, root: &Root, dir: &OsStr, stamp: DirStamp, name: &OsStr) -> bool {
        let Ok(entries) = std::fs::read_dir(root.path.join(dir)) else {
            return true;
        };
        let mut with_siblings = HashSet::default();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let bytes = file_name.as_bytes();
            if let Some(base) = bytes
                .strip_suffix(b".br")
                .or_else(|| bytes.strip_suffix(b".gz"))
            {
                with_siblings.insert(OsStr::from_bytes(base).to_os_string());
            }
        }
        let answer = with_siblings.contains(name);
        if stamp.settled(SystemTime::now(), SETTLE) {
            let mut dirs = self.dirs.write().unwrap_or_else(|e| e.into_inner());
            if dirs.len() >= MAX_DIRS {
                dirs.clear();
            }
            dirs.insert(
                dir.to_os_string(),
                Arc::new(Dir {
                    stamp,
                    with_siblings,
                }),
            );
        }
        answer
    }
}
