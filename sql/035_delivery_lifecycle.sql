-- Delivery status from Postfix's own DSNs (core/outbound/delivery.py).
--
-- delivery_recipients: the fate of each recipient of an outbound message as
-- its DSNs told it (deferred -> delivered | bounced), with the remote
-- server's reply. The message's delivery_status is their aggregate. One row
-- per (message, recipient): a DSN that repeats what the row says changes
-- nothing, so the same DSN twice writes no second event.
CREATE TABLE IF NOT EXISTS delivery_recipients (
    message_id   text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    recipient    text NOT NULL,  -- lowercase
    status       text NOT NULL CHECK (status IN ('deferred', 'delivered', 'bounced')),
    bounce_type  text NOT NULL DEFAULT ''
                 CHECK (bounce_type IN ('', 'permanent', 'transient', 'undetermined')),
    action       text NOT NULL DEFAULT '',   -- the DSN's Action
    dsn_status   text NOT NULL DEFAULT '',   -- enhanced status code, 5.1.1
    diagnostic   text NOT NULL DEFAULT '',   -- the remote reply, 550 5.1.1 ...
    remote_mta   text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, recipient)
);

-- message_lifecycle: each step a message took, in the /v1 vocabulary
-- (reference MessageLifecycleTransition: stage, outcome, reason_code).
CREATE TABLE IF NOT EXISTS message_lifecycle (
    id               text PRIMARY KEY,
    message_id       text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    direction        text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    stage            text NOT NULL,
    outcome          text NOT NULL,
    reason_code      text NOT NULL,
    retryable        boolean NOT NULL DEFAULT false,
    recipient        text NOT NULL DEFAULT '',
    evidence         jsonb NOT NULL DEFAULT '{}'::jsonb,
    correlation_ids  jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS message_lifecycle_message
    ON message_lifecycle (message_id, occurred_at, id);
-- Steps that happen once per message (and recipient) are written once
-- however often their trigger repeats (a confirm racing the filter, a
-- repeated DSN); delays may repeat.
CREATE UNIQUE INDEX IF NOT EXISTS message_lifecycle_once
    ON message_lifecycle (message_id, reason_code, recipient)
    WHERE reason_code <> 'delivery.temporary_delay';
