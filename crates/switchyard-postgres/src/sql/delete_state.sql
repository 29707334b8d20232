-- Removes the stream's state if it is at the expected version ($2: 0 any, 2 exactly $3).
-- Returns a row when it did.
DELETE FROM states
WHERE stream = $1
  AND ($2::int = 0 OR ($2::int = 2 AND version = $3::bigint))
RETURNING version
