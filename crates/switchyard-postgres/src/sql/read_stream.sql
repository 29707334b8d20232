-- One page of a stream's visible events from version $2, at most $3.
SELECT e.stream, e.version, e.position, e.event_type, e.schema_version, e.data, e.message_id,
       e.correlation_id, e.causation_id, e.user_metadata::text, e.recorded_at
FROM events e
JOIN streams s ON s.stream = e.stream
WHERE e.stream = $1
  AND e.version >= $2
  AND e.version > s.hidden_through
ORDER BY e.version
LIMIT $3
