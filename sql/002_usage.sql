-- What each user stores, per calendar month (UTC), so that the policy
-- service's quota check (every RCPT to an agent) reads a few rows instead of
-- counting and summing a whole mailbox. Triggers keep it equal to
--   SELECT user_id, usage_month(created_at),
--          count(*) FILTER (WHERE direction = 'inbound'), sum(size_bytes)
--     FROM messages GROUP BY 1, 2
-- whatever inserts, deletes (a message, an agent, a user) or edits messages.
-- Idempotent: every statement can run twice.

CREATE TABLE IF NOT EXISTS usage_monthly (
    user_id           text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    month             date NOT NULL,  -- the first day of the month, UTC
    inbound_messages  bigint NOT NULL DEFAULT 0,
    size_bytes        bigint NOT NULL DEFAULT 0,  -- every message, both directions
    PRIMARY KEY (user_id, month)
);

CREATE OR REPLACE FUNCTION usage_month(at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_trunc('month', at AT TIME ZONE 'UTC')::date
$$;

CREATE OR REPLACE FUNCTION usage_monthly_add(user_id text, month date, inbound_messages bigint,
                                             size_bytes bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_monthly AS u (user_id, month, inbound_messages, size_bytes)
    VALUES (user_id, month, inbound_messages, size_bytes)
    ON CONFLICT ON CONSTRAINT usage_monthly_pkey DO UPDATE
       SET inbound_messages = u.inbound_messages + EXCLUDED.inbound_messages,
           size_bytes = u.size_bytes + EXCLUDED.size_bytes
$$;

-- A new message is counted at COMMIT (a deferred constraint trigger): the
-- user's row is locked only for the commit itself, so concurrent deliveries to
-- one user do not queue behind each other's whole transaction.
CREATE OR REPLACE FUNCTION usage_monthly_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM usage_monthly_add(NEW.user_id, usage_month(NEW.created_at),
                              (NEW.direction = 'inbound')::int, NEW.size_bytes);
    RETURN NULL;
END $$;

-- Statement-level: deleting a user or an agent with a million messages is one
-- update per month touched, not a million updates of one row.
CREATE OR REPLACE FUNCTION usage_monthly_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Users that are gone are skipped: when a user is deleted, the cascade
    -- reaches messages after the user row, and the usage rows go with it.
    -- ORDER BY: rows are locked in one order, so two deletes never deadlock.
    PERFORM usage_monthly_add(r.user_id, r.month, -r.inbound_messages, -r.size_bytes)
       FROM (SELECT removed.user_id, usage_month(removed.created_at) AS month,
                    count(*) FILTER (WHERE removed.direction = 'inbound') AS inbound_messages,
                    sum(removed.size_bytes) AS size_bytes
               FROM removed JOIN users ON users.id = removed.user_id
              GROUP BY 1, 2 ORDER BY 1, 2) AS r;
    RETURN NULL;
END $$;

-- Row-level, and only when a counted column changes: most updates of messages
-- (read, labels, webhook state) do not call it at all.
CREATE OR REPLACE FUNCTION usage_monthly_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM usage_monthly_add(OLD.user_id, usage_month(OLD.created_at),
                              -(OLD.direction = 'inbound')::int, -OLD.size_bytes);
    PERFORM usage_monthly_add(NEW.user_id, usage_month(NEW.created_at),
                              (NEW.direction = 'inbound')::int, NEW.size_bytes);
    RETURN NULL;
END $$;

-- CREATE OR REPLACE cannot make a constraint trigger.
DROP TRIGGER IF EXISTS messages_usage_added ON messages;
CREATE CONSTRAINT TRIGGER messages_usage_added
    AFTER INSERT ON messages DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION usage_monthly_added();
CREATE OR REPLACE TRIGGER messages_usage_removed
    AFTER DELETE ON messages REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION usage_monthly_removed();
CREATE OR REPLACE TRIGGER messages_usage_changed
    AFTER UPDATE OF user_id, direction, size_bytes, created_at ON messages
    FOR EACH ROW
    WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.direction IS DISTINCT FROM NEW.direction
          OR OLD.size_bytes IS DISTINCT FROM NEW.size_bytes
          OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION usage_monthly_changed();

-- Messages stored before this migration. The lock keeps inserts out between
-- the triggers starting to count and this sum; on a second run every row is
-- there already and DO NOTHING keeps what the triggers counted.
LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO usage_monthly (user_id, month, inbound_messages, size_bytes)
SELECT user_id, usage_month(created_at),
       count(*) FILTER (WHERE direction = 'inbound'), sum(size_bytes)
  FROM messages GROUP BY 1, 2
ON CONFLICT (user_id, month) DO NOTHING;
