-- Appends events to a stream if it is at the expected version, in one statement (so, outside
-- a transaction, in one round trip and one commit).
--
-- $1 stream, $2 expected kind (0 any, 1 no stream, 2 exactly), $3 expected version,
-- $4 event types, $5 schema versions, $6 data, $7 message id, $8 correlation id,
-- $9 causation id, $10 user metadata (JSON text).
--
-- Returns the stream's version before the append, or no row when the stream was not at the
-- expected version (then nothing is written).
--
-- Concurrency: `moved` updates the stream's row only if it is still at the expected version
-- once its row lock is held (a concurrent writer's update is waited for and re-checked), and
-- `created` inserts it only if no writer created it first. The row lock is per stream. The
-- unique (stream, version) key backs both.
WITH moved AS (
    UPDATE streams
    SET last_version = last_version + cardinality($4::text[])
    WHERE stream = $1
      AND ($2::int = 0 OR ($2::int = 2 AND last_version = $3::bigint))
    RETURNING last_version - cardinality($4::text[]) AS before
),
created AS (
    INSERT INTO streams (stream, last_version, hidden_through)
    SELECT $1, cardinality($4::text[]) - 1, -1
    WHERE $2::int IN (0, 1)
      AND NOT EXISTS (SELECT 1 FROM streams WHERE stream = $1)
    ON CONFLICT (stream) DO NOTHING
    RETURNING -1::bigint AS before
),
base AS (
    SELECT before FROM moved
    UNION ALL
    SELECT before FROM created
),
-- The first free position of this transaction's range: its id << 20, after any events an
-- earlier statement of the same transaction wrote.
slot AS (
    SELECT x.first + coalesce(
               (SELECT max(position) + 1 - x.first
                FROM events
                WHERE position >= x.first AND position < x.first + 1048576),
               0) AS next
    FROM (SELECT pg_current_xact_id()::text::bigint << 20 AS first) AS x
),
inserted AS (
    INSERT INTO events (position, stream, version, event_type, schema_version, data,
                        message_id, correlation_id, causation_id, user_metadata)
    SELECT slot.next + e.ord - 1, $1, base.before + e.ord, e.event_type, e.schema_version,
           e.data, $7, $8, $9, $10::text::jsonb
    FROM base, slot,
         unnest($4::text[], $5::bigint[], $6::bytea[])
             WITH ORDINALITY AS e (event_type, schema_version, data, ord)
    RETURNING 1
)
SELECT before FROM base
