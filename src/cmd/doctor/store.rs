//! Doctor checks of the local state: the SQLite store opens and is writable, and the
//! outbox holds no undelivered alerts.

use super::{Report, Status};
use crate::config::Config;
use crate::store::Store;

pub(super) fn check_store(config: &Config, r: &mut Report) {
    let path = &config.state.path;
    // Opening also applies pending migrations, as the daemon would at its next start.
    let store = match Store::open(path) {
        Ok(s) => s,
        Err(e) => {
            r.add("state store", Status::Fail, format!("{e}"));
            return;
        }
    };
    let version = store
        .schema_version()
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    match store.check_writable() {
        Ok(()) => r.add(
            "state store",
            Status::Pass,
            format!("{} is writable, schema version {version}", path.display()),
        ),
        Err(e) => r.add(
            "state store",
            Status::Fail,
            format!("{} is not writable: {e}", path.display()),
        ),
    }
    check_failed_deliveries(&store, r);
}

/// Alerts the outbox gave up on: people were not told about something.
fn check_failed_deliveries(store: &Store, r: &mut Report) {
    match store.read_blocking(crate::alert::outbox::failed_deliveries) {
        Ok(rows) if rows.is_empty() => r.add(
            "alert deliveries",
            Status::Pass,
            "no failed alert deliveries in the outbox",
        ),
        Ok(rows) => {
            let detail: Vec<String> = rows
                .iter()
                .rev()
                .take(10)
                .map(|d| {
                    format!(
                        "{} {} {:?} after {} attempt(s): {}",
                        d.channel,
                        d.kind,
                        d.title.as_deref().unwrap_or("(unreadable message)"),
                        d.attempts,
                        d.error
                    )
                })
                .collect();
            r.add(
                "alert deliveries",
                Status::Warn,
                format!(
                    "{} alert(s) were never delivered (newest first, at most 10 shown); fix the channel, the alerts are not resent\n{}",
                    rows.len(),
                    detail.join("\n")
                ),
            );
        }
        Err(e) => r.add(
            "alert deliveries",
            Status::Warn,
            format!("could not read the outbox: {e}"),
        ),
    }
}
