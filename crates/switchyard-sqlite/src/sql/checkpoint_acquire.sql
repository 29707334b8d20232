-- Leases projection ?1 to holder ?2 until ?4 unless another holder's lease is live at ?3: a new
-- projection starts at position 0 in generation 1; a new generation starts unless ?2 holds a
-- live lease already. Returns the generation granted, or no row when refused.
INSERT INTO checkpoints (name, position, generation, holder, lease_until)
VALUES (?1, 0, 1, ?2, ?4)
ON CONFLICT (name) DO UPDATE SET
    generation = generation + CASE WHEN holder = ?2 AND lease_until > ?3 THEN 0 ELSE 1 END,
    holder = ?2,
    lease_until = ?4
WHERE holder IS NULL OR holder = ?2 OR lease_until <= ?3
RETURNING generation
