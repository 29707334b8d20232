-- Moves projection ?1 forward to ?4 at time ?5, fenced: only by holder ?2 in generation ?3.
UPDATE checkpoints SET position = ?4, updated_at = ?5
WHERE name = ?1 AND holder = ?2 AND generation = ?3 AND position < ?4
