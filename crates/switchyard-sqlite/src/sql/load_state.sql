-- The state of stream ?1.
SELECT version, schema_version, data FROM states WHERE stream = ?1
