-- The addresses each agent has sent to (core/protection/brakes.py): a
-- recipient missing here is a new one, counted by the new-recipient brake.
-- A recipient is added only while that brake lets the send through, so a
-- throttled send stays new when it is retried.
CREATE TABLE IF NOT EXISTS agent_recipients (
    agent_id       text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    address        text NOT NULL,
    first_sent_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, address)
);
