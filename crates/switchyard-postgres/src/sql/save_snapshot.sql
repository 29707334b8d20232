INSERT INTO snapshots (stream, version, schema_version, data)
VALUES ($1, $2, $3, $4)
ON CONFLICT (stream) DO UPDATE
SET version = EXCLUDED.version,
    schema_version = EXCLUDED.schema_version,
    data = EXCLUDED.data,
    saved_at = now()
