-- Indexes for the inbox API (listing filters, conversations). Idempotent.

-- The polling agent's query: its unread mail, oldest first. With most mail
-- read, a scan of messages_agent_created would wade through every read row
-- to find the few unread ones; this index holds the unread ones only.
CREATE INDEX IF NOT EXISTS messages_agent_unread
    ON messages (agent_id, created_at, id) WHERE inbox_status = 'unread';

-- One thread in order (the conversation_id filter, a conversation's members)
-- and each thread's latest activity read from the index alone (the
-- conversation list).
CREATE INDEX IF NOT EXISTS messages_agent_conversation
    ON messages (agent_id, conversation_id, created_at, id) WHERE conversation_id IS NOT NULL;

-- Its leading columns made the 001 index redundant: one index less to write
-- on every delivery.
DROP INDEX IF EXISTS messages_conversation;

-- Substring search (from=, subject_contains=): without these, a term few
-- messages contain costs a scan of the agent's whole mailbox (about 0.2 s at
-- 100,000 messages); with them, an index lookup. They need the pg_trgm
-- extension (PostgreSQL's contrib, "trusted": a database owner may create
-- it). Where it cannot be had, the filters still work, by scanning.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file THEN
    RAISE NOTICE 'pg_trgm unavailable (%): substring filters will scan', SQLERRM;
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX IF NOT EXISTS messages_sender_trgm
            ON messages USING gin (sender gin_trgm_ops);
        CREATE INDEX IF NOT EXISTS messages_subject_trgm
            ON messages USING gin (subject gin_trgm_ops);
    END IF;
END $$;
