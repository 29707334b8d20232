-- Hides the stream's events through its last version, if it is at the expected version
-- ($2: 0 any, 2 exactly $3). Returns a row when it did.
UPDATE streams
SET hidden_through = last_version
WHERE stream = $1
  AND ($2::int = 0 OR ($2::int = 2 AND last_version = $3::bigint))
RETURNING last_version
