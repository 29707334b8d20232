-- Leases projection $1 to holder $2 until $4 unless another holder's lease is live at $3: a new
-- projection starts at position 0 in generation 1; a new generation starts unless $2 holds a
-- live lease already. One statement: of racing acquirers, the row lock (or the unique key) lets
-- one through and the others re-check against the row it left. Returns the generation granted,
-- or no row when refused.
INSERT INTO checkpoints AS c (name, position, generation, holder, lease_until)
VALUES ($1, 0, 1, $2, $4)
ON CONFLICT (name) DO UPDATE SET
    generation = c.generation + CASE WHEN c.holder = $2 AND c.lease_until > $3 THEN 0 ELSE 1 END,
    holder = $2,
    lease_until = $4
WHERE c.holder IS NULL OR c.holder = $2 OR c.lease_until <= $3
RETURNING generation
