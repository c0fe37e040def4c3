-- Retries confirmed by the System Log instead of a read-back, and data errors re-armed by a
-- profile change (issue 11).

-- When the retry's POST went out (our clock). While set, the failure awaits the outcome of
-- that push: a failure event published after it is the push failing again, a success event
-- resolves the failure as usual.
ALTER TABLE failures ADD COLUMN pushed_at INTEGER;
-- The failure's last event when the push went out: only a different, later event answers it.
ALTER TABLE failures ADD COLUMN pushed_event_uuid TEXT;
-- Until when the System Log may answer; after it one read-back of the app user decides.
ALTER TABLE failures ADD COLUMN confirm_by INTEGER;
-- The `published` time of a `user.account.update_profile` of this user seen since the
-- failure's last attempt: a failure the app rejected for its data gets one retry after it.
ALTER TABLE failures ADD COLUMN profile_changed_at INTEGER;

CREATE INDEX failures_pushed ON failures (pushed_at) WHERE pushed_at IS NOT NULL;
