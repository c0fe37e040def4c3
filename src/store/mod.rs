//! The durable state of the daemon: one SQLite file in WAL mode, migrated at start-up. This
//! module owns every SQL statement of the crate; nothing else names a table or a column.
//!
//! Everything that must survive a crash lives here, one module per table:
//! [`failures`] (failure rows and their state machine), [`history`] (what happened to each),
//! [`apps`] (labels and names of the apps seen), [`claims`] (retry leases on failures),
//! [`circuits`] (per-app circuit breakers), [`cursor`] (the System Log cursor and the event
//! uuids already applied), [`scan`] (where an interrupted assignment scan resumes),
//! [`silences`], [`meta`] (small key/value facts), and the alerting rows in [`alerts`] (alert
//! groups, the outbox). Several processes may open the same file (the daemon and a manual
//! `retry`): SQLite's locking and `BEGIN IMMEDIATE` transactions arbitrate, with a busy
//! timeout instead of errors.
//!
//! # The unit of work
//! Callers run [`Store::read`] / [`Store::write`] (or their `_blocking` twins on the CLI) with
//! a closure that receives a [`Tx`] and calls the table modules' plain functions with it:
//! everything inside one closure is one transaction, committed when it returns `Ok`. The table
//! functions speak domain types ([`crate::domain`]) and typed rows; no `rusqlite` type is
//! visible past `store/`. rusqlite is synchronous, so the async forms run the closure on
//! tokio's blocking pool, and a slow disk never stalls the runtime's worker threads.
//!
//! # A second backend
//! [`Tx`] is the seam. A PostgreSQL backend makes `Tx` an enum (or adds a variant) holding its
//! own transaction, and each table module gains a `match` on it with that backend's SQL; the
//! function signatures, the domain types and the callers stay as they are. `Store::open`
//! picks the backend from the `[state]` configuration. Keep table functions small and free
//! of backend types in their signatures so this stays mechanical.
//!
//! About 135 of its lines are unit tests, kept beside the code they pin.

pub mod alert_groups;
pub mod apps;
pub mod circuits;
pub mod claims;
pub mod cursor;
pub mod diagnose;
pub mod expectations;
pub mod failures;
pub mod history;
pub mod inbox;
pub mod meta;
pub mod narration;
pub mod outbox;
pub mod quarantine;
pub mod scan;
pub mod silences;

/// The former name of [`cursor`]; kept so callers on other branches still compile.
pub mod logcursor {
    pub use super::cursor::*;
}

/// The former home of [`claims`] and [`circuits`]; kept so callers on other branches still
/// compile.
pub mod retry {
    pub use super::circuits::{
        get as get_circuit, list_open as open_circuits, save as save_circuit, Circuit,
    };
    pub use super::claims::*;
}

pub use meta::{get as get_meta, set as set_meta};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("migrations/0001_init.sql")),
    ("0002_retry", include_str!("migrations/0002_retry.sql")),
    (
        "0003_quarantine",
        include_str!("migrations/0003_quarantine.sql"),
    ),
    (
        "0004_deprovision",
        include_str!("migrations/0004_deprovision.sql"),
    ),
    (
        "0005_hooks_inbox",
        include_str!("migrations/0005_hooks_inbox.sql"),
    ),
    (
        "0007_retry_confirm",
        include_str!("migrations/0007_retry_confirm.sql"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: BackendError,
    },
    #[error("state store {path} has schema version {found}, newer than this build knows ({known}); upgrade okta-provwatch")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("state store: {0}")]
    Sql(#[source] BackendError),
    #[error("state store task failed: {0}")]
    Join(String),
    /// `status`, `silence --list` and friends found no state file: they never create one, or
    /// they would print a false all-clear for a mistyped `[state] path`.
    #[error(
        "no state file at {path}; is [state] path right? the daemon creates it on first start"
    )]
    Missing { path: String },
    /// The state file was made by an older build and not migrated yet (read-only opens cannot).
    #[error("state store {path} has schema version {found}, older than this build's ({known}); start the daemon once to migrate it")]
    TooOld {
        path: String,
        found: i64,
        known: i64,
    },
    /// Start-up waited [`OPEN_BUSY_DEADLINE`] for another process to let go of the store.
    #[error("state store {path} stayed locked by another process for {waited_secs}s while opening it; let a running `okta-provwatch status`/`retry` or a backup finish, then start again")]
    Busy { path: String, waited_secs: u64 },
    /// A unit of work asked for its transaction to be rolled back (nothing went wrong).
    #[error("state store: transaction rolled back on purpose")]
    RolledBack,
}

/// An error of the database backend, opaque so that no backend type (rusqlite today) is part
/// of the store's API: callers branch on [`StoreError`]'s variants, not on SQLite codes.
#[derive(Debug)]
pub struct BackendError(rusqlite::Error);

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> BackendError {
        BackendError(e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Sql(BackendError(e))
    }
}

