-- Any change to the domains table is announced, so that policy services
-- drop the relay_domains answers they cache (policy/socketmap.py): a domain
-- verified through the API is accepted at once, a deleted one refused at
-- once. A trigger rather than the code that changes domains: every way a row
-- changes (API, worker expiry, a cascade, psql) must be heard. One
-- notification per statement; PostgreSQL folds identical ones within a
-- transaction and sends them on commit. Idempotent.

CREATE OR REPLACE FUNCTION domains_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('e2a_domains_changed', '');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER domains_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION domains_changed();
