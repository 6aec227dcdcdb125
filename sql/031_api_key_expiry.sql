-- API keys that stop working at a set time (/v1 CreateAPIKeyRequest's
-- expires_at). NULL: never. Checked where a key is looked up, so an
-- expired key is refused like a revoked one. Idempotent.

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
