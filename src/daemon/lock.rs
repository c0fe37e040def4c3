//! The exclusive lock a daemon holds on its state: one `run` (or `demo` daemon) per state file.
//!
//! Two daemons on one store would each poll, retry and alert, so every alert would go out
//! twice and both would spend the org's rate-limit budget. The lock is an OS advisory lock
//! (`flock(2)`) on a file beside the database, `<state>.lock`, so the kernel releases it when
//! the holder exits by any path, `kill -9` included: no stale lock file ever needs removing by
//! hand. The file's content (pid and host of the holder) is only for the refusal message; the
//! lock itself is what counts. Short commands (`status`, `retry`, `silence`) never take it:
//! they work beside a running daemon through SQLite's own locking.

use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

/// Exit status of a `run` refused because another daemon holds the state (sysexits.h
/// `EX_TEMPFAIL`: it will work once the other daemon is gone). Deliberately not in the unit's
/// `RestartPreventExitStatus=`: once the other holder stops, systemd's next restart succeeds.
pub const EXIT_LOCKED: u8 = 75;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock; `holder` is what it wrote (pid and host) if readable.
    #[error("the state {state} is in use by another okta-provwatch daemon ({holder}); stop it first, or give this one its own [state] path")]
    Held { state: PathBuf, holder: String },
    #[error("cannot take the lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    // Kept open: the lock lives as long as this descriptor.
    _file: File,
}

/// `state.db` -> `state.db.lock`, beside the database so that it shares its directory's
/// permissions and its lifetime.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl StateLock {
    /// Takes the lock for the state at `state` without waiting: a second daemon must fail at
    /// once, not queue behind the first. Creates the state's directory if missing (as opening
    /// the store would).
    pub fn acquire(state: &Path) -> Result<StateLock, LockError> {
        let path = lock_path(state);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // Not truncated on open: a refused contender must still read the holder's note.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut note = String::new();
                let _ = file.read_to_string(&mut note);
                return Err(LockError::Held {
                    state: state.to_path_buf(),
                    holder: describe_holder(&note),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        let note = format!("pid={} host={}\n", std::process::id(), hostname());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(io)?;
        Ok(StateLock { path, _file: file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// "pid 4242 on host ops-1" from the note, or a plain phrase when the holder wrote none yet
/// (it is between taking the lock and writing it).
fn describe_holder(note: &str) -> String {
    let field = |k: &str| {
        note.split_whitespace()
            .find_map(|w| w.strip_prefix(k).map(str::to_string))
    };
    match (field("pid="), field("host=")) {
        (Some(pid), Some(host)) => format!("pid {pid} on host {host}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "holder not yet recorded".to_string(),
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_host() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("sub").join("state.db");
        let first = StateLock::acquire(&state).unwrap();
        assert_eq!(first.path(), dir.path().join("sub").join("state.db.lock"));
        // flock(2) locks belong to the open file description, so a second open in the same
        // process conflicts exactly as a second process would.
        match StateLock::acquire(&state) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(
                    holder,
                    format!("pid {} on host {}", std::process::id(), hostname())
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        let note = std::fs::read_to_string(again.path()).unwrap();
        assert_eq!(note.lines().count(), 1, "{note:?}");
    }

    #[test]
    fn the_refusal_names_cause_and_next_step() {
        let e = LockError::Held {
            state: "/var/lib/x/state.db".into(),
            holder: describe_holder("pid=12 host=ops-1\n"),
        };
        assert_eq!(
            e.to_string(),
            "the state /var/lib/x/state.db is in use by another okta-provwatch daemon (pid 12 on host ops-1); stop it first, or give this one its own [state] path"
        );
        assert_eq!(describe_holder(""), "holder not yet recorded");
    }
}
