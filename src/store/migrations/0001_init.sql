-- okta-provwatch state, schema version 1. Times are Unix epoch milliseconds (UTC).

-- The System Log polling cursor: the whole `next` URL Okta gave us (never built by hand).
CREATE TABLE log_cursor (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    next_url         TEXT    NOT NULL,
    updated_at       INTEGER NOT NULL,
    newest_published INTEGER
);

-- Event uuids already applied, so that at-least-once delivery is applied once. Pruned after
-- the System Log's retention.
CREATE TABLE seen_events (
    uuid         TEXT    PRIMARY KEY,
    published_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_events_published ON seen_events (published_ms);

-- One row per (app, user, operation), however many events repeat it. App-wide failures
-- (integration errors, open circuit breakers) use user_id = ''.
CREATE TABLE failures (
    id              INTEGER PRIMARY KEY,
    app_id          TEXT    NOT NULL,
    app_label       TEXT,
    user_id         TEXT    NOT NULL,
    user_login      TEXT,
    operation       TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('open', 'retrying', 'alerted', 'resolved')),
    urgent          INTEGER NOT NULL DEFAULT 0,
    from_log        INTEGER NOT NULL DEFAULT 0,
    from_scan       INTEGER NOT NULL DEFAULT 0,
    reason          TEXT,
    event_uuid      TEXT,
    event_published INTEGER,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    retry_exhausted INTEGER NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    claimed_until   INTEGER,
    resolved_at     INTEGER,
    UNIQUE (app_id, user_id, operation)
);
CREATE INDEX failures_state_due ON failures (state, next_attempt_at);

-- Append-only record of everything that happened to a failure.
CREATE TABLE failure_history (
    id         INTEGER PRIMARY KEY,
    failure_id INTEGER NOT NULL REFERENCES failures (id),
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    detail     TEXT
);
CREATE INDEX failure_history_failure ON failure_history (failure_id, at);

-- Labels of the apps we have seen, so that status and alerts can name them without Okta calls.
CREATE TABLE apps (
    app_id     TEXT PRIMARY KEY,
    label      TEXT,
    name       TEXT,
    updated_at INTEGER NOT NULL
);

-- Where an interrupted assignment scan resumes.
CREATE TABLE scan_progress (
    app_id     TEXT    PRIMARY KEY,
    next_url   TEXT,
    started_at INTEGER NOT NULL
);

-- Small key/value facts: last scan, last digest, daemon health.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Per-app circuit breaker of the retry worker.
CREATE TABLE circuits (
    app_id               TEXT    PRIMARY KEY,
    state                TEXT    NOT NULL CHECK (state IN ('closed', 'open')),
    cause                TEXT,
    opened_at            INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    next_probe_at        INTEGER
);

-- Alert groups (one per app, plus daemon health): what was last sent and when.
CREATE TABLE alert_groups (
    group_key     TEXT    PRIMARY KEY,
    app_id        TEXT,
    firing        INTEGER NOT NULL DEFAULT 0,
    fingerprint   TEXT,
    sent_failures TEXT,
    pending_since INTEGER,
    last_sent_at  INTEGER
);

-- Notifications decided but not yet delivered; one row per channel.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    channel         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    group_key       TEXT,
    payload         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    last_error      TEXT,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

-- Maintenance silences per app.
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    app        TEXT    NOT NULL,
    until      INTEGER NOT NULL,
    reason     TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT
);
