-- Suppressions: addresses no agent of an account (account-wide) or one agent
-- (agent-scoped) may send to. A send naming one is refused (422
-- recipient_suppressed at the API, 550 5.7.1 at the content filter).
-- Addresses are stored canonical (core/net/addresses.mailbox: lowercase).
CREATE TABLE IF NOT EXISTS account_suppressions (
    user_id            text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address            text NOT NULL CHECK (address = lower(address)),
    source             text NOT NULL,   -- bounce | complaint | manual
    reason             text,
    source_message_id  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, address)
);
CREATE INDEX IF NOT EXISTS account_suppressions_listing
    ON account_suppressions (user_id, created_at DESC, address);

CREATE TABLE IF NOT EXISTS agent_suppressions (
    agent_id    text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address     text NOT NULL CHECK (address = lower(address)),
    source      text NOT NULL,   -- unsubscribe | manual
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, address)
);
CREATE INDEX IF NOT EXISTS agent_suppressions_listing
    ON agent_suppressions (agent_id, created_at DESC, address);

-- Managed unsubscribe (RFC 8058): one token per message that asked for it.
-- Only a keyed digest of the token is kept (core/outbound/unsubscribe.py), so
-- the table alone unsubscribes nobody. used_at: single use.
CREATE TABLE IF NOT EXISTS unsubscribe_tokens (
    token_digest  bytea PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id      text NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    address       text NOT NULL,
    message_id    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    used_at       timestamptz
);
