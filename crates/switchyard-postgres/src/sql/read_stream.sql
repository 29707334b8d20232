-- A stream's visible events from version $2 on, in order (read as a stream of rows and handed
-- out in pages).
SELECT e.stream, e.version, e.position, e.event_type, e.schema_version, e.data, e.message_id,
       e.correlation_id, e.causation_id, e.user_metadata::text, e.recorded_at
FROM events e
JOIN streams s ON s.stream = e.stream
WHERE e.stream = $1
  AND e.version >= $2
  AND e.version > s.hidden_through
ORDER BY e.version
