-- The review dashboard (issue 19): password-less sign-in and browser
-- sessions. Only an HMAC of each token is kept (core/accounts/signin.py):
-- a copy of this table signs nobody in. Idempotent.

-- A sign-in link, single-use: used_at is set by the one redemption that wins.
CREATE TABLE IF NOT EXISTS dashboard_signins (
    token_hash  bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS dashboard_signins_expires ON dashboard_signins (expires_at);

-- A signed-in browser. ended_at: signed out (the row stays until it expires,
-- so a stolen cookie replayed after sign-out finds it ended, not unknown).
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at  timestamptz NOT NULL,
    ended_at    timestamptz
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_user ON dashboard_sessions (user_id);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires ON dashboard_sessions (expires_at);
