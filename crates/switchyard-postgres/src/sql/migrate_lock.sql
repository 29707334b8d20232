-- Serializes the migrations of one schema ($1) across processes, until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('switchyard-postgres migrations of ' || $1::text))
