-- Extends the lease on projection $1 to $4, if holder $2 holds it in generation $3.
UPDATE checkpoints SET lease_until = $4
WHERE name = $1 AND holder = $2 AND generation = $3
