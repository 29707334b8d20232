SELECT version FROM switchyard_migrations ORDER BY version
