-- Idempotency look-ups need only the last version a message recorded in a stream, and an
-- append's last event holds it: index that event alone, not every event of the append. Measured
-- here, the per-event index took about 40% of the time of inserting a 100-event append's rows.
--
-- `closes_append` marks an append's last event. Events written before this migration keep
-- their entries (the default marks them all), so every look-up still finds them; the answer
-- is the same, as an append's events are consecutive versions and its last is their maximum.
-- The index is built in the migration's transaction, holding off writes to `events` meanwhile.
ALTER TABLE events ADD COLUMN closes_append boolean NOT NULL DEFAULT true;

CREATE INDEX events_append_message ON events (stream, message_id, version)
    WHERE message_id <> '' AND closes_append;

DROP INDEX events_stream_message;

CREATE OR REPLACE FUNCTION recorded_version(stream_name text, message text)
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
      AND e.closes_append
      AND e.version > s.hidden_through;
    RETURN found;
END
$$;
