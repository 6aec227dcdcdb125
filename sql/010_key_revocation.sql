-- Revoked API keys are announced, so that API processes close the
-- WebSockets opened with them at once (api/realtime.py). A trigger rather
-- than the revoking code: keys also go with their agent or user (ON DELETE
-- CASCADE), and every way must be heard. Idempotent.

CREATE OR REPLACE FUNCTION api_key_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL) THEN
        PERFORM pg_notify('e2a_key_revoked', json_build_object('key_id', OLD.id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER api_keys_revoked
    AFTER UPDATE OF revoked_at OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_key_revoked();
