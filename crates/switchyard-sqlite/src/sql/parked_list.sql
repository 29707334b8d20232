-- Projection ?1's parked events, by position.
SELECT position, stream, version, event_type, error, attempts, parked_at
FROM parked_events WHERE projection = ?1 ORDER BY position
