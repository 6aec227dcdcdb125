-- The whole product's schema. Idempotent: every statement can run twice.
-- Identifiers are prefixed text (usr_, key_, dom_, ag_, msg_, evt_, wh_, whd_,
-- sec_) so that an id names its kind wherever it is logged or pasted.

CREATE TABLE IF NOT EXISTS users (
    id                  text PRIMARY KEY,
    email               text NOT NULL,
    name                text NOT NULL DEFAULT '',
    plan_code           text NOT NULL DEFAULT 'self-hosted',
    max_agents          integer NOT NULL DEFAULT 100,
    max_domains         integer NOT NULL DEFAULT 20,
    max_messages_month  integer NOT NULL DEFAULT 100000,
    max_storage_bytes   bigint  NOT NULL DEFAULT 10737418240,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email_key ON users (lower(email));

-- Mail domains. The shared domain (slug registration) has no owner.
CREATE TABLE IF NOT EXISTS domains (
    id                    text PRIMARY KEY,
    user_id               text REFERENCES users (id) ON DELETE CASCADE,
    domain                text NOT NULL UNIQUE CHECK (domain = lower(domain)),
    is_shared             boolean NOT NULL DEFAULT false,
    is_primary            boolean NOT NULL DEFAULT false,
    verification_token    text NOT NULL,
    verified              boolean NOT NULL DEFAULT false,
    verified_at           timestamptz,
    last_checked_at       timestamptz,
    dkim_selector         text NOT NULL DEFAULT 'e2a',
    dkim_public_key       text,
    -- Encrypted with the deployment's encryption key; never leaves the store
    -- except to the outbound signer.
    dkim_private_key_enc  bytea,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS domains_one_primary ON domains (user_id) WHERE is_primary;

CREATE TABLE IF NOT EXISTS agents (
    id                      text PRIMARY KEY,
    user_id                 text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    domain_id               text NOT NULL REFERENCES domains (id) ON DELETE RESTRICT,
    email                   text NOT NULL UNIQUE CHECK (email = lower(email)),
    name                    text NOT NULL DEFAULT '',
    agent_mode              text NOT NULL CHECK (agent_mode IN ('local', 'cloud')),
    webhook_url             text NOT NULL DEFAULT '',
    hitl_enabled            boolean NOT NULL DEFAULT false,
    hitl_ttl_seconds        integer NOT NULL DEFAULT 604800
                            CHECK (hitl_ttl_seconds BETWEEN 1 AND 604800),
    hitl_expiration_action  text NOT NULL DEFAULT 'reject'
                            CHECK (hitl_expiration_action IN ('reject', 'approve')),
    created_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agents_user ON agents (user_id);

-- API keys: only a SHA-256 of the key is kept. agent_id set = agent-scoped key.
CREATE TABLE IF NOT EXISTS api_keys (
    id            text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id      text REFERENCES agents (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    key_hash      bytea NOT NULL UNIQUE,
    key_prefix    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);

-- Per-user HMAC secrets for X-E2A-Auth-* signing; the newest one signs.
CREATE TABLE IF NOT EXISTS signing_secrets (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            text NOT NULL DEFAULT '',
    secret          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_signed_at  timestamptz
);
CREATE INDEX IF NOT EXISTS signing_secrets_user ON signing_secrets (user_id, created_at DESC);

-- Inbound and outbound mail in one table, as e2a's API presents it.
CREATE TABLE IF NOT EXISTS messages (
    id                   text PRIMARY KEY,
    user_id              text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id             text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    direction            text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    type                 text NOT NULL DEFAULT 'email',
    recipient            text NOT NULL DEFAULT '',
    sender               text NOT NULL DEFAULT '',
    envelope_sender      text NOT NULL DEFAULT '',
    to_recipients        text[] NOT NULL DEFAULT '{}',
    cc                   text[] NOT NULL DEFAULT '{}',
    bcc                  text[] NOT NULL DEFAULT '{}',
    reply_to             text[] NOT NULL DEFAULT '{}',
    subject              text NOT NULL DEFAULT '',
    email_message_id     text NOT NULL DEFAULT '',
    in_reply_to          text NOT NULL DEFAULT '',
    references_ids       text[] NOT NULL DEFAULT '{}',
    conversation_id      text,
    raw_message          bytea,
    size_bytes           integer NOT NULL DEFAULT 0,
    auth_headers         jsonb NOT NULL DEFAULT '{}',
    spf                  text NOT NULL DEFAULT '',
    dkim                 text NOT NULL DEFAULT '',
    dmarc                text NOT NULL DEFAULT '',
    verified             boolean NOT NULL DEFAULT false,
    entity_type          text NOT NULL DEFAULT 'human',
    -- Inbound: unread | read. NULL on outbound rows.
    inbox_status         text CHECK (inbox_status IN ('unread', 'read')),
    -- Outbound: sent | pending_approval | rejected | expired_approved | expired_rejected.
    status               text CHECK (status IN ('sent', 'pending_approval', 'rejected',
                                                'expired_approved', 'expired_rejected')),
    -- Outbound transport fate, kept apart from status so 2.x clients never
    -- meet a status value they cannot parse: queued | sent | bounced.
    delivery_status      text NOT NULL DEFAULT '',
    delivery_error       text NOT NULL DEFAULT '',
    labels               text[] NOT NULL DEFAULT '{}',
    webhook_status       text NOT NULL DEFAULT '',
    webhook_error        text NOT NULL DEFAULT '',
    webhook_attempts     integer NOT NULL DEFAULT 0,
    queue_id             text NOT NULL DEFAULT '',
    -- Identifies one SMTP delivery to one agent, so a client that retries
    -- after a 4xx whose transaction had in fact committed is not stored twice.
    dedupe_key           bytea,
    body_text            text,
    body_html            text,
    attachments          jsonb,
    approval_expires_at  timestamptz,
    edited               boolean NOT NULL DEFAULT false,
    reviewed_by_user_id  text REFERENCES users (id) ON DELETE SET NULL,
    reviewed_at          timestamptz,
    rejection_reason     text NOT NULL DEFAULT '',
    method               text NOT NULL DEFAULT '',
    provider_message_id  text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_dedupe ON messages (agent_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_agent_created ON messages (agent_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (agent_id, conversation_id)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_email_message_id ON messages (agent_id, email_message_id);
CREATE INDEX IF NOT EXISTS messages_pending ON messages (approval_expires_at)
    WHERE status = 'pending_approval';
CREATE INDEX IF NOT EXISTS messages_labels ON messages USING gin (labels);

-- The event outbox: written in the same transaction as the change it reports.
CREATE TABLE IF NOT EXISTS events (
    id               text PRIMARY KEY,
    user_id          text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id         text,
    message_id       text,
    conversation_id  text,
    type             text NOT NULL,
    schema_version   integer NOT NULL DEFAULT 1,
    data             jsonb NOT NULL DEFAULT '{}',
    -- Set once the worker has fanned the event out into deliveries.
    dispatched_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS events_undispatched ON events (created_at) WHERE dispatched_at IS NULL;
CREATE INDEX IF NOT EXISTS events_user_created ON events (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_created ON events (created_at);

CREATE TABLE IF NOT EXISTS webhooks (
    id                          text PRIMARY KEY,
    user_id                     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text NOT NULL DEFAULT '',
    events                      text[] NOT NULL DEFAULT '{}',
    filters                     jsonb NOT NULL DEFAULT '{}',
    enabled                     boolean NOT NULL DEFAULT true,
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    consecutive_failures        integer NOT NULL DEFAULT 0,
    auto_disabled_at            timestamptz,
    last_delivered_at           timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhooks_user ON webhooks (user_id);

-- One row per (event, target). A target is a webhook subscription or, for
-- cloud-mode agents, the agent's own webhook_url (webhook_id NULL).
CREATE TABLE IF NOT EXISTS deliveries (
    id                text PRIMARY KEY,
    event_id          text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook_id        text REFERENCES webhooks (id) ON DELETE CASCADE,
    agent_id          text REFERENCES agents (id) ON DELETE CASCADE,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt_at   timestamptz,
    last_status_code  integer,
    last_error        text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((webhook_id IS NULL) <> (agent_id IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_event_webhook ON deliveries (event_id, webhook_id)
    WHERE webhook_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_event_agent ON deliveries (event_id, agent_id)
    WHERE agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  bytea NOT NULL,
    -- NULL while the first request is still running.
    status_code   integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);

-- Fixed-window counters shared by every process on the database.
CREATE TABLE IF NOT EXISTS rate_limits (
    bucket        text NOT NULL,
    window_start  timestamptz NOT NULL,
    hits          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX IF NOT EXISTS rate_limits_window ON rate_limits (window_start);