/// How long one statement waits on a lock another process holds, in SQLite's busy handler.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long opening the store (switching to WAL, migrating) keeps trying while another process
/// holds it busy. SQLite's busy handler does not cover every case: a journal-mode switch or a
/// lock upgrade that would deadlock returns `SQLITE_BUSY` at once, which is what made a
/// `status` run during the daemon's first start kill it with "database is locked" (issue 10,
/// defect 11). Start-up retries those with backoff up to this bound instead.
pub const OPEN_BUSY_DEADLINE: Duration = Duration::from_secs(30);

/// Whether `e` is SQLite saying another connection holds a lock (worth waiting out).
fn is_busy(e: &StoreError) -> bool {
    let inner = match e {
        StoreError::Sql(b) | StoreError::Open { source: b, .. } => &b.0,
        _ => return false,
    };
    matches!(
        inner.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
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
        Self::open_waiting(path, BUSY_TIMEOUT, OPEN_BUSY_DEADLINE)
    }

    /// [`Store::open`] with explicit waits: `busy_timeout` per statement, `deadline` for the
    /// whole of opening and migrating while another process holds the store busy (tests use
    /// short ones).
    pub fn open_waiting(
        path: &Path,
        busy_timeout: Duration,
        deadline: Duration,
    ) -> Result<Store, StoreError> {
        let err = |source: rusqlite::Error| StoreError::Open {
            path: path.display().to_string(),
            source: source.into(),
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
        Self::init(conn, path.to_path_buf(), busy_timeout, deadline)
    }

    /// Opens an existing state file read-only: never creates a file or a directory, never
    /// migrates. For commands that only read (`status`, `silence --list`): a missing file is
    /// [`StoreError::Missing`], never an empty store that reads as "all clear".
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Self::open_existing_with(path, false)
    }

    /// Like [`Store::open_existing`] but writable (`silence --remove`): still never creates.
    pub fn open_existing_writable(path: &Path) -> Result<Store, StoreError> {
        Self::open_existing_with(path, true)
    }

    fn open_existing_with(path: &Path, writable: bool) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(StoreError::Missing { path: shown });
        }
        let flags = if writable {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: shown.clone(),
            source: source.into(),
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StoreError::TooNew {
                path: shown,
                found,
                known,
            });
        }
        if found == 0 {
            // A file that is not (yet) a state store: an empty file, or another database.
            return Err(StoreError::Missing { path: shown });
        }
        if found < known {
            return Err(StoreError::TooOld {
                path: shown,
                found,
                known,
            });
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
        })
    }

    /// A private in-memory database, for unit tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(
            Connection::open_in_memory()?,
            PathBuf::from(":memory:"),
            BUSY_TIMEOUT,
            Duration::ZERO,
        )
    }

    fn init(
        mut conn: Connection,
        path: PathBuf,
        busy_timeout: Duration,
        deadline: Duration,
    ) -> Result<Store, StoreError> {
        conn.busy_timeout(busy_timeout)?;
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            match Self::prepare(&mut conn, &path) {
                Ok(()) => break,
                Err(e) if is_busy(&e) => {
                    let waited = started.elapsed();
                    if waited >= deadline {
                        return Err(StoreError::Busy {
                            path: path.display().to_string(),
                            waited_secs: waited.as_secs(),
                        });
                    }
                    tracing::info!(state = %path.display(), "state store busy in another process; waiting");
                    std::thread::sleep(pause.min(deadline - waited));
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The pragmas and migrations of an open: each step is idempotent, so a step refused as
    /// busy is simply run again.
    fn prepare(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
        // WAL lets `status` read while the daemon writes; NORMAL sync is durable across process
        // crashes (only an OS crash can lose the last transactions, never corrupt the file).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(conn, path)
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

    /// Runs `f` with the raw connection on the blocking pool. Inside `store/` only: nothing
    /// outside it uses the connection (the integration tests' fixtures use [`Store::blocking`]
    /// to build states no API verb makes, such as a claim left by a dead process).
    #[doc(hidden)]
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

    /// [`Store::call`] on the current thread: for `store/` and the integration tests' fixtures
    /// only; the daemon and the commands go through [`Store::read`] / [`Store::write`].
    #[doc(hidden)]
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

    /// Checks the database answers and is writable (for `doctor`): a write that is rolled
    /// back, so the check leaves nothing behind.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        match self.write_blocking(|tx| {
            meta::set(tx, "doctor_check", "1")?;
            Err::<(), _>(StoreError::RolledBack)
        }) {
            Err(StoreError::RolledBack) => Ok(()),
            other => other,
        }
    }

    /// Answers a trivial query: the store is there and not wedged (start-up probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(meta::ping).await
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read_blocking(|tx| meta::get(tx, key))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.write_blocking(|tx| meta::set(tx, key, value))
    }
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
    pub(in crate::store) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// A `Tx` over a connection a test fixture opened with [`Store::blocking`]; the daemon
    /// never uses it (it goes through [`Store::read`] / [`Store::write`]).
    #[doc(hidden)]
    pub fn over(conn: &'c Connection) -> Tx<'c> {
        Tx { conn }
    }
}

