-- Schema version 3: bookkeeping of the retry worker and its circuit breakers.

-- The state a failure was in before a retry claimed it ('open' or 'alerted'), restored when the
-- retry finishes, so that a retry does not make the alerter forget it already told someone.
ALTER TABLE failures ADD COLUMN claim_prev_state TEXT;

-- The app-level failure recorded when the circuit opened (resolved when it closes).
ALTER TABLE circuits ADD COLUMN failure_id INTEGER;
-- JSON array of the distinct users whose retries failed in a row (the current streak).
ALTER TABLE circuits ADD COLUMN streak_users TEXT NOT NULL DEFAULT '[]';
-- Failed probes since the circuit opened: the probe backoff grows with it.
ALTER TABLE circuits ADD COLUMN probes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE circuits ADD COLUMN updated_at INTEGER;

CREATE INDEX failures_app_state ON failures (app_id, state);
