-- The "Trust" issue: in-flight sends (item 6), notification limits (item 8). Idempotent.

-- An Idempotency-Key's answer is committed with the message BEFORE Postfix is
-- asked (core/sending.py says why) and confirmed after Postfix's 250. Until
-- then a second request with the key is told "in progress", not the answer:
-- Postfix may still refuse the message, and the answer is taken back then.
-- An answer left unconfirmed (the database failed after the 250) is
-- replayed once the claim is stale: the message was recorded and handed over.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS confirmed boolean NOT NULL DEFAULT true;

-- Owner notifications sent (issue "Trust", item 8): at most
-- hitl.notify_per_hour mails per owner in any hour; what waits meanwhile is
-- summarised in the next one (core/notification.py). Rows older than an
-- hour say nothing more and are purged by the worker.
CREATE TABLE IF NOT EXISTS owner_notifications (
    user_id  text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sent_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS owner_notifications_recent ON owner_notifications (user_id, sent_at);
