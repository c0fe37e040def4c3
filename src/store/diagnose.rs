//! Why a state file cannot be opened, in words an operator can act on.
//!
//! SQLite reports every such failure as "unable to open database file" (code 14), which names
//! neither the cause nor the fix. When opening fails, [`unusable`] asks the file system what
//! is wrong with the path: a missing or non-directory parent, a read-only mount, or
//! permissions (with the owner of the file or directory and the uid this process runs as).
//! Every one of those outlives a restart, so callers exit with `exit::CONFIG` on them and
//! systemd does not restart the service every `RestartSec` in vain.

use rustix::fs::Access;
use rustix::io::Errno;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// A state path that cannot work until someone changes the system.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error(
        "state store {path}: {parent} is not a directory; point [state] path into a directory"
    )]
    NotADirectory { path: PathBuf, parent: PathBuf },
    #[error(
        "state store {path}: {dir} is on a read-only file system; point [state] path at a \
         writable directory (under systemd, StateDirectory= makes /var/lib/okta-provwatch \
         writable)"
    )]
    ReadOnly { path: PathBuf, dir: PathBuf },
    #[error(
        "state store {path}: permission denied: {what} is owned by uid {owner} (mode {mode:o}) \
         and this process runs as uid {uid}; run as the owner (under systemd: the service's \
         user) or fix the ownership"
    )]
    Permission {
        path: PathBuf,
        what: PathBuf,
        owner: u32,
        mode: u32,
        uid: String,
    },
}

/// The nearest existing ancestor of `path`'s directory (the directory itself if it exists).
fn existing_dir(path: &Path) -> Option<PathBuf> {
    let mut dir = path.parent()?.to_path_buf();
    if dir.as_os_str().is_empty() {
        dir = PathBuf::from(".");
    }
    loop {
        if std::fs::symlink_metadata(&dir).is_ok() {
            return Some(dir);
        }
        dir = dir.parent()?.to_path_buf();
    }
}

/// The uid this process runs as: the owner of `/proc/self` (Linux), else "unknown".
fn own_uid() -> String {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn denied(path: &Path, what: &Path) -> Unusable {
    let (owner, mode) = std::fs::metadata(what)
        .map(|m| (m.uid(), m.permissions().mode() & 0o7777))
        .unwrap_or((u32::MAX, 0));
    Unusable::Permission {
        path: path.to_path_buf(),
        what: what.to_path_buf(),
        owner,
        mode,
        uid: own_uid(),
    }
}

/// Why the state file at `path` cannot be opened for writing, if the file system says;
/// `None` when nothing wrong is visible (the caller keeps SQLite's own error then).
pub fn unusable(path: &Path) -> Option<Unusable> {
    let dir = existing_dir(path)?;
    if !dir.is_dir() {
        return Some(Unusable::NotADirectory {
            path: path.to_path_buf(),
            parent: dir,
        });
    }
    // The directory must take new files (the journal, the lock beside the database).
    match rustix::fs::access(&dir, Access::WRITE_OK | Access::EXEC_OK) {
        Err(Errno::ROFS) => {
            return Some(Unusable::ReadOnly {
                path: path.to_path_buf(),
                dir,
            })
        }
        Err(Errno::ACCESS) | Err(Errno::PERM) => return Some(denied(path, &dir)),
        _ => {}
    }
    if path.exists() {
        match rustix::fs::access(path, Access::READ_OK | Access::WRITE_OK) {
            Err(Errno::ROFS) => {
                return Some(Unusable::ReadOnly {
                    path: path.to_path_buf(),
                    dir,
                })
            }
            Err(Errno::ACCESS) | Err(Errno::PERM) => return Some(denied(path, path)),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_way_of_the_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let e = unusable(&file.join("sub").join("state.db")).unwrap();
        assert!(matches!(&e, Unusable::NotADirectory { parent, .. } if *parent == file));
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }

    #[test]
    fn a_usable_path_has_nothing_to_say() {
        let dir = tempfile::tempdir().unwrap();
        assert!(unusable(&dir.path().join("new").join("state.db")).is_none());
    }
}
