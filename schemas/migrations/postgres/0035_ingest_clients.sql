-- Credentials of the HTTP ingestion endpoint (docs/http-ingest.md): one per
-- device or per app (a phone app, a vendor cloud). Only the SHA-256 of the
-- secret is stored, like api_tokens. A device credential has exactly one
-- device grant; an app credential any number of device and patient grants.
CREATE TABLE IF NOT EXISTS ingest_clients (
    client_id     bigserial PRIMARY KEY,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('device', 'app')),
    secret_hash   text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    revoked_at    timestamptz
);
-- One active credential per name; a revoked name can be reused.
CREATE UNIQUE INDEX IF NOT EXISTS ingest_clients_active_name ON ingest_clients (name) WHERE revoked_at IS NULL;

-- What a credential may post for: a device's readings (`device`) or a
-- patient's manual entries (`patient`).
CREATE TABLE IF NOT EXISTS ingest_client_grants (
    client_id     bigint NOT NULL REFERENCES ingest_clients (client_id),
    grant_kind    text NOT NULL CHECK (grant_kind IN ('device', 'patient')),
    target_id     text NOT NULL,
    PRIMARY KEY (client_id, grant_kind, target_id)
);
