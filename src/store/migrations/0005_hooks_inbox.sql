-- Event hook receiver: the durable inbox the receiver writes before it answers Okta, and a short
-- record of the deliveries themselves (for `hooks status` and the hook health rule).

-- One row per event uuid received by hook (a duplicate delivery adds nothing). `applied_at` is
-- set once the applier ran it through the classifier; `result` says what that did.
CREATE TABLE hook_inbox (
    id           INTEGER PRIMARY KEY,
    uuid         TEXT    NOT NULL UNIQUE,
    event_type   TEXT    NOT NULL,
    published_ms INTEGER,
    body         TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    applied_at   INTEGER,
    result       TEXT
);
CREATE INDEX hook_inbox_pending ON hook_inbox (applied_at, published_ms);

-- One row per accepted POST.
CREATE TABLE hook_deliveries (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    event_id    TEXT,
    events      INTEGER NOT NULL,
    new_events  INTEGER NOT NULL
);
CREATE INDEX hook_deliveries_at ON hook_deliveries (received_at);
