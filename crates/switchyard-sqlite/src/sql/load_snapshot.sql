-- The snapshot of stream ?1.
SELECT version, schema_version, data FROM snapshots WHERE stream = ?1
