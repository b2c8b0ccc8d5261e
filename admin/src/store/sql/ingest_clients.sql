SELECT c.client_id, c.name, c.kind, c.created_at, c.created_by, c.revoked_at, g.grant_kind, g.target_id
FROM ingest_clients c
LEFT JOIN ingest_client_grants g ON g.client_id = c.client_id
ORDER BY c.name, c.client_id, g.grant_kind, g.target_id
