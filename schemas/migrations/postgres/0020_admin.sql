-- Admin API: bearer tokens (stored as SHA-256 hashes, never in clear) and the
-- append-only audit trail of administrative changes (who, when, what).

CREATE TABLE IF NOT EXISTS api_tokens (
    token_id      bigserial PRIMARY KEY,
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('operator', 'physician')),
    physician_id  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    revoked_at    timestamptz,
    CHECK ((role = 'physician') = (physician_id IS NOT NULL))
);
-- One active token per name; a revoked name can be reused.
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

-- Append-only: ids only (patient, device, physician, episode) and non-clinical
-- details; never readings or values.
CREATE TABLE IF NOT EXISTS admin_audit (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    actor_role    text NOT NULL,
    action        text NOT NULL,
    target_kind   text NOT NULL,
    target_id     text NOT NULL,
    patient_id    text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS admin_audit_patient ON admin_audit (patient_id, id) WHERE patient_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS admin_audit_actor ON admin_audit (actor, id);

CREATE OR REPLACE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only';
END;
$$;
DROP TRIGGER IF EXISTS admin_audit_no_change ON admin_audit;
CREATE TRIGGER admin_audit_no_change BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
