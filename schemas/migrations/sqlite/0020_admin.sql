-- Admin API: bearer tokens (SHA-256 hashes) and the append-only audit trail of
-- administrative changes. Times are unix microseconds.

CREATE TABLE IF NOT EXISTS api_tokens (
    token_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('operator', 'physician')),
    physician_id  TEXT,
    created_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    INTEGER,
    CHECK ((role = 'physician') = (physician_id IS NOT NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE IF NOT EXISTS admin_audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    actor_role    TEXT NOT NULL,
    action        TEXT NOT NULL,
    target_kind   TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    patient_id    TEXT,
    details       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS admin_audit_patient ON admin_audit (patient_id, id) WHERE patient_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS admin_audit_actor ON admin_audit (actor, id);

CREATE TRIGGER IF NOT EXISTS admin_audit_no_update BEFORE UPDATE ON admin_audit
BEGIN
    SELECT RAISE(ABORT, 'admin_audit is append-only');
END;
CREATE TRIGGER IF NOT EXISTS admin_audit_no_delete BEFORE DELETE ON admin_audit
BEGIN
    SELECT RAISE(ABORT, 'admin_audit is append-only');
END;
