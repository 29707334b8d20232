-- Removes the stream's row, if it is at the expected version ($2: 0 any, 2 exactly $3). Holds
-- the row's lock until the transaction ends, so no append to it slips in.
DELETE FROM streams
WHERE stream = $1
  AND ($2::int = 0 OR ($2::int = 2 AND last_version = $3::bigint))
RETURNING last_version
