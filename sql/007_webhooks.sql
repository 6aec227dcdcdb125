-- Webhook subscriptions, deliveries and the events API (issue 5). Idempotent.

-- How a delivery came to be: the dispatcher's fan-out (once per event and
-- target), an explicit replay through the API, or POST /webhooks/{id}/test.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'dispatch'
    CHECK (origin IN ('dispatch', 'redeliver', 'test'));

-- The dispatcher creates at most one delivery per event and subscription;
-- replays add rows of their own, so 001's index narrows to dispatched rows.
-- It keeps its name: 001 run again then finds it and leaves it alone.
DROP INDEX IF EXISTS deliveries_event_webhook;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_event_webhook ON deliveries (event_id, webhook_id)
    WHERE webhook_id IS NOT NULL AND origin = 'dispatch';

-- An event's deliveries (its delivery_status, replays, and the cascade when
-- housekeeping deletes the event).
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event_id);
-- A subscription's recent deliveries, newest first.
CREATE INDEX IF NOT EXISTS deliveries_webhook_created ON deliveries (webhook_id, created_at DESC)
    WHERE webhook_id IS NOT NULL;
-- An agent's per-agent webhook deliveries (webhook health, last delivery).
CREATE INDEX IF NOT EXISTS deliveries_agent ON deliveries (agent_id, last_attempt_at)
    WHERE agent_id IS NOT NULL;

-- When the current run of failed attempts began (NULL after a success):
-- auto-disable wants many failures AND a long time failing, so a burst of
-- events during a short outage does not switch a subscription off.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS failing_since timestamptz;

-- The synthetic events of POST /webhooks/{id}/test: delivered like any other
-- event, never dispatched to other subscriptions, never listed.
ALTER TABLE events ADD COLUMN IF NOT EXISTS synthetic boolean NOT NULL DEFAULT false;
