-- Frees the lease on projection $1, if holder $2 holds it in generation $3.
UPDATE checkpoints SET holder = NULL, lease_until = NULL
WHERE name = $1 AND holder = $2 AND generation = $3
