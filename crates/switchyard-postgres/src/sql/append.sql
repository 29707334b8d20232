-- Appends a batch of appends, each to its own stream and only if that stream is at the version
-- it expects and its message has not recorded events in it yet, in one statement (so, outside a
-- transaction, one round trip and one commit for the whole batch). No stream appears twice in a
-- batch, and the batch is in stream order.
--
-- Per append: $1 stream, $2 expected kind (0 any, 1 no stream, 2 exactly), $3 expected
-- version, $4 number of events, $5 message id, $6 correlation id, $7 causation id, $8 user
-- metadata (JSON text). Per event: $9 its append (1-based index into the above), $10 its index
-- in its append (from 1), $11 type, $12 schema version, $13 data.
--
-- Returns a row per append that was written (its index, its stream's version before it, NULL,
-- the position of its last event) and per append refused because its message already recorded
-- visible events in the stream although the stream is at the expected version (its index,
-- NULL, the last version the message recorded, NULL). An append without a row wrote nothing
-- because its stream was not at its expected version when locked.
--
-- Concurrency: `locked` takes the row locks of the batch's existing streams in stream order
-- (so batches never deadlock each other) and waits for concurrent writers; `moved` then moves
-- each stream that is at its expected version as locked. `created` inserts the streams that
-- had no row to lock (new, or hard-deleted meanwhile), in stream order; where another writer
-- created one after this statement's snapshot, the insert waits for it and then locks and moves
-- that row for an `any` append (`raced` refuses a duplicate there), and gives way for a
-- `no stream` one. The locks are per stream, never per table; the unique (stream, version) key
-- backs them.
--
-- Duplicates: `ready`, `created` and `raced` probe the index of each append's last event
-- (`closes_append`, migration 7) through recorded_version(), whose query takes a fresh snapshot, once the stream's row is
-- locked: it sees every event the stream's earlier writers committed, so the probe and the
-- version check both read the stream as locked, and no append has to run again.
--
-- Plans: the statement is prepared once per connection and its generic plan kept, often from
-- when the tables were nearly empty. Its reads of `streams` and `events` are therefore look-ups
-- by key from the batch's rows (a lateral subquery, a function's query, the insert's conflict
-- check), which no plan turns into a scan of the whole table as it grows; `moved` joins its
-- few rows to `streams` on the key, which plans probe by index.
WITH req AS (
    SELECT *
    FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                $7::text[], $8::text[])
        WITH ORDINALITY AS r (stream, kind, expected, count, message_id, correlation_id,
                              causation_id, user_metadata, req)
),
-- The batch's existing streams as locked: the latest committed version of each row, locked in
-- the batch's (stream) order, one key look-up each.
locked AS (
    SELECT r.req, l.last_version, l.hidden_through
    FROM req r
    CROSS JOIN LATERAL (
        SELECT s.last_version, s.hidden_through
        FROM streams s
        WHERE s.stream = r.stream
        FOR UPDATE
    ) AS l
),
-- The appends whose stream is at the expected version as locked, with the last version their
-- message recorded in it (NULL: none, or no message id), probed under the lock.
ready AS (
    SELECT r.req,
           CASE WHEN r.message_id <> '' THEN recorded_version(r.stream, r.message_id) END
               AS recorded
    FROM locked l
    JOIN req r ON r.req = l.req
    WHERE r.kind = 0 OR (r.kind = 2 AND l.last_version = r.expected)
),
moved AS (
    UPDATE streams s
    SET last_version = s.last_version + r.count
    FROM ready d
    JOIN req r ON r.req = d.req
    WHERE s.stream = r.stream
      AND d.recorded IS NULL
      AND (r.kind = 0 OR (r.kind = 2 AND s.last_version = r.expected))
    RETURNING r.req, s.last_version - r.count AS before
),
-- The streams not found when locking (never created, or hard-deleted meanwhile) that an append
-- may create.
created AS (
    INSERT INTO streams AS s (stream, last_version, hidden_through)
    SELECT r.stream, r.count - 1, -1
    FROM req r
    WHERE r.kind IN (0, 1)
      AND NOT EXISTS (SELECT 1 FROM locked l WHERE l.req = r.req)
    ORDER BY r.stream
    ON CONFLICT (stream) DO UPDATE
    -- excluded.last_version + 1: the append's number of events.
    SET last_version = s.last_version + excluded.last_version + 1
    WHERE EXISTS (
        SELECT 1
        FROM req r
        WHERE r.stream = excluded.stream
          AND r.kind = 0
          AND (r.message_id = '' OR recorded_version(r.stream, r.message_id) IS NULL)
    )
    RETURNING s.stream, s.last_version
),
-- The `any` appends whose stream another writer created after this statement's snapshot, with
-- their message already in it: `created` locked the row and left it. Read once `created` is
-- done (an append is known not to be in it only then).
raced AS (
    SELECT r.req, recorded_version(r.stream, r.message_id) AS recorded
    FROM req r
    WHERE r.kind = 0
      AND r.message_id <> ''
      AND NOT EXISTS (SELECT 1 FROM locked l WHERE l.req = r.req)
      AND NOT EXISTS (SELECT 1 FROM created c WHERE c.stream = r.stream)
),
base AS (
    SELECT req, before FROM moved
    UNION ALL
    SELECT r.req, c.last_version - r.count FROM created c JOIN req r ON r.stream = c.stream
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
                        message_id, correlation_id, causation_id, user_metadata, closes_append)
    SELECT slot.next + e.ord - 1, r.stream, b.before + e.idx, e.event_type, e.schema_version,
           e.data, r.message_id, r.correlation_id, r.causation_id, r.user_metadata::jsonb,
           e.idx = r.count
    FROM unnest($9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::bytea[])
             WITH ORDINALITY AS e (req, idx, event_type, schema_version, data, ord)
    JOIN base b ON b.req = e.req
    JOIN req r ON r.req = e.req
    CROSS JOIN slot
    RETURNING stream, position
),
last AS (
    SELECT stream, max(position) AS position FROM inserted GROUP BY stream
)
SELECT b.req, b.before, NULL::bigint AS recorded, p.position AS last_position
FROM base b
JOIN req r ON r.req = b.req
LEFT JOIN last p ON p.stream = r.stream
UNION ALL
SELECT req, NULL::bigint, recorded, NULL::bigint FROM ready WHERE recorded IS NOT NULL
UNION ALL
SELECT req, NULL::bigint, recorded, NULL::bigint FROM raced WHERE recorded IS NOT NULL
