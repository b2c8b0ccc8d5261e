INSERT INTO ingest_client_grants (client_id, grant_kind, target_id) VALUES ($1, $2, $3)
