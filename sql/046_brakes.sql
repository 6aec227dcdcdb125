-- Loop and abuse brakes (core/protection/brakes.py): per-agent overrides of
-- the [brakes] configuration defaults and the outbound kill switch. No row:
-- the defaults, not paused. The counters live in rate_limits.
CREATE TABLE IF NOT EXISTS agent_brakes (
    agent_id      text PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    overrides     jsonb NOT NULL DEFAULT '{}'::jsonb,
    paused_at     timestamptz,
    paused_reason text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
