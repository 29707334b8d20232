-- The last version message `message` recorded in stream `stream_name` and still shows (above
-- the stream's soft-delete mark), NULL if none: the append statement's duplicate probe, a
-- look-up of the stream's row and one of the (stream, message_id, version) index.
--
-- VOLATILE and in PL/pgSQL, so its query takes a snapshot of its own each time it runs (a
-- VOLATILE function's queries do, and PL/pgSQL is never inlined into its caller). The append
-- statement calls it once it holds the stream's row lock: the probe then sees the stream's row
-- and every event of it committed by the writers that held the lock before, which the
-- statement's own snapshot, taken before it waited for the lock, may not.
CREATE FUNCTION recorded_version(stream_name text, message text)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
AS $$
DECLARE
    found bigint;
BEGIN
    SELECT max(e.version) INTO found
    FROM streams s
    JOIN events e ON e.stream = s.stream
    WHERE s.stream = stream_name
      AND e.message_id = message
      AND e.message_id <> ''
      AND e.version > s.hidden_through;
    RETURN found;
END
$$;
