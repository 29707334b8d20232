-- Projection $1's row.
SELECT position, generation, holder, lease_until FROM checkpoints WHERE name = $1
