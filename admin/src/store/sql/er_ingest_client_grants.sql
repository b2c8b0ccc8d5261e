DELETE FROM ingest_client_grants WHERE grant_kind = 'patient' AND target_id = $1
