-- API tokens expire and record their last use (issue #13).
-- Tokens that exist when this migration runs get the default lifetime (90
-- days) counted from the migration time, not from their creation: nobody is
-- locked out by the upgrade, and every token expires within 90 days of it.
-- `last_used_at` is written at most once a minute per token.

ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS expires_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS last_used_at timestamptz;
UPDATE api_tokens SET expires_at = now() + interval '90 days' WHERE expires_at IS NULL;
ALTER TABLE api_tokens ALTER COLUMN expires_at SET NOT NULL;
