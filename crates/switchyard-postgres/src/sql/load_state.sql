SELECT version, schema_version, data FROM states WHERE stream = $1
