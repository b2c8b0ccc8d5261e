INSERT INTO ingest_clients (name, kind, secret_hash, created_at, created_by)
VALUES ($1, $2, $3, now(), $4)
RETURNING client_id
