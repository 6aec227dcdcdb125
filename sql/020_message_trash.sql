-- Message trash (the /v1 API's DELETE and restore): a trashed message leaves
-- every listing of both API generations but stays readable by id until it
-- is restored or erased. NULL: live. Idempotent.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
CREATE INDEX IF NOT EXISTS messages_agent_trash
    ON messages (agent_id, deleted_at) WHERE deleted_at IS NOT NULL;
