INSERT INTO switchyard_migrations (version, name) VALUES ($1, $2)
