-- Schema: the expected-deprovisioning ledger (issue 13).

-- One row per deprovisioning Okta owes: opened by a deactivation, suspension or unassignment
-- for an app where the user had an app user, closed when Okta (or the app itself) confirms it.
-- state: open (waiting for Okta), confirmed (Okta reported it; the app's SCIM check is
-- pending or failed), expired (no deprovisioning within the SLA: failure_id is the URGENT
-- failure), closed (done; closed_by says how).
-- verify: none (no [[verify]] for the app), pending, verified, still_active, error.
CREATE TABLE deprovision_expectations (
    id             INTEGER PRIMARY KEY,
    app_id         TEXT NOT NULL,
    app_label      TEXT,
    user_id        TEXT NOT NULL,
    user_login     TEXT,
    app_user_name  TEXT,
    scim_id        TEXT,
    cause          TEXT NOT NULL,
    cause_actor    TEXT,
    cause_uuid     TEXT,
    opened_at      INTEGER NOT NULL,
    deadline       INTEGER NOT NULL,
    state          TEXT NOT NULL,
    closed_at      INTEGER,
    closed_by      TEXT,
    verify         TEXT NOT NULL DEFAULT 'none',
    verify_detail  TEXT,
    verify_at      INTEGER,
    failure_id     INTEGER
);
-- At most one unfinished expectation per (app, user).
CREATE UNIQUE INDEX deprovision_expectations_live
    ON deprovision_expectations (app_id, user_id) WHERE state != 'closed';
CREATE INDEX deprovision_expectations_state ON deprovision_expectations (state, deadline);

-- Who has an app user where, as last seen by the scanner or a successful push: a
-- user.lifecycle.deactivate names only the user, and by the time it is read Okta may already
-- have removed the app users.
CREATE TABLE known_app_users (
    app_id         TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    user_login     TEXT,
    app_user_name  TEXT,
    scim_id        TEXT,
    seen_at        INTEGER NOT NULL,
    PRIMARY KEY (app_id, user_id)
);

-- Each app's outbound provisioning settings as last known (1/0, NULL unknown), and who changed
-- them last (from application.lifecycle.update). stale = 1: re-read the feature soon.
CREATE TABLE app_provisioning (
    app_id         TEXT PRIMARY KEY,
    provisioning   INTEGER,
    deactivate     INTEGER,
    checked_at     INTEGER,
    changed_by     TEXT,
    changed_at     INTEGER,
    stale          INTEGER NOT NULL DEFAULT 1
);

-- Accounts active in an app but not assigned (or deactivated) in Okta, from the last
-- reconciliation of that app; replaced whole by each run.
CREATE TABLE scim_orphans (
    app_id         TEXT NOT NULL,
    scim_id        TEXT NOT NULL,
    user_name      TEXT,
    found_at       INTEGER NOT NULL,
    PRIMARY KEY (app_id, scim_id)
);

CREATE TABLE scim_reconciliations (
    app_id         TEXT PRIMARY KEY,
    finished_at    INTEGER NOT NULL,
    scim_users     INTEGER NOT NULL,
    orphans        INTEGER NOT NULL,
    requests       INTEGER NOT NULL,
    error          TEXT
);