/// Longest failure reason or history detail the store keeps, in bytes. Okta's reasons are a
/// sentence or two; a remote server can echo a whole page into one, and an unbounded reason
/// becomes an unbounded alert (a 20 MB reason once made a 41 MB email).
pub const MAX_TEXT_BYTES: usize = 4096;

/// `text` cut to [`MAX_TEXT_BYTES`] on a char boundary, with a visible marker saying how much
/// was dropped, so nobody mistakes a cut reason for the whole one.
pub(crate) fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_TEXT_BYTES {
        return std::borrow::Cow::Borrowed(text);
    }
    // Room for the marker, so the result stays within the bound too.
    let mut cut = MAX_TEXT_BYTES - 64;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    std::borrow::Cow::Owned(format!(
        "{}… [truncated: {} more bytes]",
        &text[..cut],
        text.len() - cut
    ))
}

/// [`bounded`] for optional text.
pub(crate) fn bounded_opt(text: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    text.map(bounded)
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
    fn open_existing_never_creates_and_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("typo/state.db");
        let e = Store::open_existing(&p).unwrap_err();
        assert!(matches!(e, StoreError::Missing { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("[state] path"),
            "{msg}"
        );
        assert!(!dir.path().join("typo").exists(), "created the directory");
        assert!(Store::open_existing_writable(&p).is_err());
        // An empty file is not a state store either.
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            Store::open_existing(&empty).unwrap_err(),
            StoreError::Missing { .. }
        ));
        // A real one opens read-only: reads work, writes are refused.
        let real = dir.path().join("state.db");
        Store::open(&real).unwrap().set_meta("k", "v").unwrap();
        let ro = Store::open_existing(&real).unwrap();
        assert_eq!(ro.get_meta("k").unwrap().as_deref(), Some("v"));
        assert!(ro.set_meta("k", "w").is_err());
        let rw = Store::open_existing_writable(&real).unwrap();
        rw.set_meta("k", "w").unwrap();
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_a_marker() {
        assert_eq!(bounded("short"), "short");
        let exact = "x".repeat(MAX_TEXT_BYTES);
        assert_eq!(bounded(&exact), exact.as_str());
        // Multi-byte chars straddling the cut point.
        let long = "é".repeat(MAX_TEXT_BYTES);
        let b = bounded(&long);
        assert!(b.len() <= MAX_TEXT_BYTES, "{}", b.len());
        assert!(b.contains("[truncated: "), "{b}");
        assert!(b.starts_with("éé"));
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

#[cfg(test)]
mod busy_tests {
    use super::*;

    /// A store file as a first start leaves it when another process reads it: created, not yet
    /// migrated, and a reader inside a read transaction holding its shared lock.
    fn held_by_a_reader(p: &Path) -> Connection {
        let reader = Connection::open(p).unwrap();
        reader
            .execute_batch("CREATE TABLE early (x); INSERT INTO early VALUES (1); BEGIN;")
            .unwrap();
        let _: i64 = reader
            .query_row("SELECT COUNT(*) FROM early", [], |r| r.get(0))
            .unwrap();
        reader
    }

    /// Defect 11 (issue 10): a short command reading the store while the daemon's first start
    /// switches it to WAL and migrates must make start-up wait, not fail with "database is
    /// locked". The per-statement busy timeout is made shorter than the reader's hold, so only
    /// the bounded retry of the open gets through (without it this fails at 100 ms).
    #[test]
    fn open_waits_for_a_reader_holding_a_read_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let reader = held_by_a_reader(&p);
        let p2 = p.clone();
        let opener = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let s = Store::open_waiting(&p2, Duration::from_millis(100), Duration::from_secs(20));
            (s.map(|s| s.schema_version()), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(1200));
        reader.execute_batch("COMMIT").unwrap();
        let (opened, waited) = opener.join().unwrap();
        let version = opened.expect("start-up waited for the reader").unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    }

    /// The wait is bounded, and its error names the cause and what to do.
    #[test]
    fn open_gives_up_after_its_deadline_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let _reader = held_by_a_reader(&p);
        let t = std::time::Instant::now();
        let e = Store::open_waiting(&p, Duration::from_millis(50), Duration::from_millis(600))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, StoreError::Busy { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("locked by another process") && msg.contains("start again"),
            "{msg}"
        );
    }
}
