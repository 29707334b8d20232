-- Sets projection $1 back to position 0 at time $4, fenced: only by holder $2 in generation $3.
UPDATE checkpoints SET position = 0, updated_at = $4
WHERE name = $1 AND holder = $2 AND generation = $3
