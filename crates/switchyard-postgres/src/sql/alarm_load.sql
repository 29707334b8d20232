SELECT id, aggregate_id, due, message FROM alarms
WHERE due >= $1 AND due < $2
ORDER BY due, id
