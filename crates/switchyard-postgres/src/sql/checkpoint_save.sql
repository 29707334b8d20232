-- Moves projection $1 forward to $4 at time $5, fenced: only by holder $2 in generation $3.
-- In a caller's transaction the row stays locked until it ends, so a takeover waits for it.
UPDATE checkpoints SET position = $4, updated_at = $5
WHERE name = $1 AND holder = $2 AND generation = $3 AND position < $4
