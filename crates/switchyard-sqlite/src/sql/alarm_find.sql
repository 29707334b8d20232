-- The alarm ?1 as stored, to claim it.
SELECT aggregate_id, due, message, holder, lease_until, attempts
FROM alarms WHERE id = ?1
