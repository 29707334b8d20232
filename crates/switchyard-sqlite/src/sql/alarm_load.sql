-- The alarms due from ?1 (inclusive) until ?2 (exclusive), in due order.
SELECT id, aggregate_id, due, message, attempts FROM alarms
WHERE due >= ?1 AND due < ?2 ORDER BY due, id
