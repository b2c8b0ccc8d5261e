UPDATE ingest_clients SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL
