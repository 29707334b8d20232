-- The statement creating the schema $1, with the name quoted by the server.
SELECT format('CREATE SCHEMA IF NOT EXISTS %I', $1::text)
