-- Human in the loop (issue 7). Idempotent.

-- When the owner was emailed about a held message (core/notification.py):
-- NULL until then, so the worker notifies each held message once.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS notified_at timestamptz;

-- The notification job's queue: held messages nobody was told about yet.
CREATE INDEX IF NOT EXISTS messages_unnotified ON messages (created_at, id)
    WHERE status = 'pending_approval' AND notified_at IS NULL;
