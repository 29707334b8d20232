-- One event of an append: stream ?1, version ?2, type ?3, schema version ?4, data ?5, message,
-- correlation and causation ids ?6 to ?8, user metadata (JSON) ?9, time ?10 (microseconds).
INSERT INTO events (stream, version, event_type, schema_version, data, message_id,
                    correlation_id, causation_id, user_metadata, recorded_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
