-- The migrations applied to this schema, created by the first run.
CREATE TABLE IF NOT EXISTS switchyard_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
