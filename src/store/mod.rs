//! The durable state of the daemon: one SQLite file in WAL mode, migrated at start-up.
//!
//! Everything that must survive a crash lives here (the log cursor, seen events, failures and
//! their history, retry claims, circuit breakers, alert groups, the outbox, silences). Several
//! processes may open the same file (the daemon and a manual `retry`): SQLite's locking and
//! `BEGIN IMMEDIATE` transactions arbitrate, with a busy timeout instead of errors.
//!
//! rusqlite is synchronous; async callers go through [`Store::call`], which runs the closure on
//! tokio's blocking pool so a slow disk never stalls the runtime's two worker threads.

pub mod alerts;
pub mod failures;
pub mod logcursor;
pub mod narration;
pub mod retry;
pub mod scan;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("migrations/0001_init.sql")),
    ("0002_retry", include_str!("migrations/0002_retry.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {path} has schema version {found}, newer than this build knows ({known}); upgrade okta-provwatch")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("state store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state store task failed: {0}")]
    Join(String),
}

/// Cloneable handle to the state database.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                        Some(format!("cannot create directory {}: {e}", dir.display())),
                    ))
                })?;
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        Self::init(conn, path.to_path_buf())
    }

    /// A private in-memory database, for unit tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?, PathBuf::from(":memory:"))
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL lets `status` read while the daemon writes; NORMAL sync is durable across process
        // crashes (only an OS crash can lose the last transactions, never corrupt the file).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn, &path)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` as one read on the blocking pool: a consistent snapshot, no writes.
    pub async fn read<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.call(move |c| run_tx(c, rusqlite::TransactionBehavior::Deferred, f))
            .await
    }

    /// Runs `f` as one write transaction (`BEGIN IMMEDIATE`) on the blocking pool: it commits
    /// when `f` returns `Ok` and rolls back on `Err`, so a unit of work lands whole or not at all.
    pub async fn write<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.call(move |c| run_tx(c, rusqlite::TransactionBehavior::Immediate, f))
            .await
    }

    /// [`Store::read`] on the current thread (CLI commands, tests).
    pub fn read_blocking<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    {
        self.blocking(move |c| run_tx(c, rusqlite::TransactionBehavior::Deferred, f))
    }

    /// [`Store::write`] on the current thread (CLI commands, tests).
    pub fn write_blocking<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Tx<'_>) -> Result<R, StoreError>,
    {
        self.blocking(move |c| run_tx(c, rusqlite::TransactionBehavior::Immediate, f))
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Runs `f` with the connection on the current thread (CLI commands, tests).
    pub fn blocking<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError>,
    {
        let mut guard = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
    }

    /// Checks the database answers and is writable (for `doctor`).
    pub fn check_writable(&self) -> Result<(), StoreError> {
        self.blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('doctor_check', '1')
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [],
            )?;
            tx.rollback()?;
            Ok(())
        })
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.blocking(|c| get_meta(c, key))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.blocking(|c| set_meta(c, key, value))
    }
}

pub fn get_meta(c: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?,
    )
}

pub fn set_meta(c: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// One unit of work on the state store: a transaction, opened and finished by
/// [`Store::read`] / [`Store::write`]. The table modules of `store/` take `&Tx` and speak typed
/// rows; nothing of the backend (rusqlite today, a second backend later) is visible past
/// `store/`, so callers compose several table operations atomically without touching SQL.
pub struct Tx<'c> {
    conn: &'c Connection,
}

impl<'c> Tx<'c> {
    /// The backend connection, for the table modules only.
    #[allow(dead_code)] // used by the table modules as they move onto `Tx`
    pub(in crate::store) fn conn(&self) -> &'c Connection {
        self.conn
    }
}

fn run_tx<F, R>(
    c: &mut Connection,
    behavior: rusqlite::TransactionBehavior,
    f: F,
) -> Result<R, StoreError>
where
    F: FnOnce(&Tx<'_>) -> Result<R, StoreError>,
{
    let tx = c.transaction_with_behavior(behavior)?;
    let out = f(&Tx { conn: &tx })?;
    tx.commit()?;
    Ok(out)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            known,
        });
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tracing::info!(migration = name, "applying state store migration");
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_a_new_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/state.db");
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        s.set_meta("k", "v").unwrap();
        drop(s);
        let s = Store::open(&p).unwrap();
        assert_eq!(s.get_meta("k").unwrap().as_deref(), Some("v"));
        let mode: String = s
            .blocking(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(mode, "wal");
        s.check_writable().unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        drop(Store::open(&p).unwrap());
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "user_version", 999).unwrap();
        drop(c);
        let e = Store::open(&p).unwrap_err();
        assert!(matches!(e, StoreError::TooNew { found: 999, .. }), "{e}");
    }
}
