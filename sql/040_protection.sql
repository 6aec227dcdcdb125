-- Protection (issue 16): the agent's settings, and what the screening found
-- on each message. Idempotent.

-- inbound/outbound {gate{policy, action, allowlist}, scan{sensitivity}},
-- suppress_notifications and first_contact (core/protection/config.py
-- normalizes it; '{}' reads as every default). holds.ttl_seconds and
-- holds.on_expiry are the legacy hitl_ttl_seconds/hitl_expiration_action
-- columns: one setting, two names.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS protection jsonb NOT NULL DEFAULT '{}';

-- Why a message is held (MessageView hold_reason) and what screening found
-- (protection[]); a flagged inbound message carries flagged/flag_reason.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS hold_reason jsonb;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS protection jsonb;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS flagged boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS flag_reason text NOT NULL DEFAULT '';

-- First-contact review: recipients an owner approved mail to (or that the
-- agent exchanged mail with), with an optional expiry of that trust.
CREATE TABLE IF NOT EXISTS protection_contacts (
    agent_id       text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    address        text NOT NULL CHECK (address = lower(address)),
    trusted_until  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, address)
);
