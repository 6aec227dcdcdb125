-- In-flight sends (issue "Trust", item 6). Idempotent.

-- An Idempotency-Key's answer is committed with the message BEFORE Postfix is
-- asked (core/sending.py says why) and confirmed after Postfix's 250. Until
-- then a second request with the key is told "in progress", not the answer:
-- Postfix may still refuse the message, and the answer is taken back then.
-- An answer left unconfirmed (the database failed after the 250) is
-- replayed once the claim is stale: the message was recorded and handed over.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS confirmed boolean NOT NULL DEFAULT true;
