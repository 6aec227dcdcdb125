-- Whose a conversation id is: the send and filter paths look an id up across
-- owners before they let a message join it (core/conversations.open_to).
-- Idempotent.
CREATE INDEX IF NOT EXISTS messages_conversation_id
    ON messages (conversation_id) WHERE conversation_id IS NOT NULL;
