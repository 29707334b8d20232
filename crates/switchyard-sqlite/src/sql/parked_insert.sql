-- Records projection ?1's parked event at position ?2, in place of any record there.
INSERT INTO parked_events
    (projection, position, stream, version, event_type, error, attempts, parked_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT (projection, position) DO UPDATE SET
    stream = excluded.stream,
    version = excluded.version,
    event_type = excluded.event_type,
    error = excluded.error,
    attempts = excluded.attempts,
    parked_at = excluded.parked_at
