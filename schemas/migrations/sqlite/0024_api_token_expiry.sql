-- API tokens expire and record their last use (issue #13). Times are unix
-- microseconds. Tokens that exist when this migration runs get the default
-- lifetime (90 days) counted from the migration time. A token without an
-- expiry (only possible by writing the table by hand) counts as expired.
-- `last_used_at` is written at most once a minute per token.

ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN last_used_at INTEGER;
UPDATE api_tokens SET expires_at = (CAST(strftime('%s', 'now') AS INTEGER) + 90 * 86400) * 1000000
    WHERE expires_at IS NULL;
