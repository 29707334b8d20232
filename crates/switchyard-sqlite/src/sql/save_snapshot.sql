-- Saves the snapshot of stream ?1 at version ?2 (schema version ?3, data ?4), replacing any.
INSERT INTO snapshots (stream, version, schema_version, data) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (stream) DO UPDATE SET version = excluded.version,
    schema_version = excluded.schema_version, data = excluded.data
