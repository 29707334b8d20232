-- Sets projection $1 back to position 0 at time $4, fenced: only by holder $2 in generation $3,
-- and forgets its parked events in the same statement. Returns how many checkpoints it reset
-- (0: refused, nothing written).
WITH reset AS (
    UPDATE checkpoints SET position = 0, updated_at = $4
    WHERE name = $1 AND holder = $2 AND generation = $3
    RETURNING name
), forgotten AS (
    DELETE FROM parked_events WHERE projection IN (SELECT name FROM reset)
)
SELECT count(*) FROM reset
