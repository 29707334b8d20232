-- Up to ?2 visible events from position ?1 on, in the global order. The columns, in the order
-- the event reader takes them: stream, version, position, type, schema version, data, message,
-- correlation and causation ids, user metadata, time.
SELECT e.stream, e.version, e.position, e.event_type, e.schema_version,
       e.data, e.message_id, e.correlation_id, e.causation_id, e.user_metadata, e.recorded_at
FROM events e
LEFT JOIN tombstones t ON t.stream = e.stream
WHERE e.position >= ?1 AND e.version > coalesce(t.hidden_through, -1)
ORDER BY e.position LIMIT ?2
