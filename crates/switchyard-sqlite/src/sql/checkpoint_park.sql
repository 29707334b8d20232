-- Moves projection ?1 forward to ?4 at time ?5 unless it is there already, fenced: only by
-- holder ?2 in generation ?3. Run with parked_insert.sql in one transaction.
UPDATE checkpoints SET
    position = max(position, ?4),
    updated_at = CASE WHEN position < ?4 THEN ?5 ELSE updated_at END
WHERE name = ?1 AND holder = ?2 AND generation = ?3
