-- Credentials of the HTTP ingestion endpoint (see the PostgreSQL migration).
CREATE TABLE IF NOT EXISTS ingest_clients (
    client_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('device', 'app')),
    secret_hash   TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    revoked_at    INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS ingest_clients_active_name ON ingest_clients (name) WHERE revoked_at IS NULL;

CREATE TABLE IF NOT EXISTS ingest_client_grants (
    client_id     INTEGER NOT NULL REFERENCES ingest_clients (client_id),
    grant_kind    TEXT NOT NULL CHECK (grant_kind IN ('device', 'patient')),
    target_id     TEXT NOT NULL,
    PRIMARY KEY (client_id, grant_kind, target_id)
);
