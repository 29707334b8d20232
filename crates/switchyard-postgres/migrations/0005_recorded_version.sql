-- The last version message `message` recorded in stream `stream_name` above version `hidden`
-- (the stream's soft-delete mark), NULL if it recorded none there: the append statement's
-- duplicate probe, one index look-up on (stream, message_id, version).
--
-- VOLATILE and in PL/pgSQL, so its query takes a snapshot of its own each time it runs (a
-- VOLATILE function's queries do, and PL/pgSQL is never inlined into the caller). The append
-- statement calls it once it holds the stream's row lock: the probe then sees every event of
-- the stream committed by the writers that held the lock before, which the statement's own
-- snapshot, taken before it waited for the lock, may not.
CREATE FUNCTION recorded_version(stream_name text, message text, hidden bigint)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
    found bigint;
BEGIN
    SELECT max(e.version) INTO found
    FROM events e
    WHERE e.stream = stream_name
      AND e.message_id = message
      AND e.message_id <> ''
      AND e.version > hidden;
    RETURN found;
END
$$;
