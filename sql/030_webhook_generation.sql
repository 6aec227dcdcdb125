-- Which API generation made a webhook subscription: its deliveries speak
-- that generation's event vocabulary (core/v1events.py for 'v1': review
-- event names, agent_email in data). Legacy subscriptions stay as they were.
-- The events themselves are stored once, whatever reads them.
ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS generation text NOT NULL DEFAULT 'legacy';
ALTER TABLE webhooks DROP CONSTRAINT IF EXISTS webhooks_generation;
ALTER TABLE webhooks ADD CONSTRAINT webhooks_generation CHECK (generation IN ('legacy', 'v1'));
