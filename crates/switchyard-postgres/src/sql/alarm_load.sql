SELECT id, aggregate_id, due, message, attempts FROM alarms
WHERE due >= $1 AND due < $2
ORDER BY due, id
