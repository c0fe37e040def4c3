//! The quarantine (`quarantine`): System Log events the JSON parser refused, kept with their raw
//! bytes (bounded), the page they came from and the parser's error, so that one poison event
//! never stalls detection and nothing Okta sent is silently dropped. The poller writes rows in
//! the transaction that moves the cursor past their page; the daemon-health alert marks them
//! told; `status` counts them.

use super::{StoreError, Tx};
use rusqlite::params;

/// A row to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry<'a> {
    /// The URL the page was read from (the cursor at the time).
    pub page_url: &'a str,
    /// The element's index in the page's array.
    pub position: usize,
    /// Its raw bytes, already bounded by the caller.
    pub raw: &'a [u8],
    /// Its full length.
    pub raw_len: usize,
    pub error: &'a str,
}

/// A stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub quarantined_at: i64,
    pub page_url: String,
    pub position: i64,
    pub raw: Vec<u8>,
    pub raw_len: i64,
    pub error: String,
    pub alerted_at: Option<i64>,
}

/// Adds an entry; false when this element of this page was quarantined before (the page was
/// read again from a kept cursor).
pub fn add(tx: &Tx<'_>, e: &NewEntry<'_>, now: i64) -> Result<bool, StoreError> {
    let n = tx.conn().execute(
        "INSERT OR IGNORE INTO quarantine (quarantined_at, page_url, position, raw, raw_len, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now,
            e.page_url,
            i64::try_from(e.position).unwrap_or(i64::MAX),
            e.raw,
            i64::try_from(e.raw_len).unwrap_or(i64::MAX),
            super::bounded(e.error).as_ref(),
        ],
    )?;
    Ok(n == 1)
}

/// How many events are quarantined.
pub fn count(tx: &Tx<'_>) -> Result<i64, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?)
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        quarantined_at: r.get(1)?,
        page_url: r.get(2)?,
        position: r.get(3)?,
        raw: r.get(4)?,
        raw_len: r.get(5)?,
        error: r.get(6)?,
        alerted_at: r.get(7)?,
    })
}

const COLUMNS: &str = "id, quarantined_at, page_url, position, raw, raw_len, error, alerted_at";

/// The newest `limit` entries, newest first.
pub fn recent(tx: &Tx<'_>, limit: usize) -> Result<Vec<Entry>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM quarantine ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Marks every entry nobody was told about yet as told at `now`, and returns them (oldest
/// first): the caller enqueues the alert in the same transaction, so each entry is reported
/// exactly once.
pub fn take_unalerted(tx: &Tx<'_>, now: i64) -> Result<Vec<Entry>, StoreError> {
    let rows = {
        let mut stmt = tx.conn().prepare(&format!(
            "SELECT {COLUMNS} FROM quarantine WHERE alerted_at IS NULL ORDER BY id"
        ))?;
        let rows = stmt.query_map([], from_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    if !rows.is_empty() {
        tx.conn().execute(
            "UPDATE quarantine SET alerted_at = ?1 WHERE alerted_at IS NULL",
            [now],
        )?;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn added_once_counted_and_told_once() {
        let s = Store::open_in_memory().unwrap();
        let e = NewEntry {
            page_url: "https://x.okta.com/api/v1/logs?after=1",
            position: 3,
            raw: b"{\"a\":NaN}",
            raw_len: 9,
            error: "expected value at line 1 column 6",
        };
        assert!(s.write_blocking(|tx| add(tx, &e, 10)).unwrap());
        assert!(!s.write_blocking(|tx| add(tx, &e, 11)).unwrap());
        assert_eq!(s.read_blocking(count).unwrap(), 1);
        let told = s.write_blocking(|tx| take_unalerted(tx, 20)).unwrap();
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].raw, b"{\"a\":NaN}");
        assert_eq!(told[0].position, 3);
        assert!(s
            .write_blocking(|tx| take_unalerted(tx, 21))
            .unwrap()
            .is_empty());
        assert_eq!(
            s.read_blocking(|tx| recent(tx, 5)).unwrap()[0].alerted_at,
            Some(20)
        );
    }
}
