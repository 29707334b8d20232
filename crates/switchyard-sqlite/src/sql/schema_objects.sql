-- How many objects (tables, indexes, ...) the database holds: a file without Switchyard's
-- application id must hold none to be taken.
SELECT count(*) FROM sqlite_schema
