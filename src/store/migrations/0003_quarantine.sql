-- Migration 0003: System Log events the JSON parser refused (issue 10, defect 1).
--
-- A poison event must never stall detection: the poller moves past it and keeps its raw bytes
-- here (the first 64 KiB; raw_len is the full length) with the page it came from and the
-- parser's error, so someone can see what Okta sent. alerted_at is set once the daemon-health
-- alert told someone about the row.
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    quarantined_at INTEGER NOT NULL,
    page_url TEXT NOT NULL,
    position INTEGER NOT NULL,
    raw BLOB NOT NULL,
    raw_len INTEGER NOT NULL,
    error TEXT NOT NULL,
    alerted_at INTEGER,
    -- A page read twice (a kept cursor) quarantines its bad elements once.
    UNIQUE (page_url, position)
);

CREATE INDEX quarantine_unalerted ON quarantine (alerted_at) WHERE alerted_at IS NULL;
