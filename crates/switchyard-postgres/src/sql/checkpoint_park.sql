-- Parks projection $1's event at position $4 (stream $6, version $7, type $8, error $9,
-- attempts $10, parked at $11), in place of any record there, and moves the checkpoint to $4 at
-- time $5 unless it is there already: one statement, fenced (only by holder $2 in generation
-- $3). Changes no row when refused.
WITH moved AS (
    UPDATE checkpoints SET
        position = GREATEST(position, $4),
        updated_at = CASE WHEN position < $4 THEN $5 ELSE updated_at END
    WHERE name = $1 AND holder = $2 AND generation = $3
    RETURNING name
)
INSERT INTO parked_events AS p
    (projection, position, stream, version, event_type, error, attempts, parked_at)
SELECT name, $4, $6, $7, $8, $9, $10, $11 FROM moved
ON CONFLICT (projection, position) DO UPDATE SET
    stream = excluded.stream,
    version = excluded.version,
    event_type = excluded.event_type,
    error = excluded.error,
    attempts = excluded.attempts,
    parked_at = excluded.parked_at
