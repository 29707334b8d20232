-- One statement: of racing claims, the row lock lets one update, and the others re-check the
-- conditions against the row it left. Due by $4 (the caller may claim ahead), no other live
-- lease at $3; the claim counts one attempt, unless the same holder still holds a live lease
-- (its earlier claim took effect but answered too late: the same delivery).
UPDATE alarms SET holder = $2, lease_until = $5,
    attempts = attempts + CASE WHEN holder = $2 AND lease_until > $3 THEN 0 ELSE 1 END
WHERE id = $1 AND due <= $4 AND (holder IS NULL OR holder = $2 OR lease_until <= $3)
RETURNING aggregate_id, due, message, attempts
