SELECT c.name, c.kind, c.secret_hash, g.grant_kind, g.target_id
FROM ingest_clients c
LEFT JOIN ingest_client_grants g ON g.client_id = c.client_id
WHERE c.revoked_at IS NULL
ORDER BY c.client_id
