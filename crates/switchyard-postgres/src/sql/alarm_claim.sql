-- One statement: of racing claims, the row lock lets one update, and the others re-check the
-- conditions against the row it left.
UPDATE alarms SET holder = $2, lease_until = $4
WHERE id = $1 AND due <= $3 AND (holder IS NULL OR holder = $2 OR lease_until <= $3)
RETURNING aggregate_id, due, message
