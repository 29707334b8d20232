-- Appends a batch of appends, each to its own stream and only if that stream is at the version
-- it expects and its message has not recorded events in it yet, in one statement (so, outside a
-- transaction, one round trip and one commit for the whole batch). No stream appears twice in a
-- batch.
--
-- Per append: $1 stream, $2 expected kind (0 any, 1 no stream, 2 exactly), $3 expected
-- version, $4 number of events, $5 message id, $6 correlation id, $7 causation id, $8 user
-- metadata (JSON text). Per event: $9 its append (1-based index into the above), $10 its index
-- in its append (from 1), $11 type, $12 schema version, $13 data.
--
-- Returns a row per append that was written (its index, its stream's version before it, NULL,
-- the position of its last event) and per append refused because its message already recorded
-- visible events in the stream although the stream is at the expected version (its index,
-- NULL, the last version the message recorded, NULL). An append without a row wrote nothing: it was not at its expected version,
-- or lost a race that running it again settles.
--
-- Concurrency: `locked` takes the row locks of the batch's existing streams in stream order
-- (so batches never deadlock each other) and waits for concurrent writers; `moved` then moves
-- each stream that is still at its expected version. `created` inserts the new streams, in
-- stream order, unless another writer created one first. The locks are per stream, never per
-- table; the unique (stream, version) key backs them.
--
-- Duplicates: `recorded` probes the (stream, message_id, version) index in this statement's
-- snapshot. Every append moves its stream's row, so the probe saw every event of the stream
-- exactly when the row locked is the row the snapshot saw (`seen`): an append with a message id
-- whose stream moved since the snapshot is left without a row, to be run again.
WITH req AS (
    SELECT *
    FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                $7::text[], $8::text[])
        WITH ORDINALITY AS r (stream, kind, expected, count, message_id, correlation_id,
                              causation_id, user_metadata, req)
),
seen AS (
    SELECT s.stream, s.last_version, s.hidden_through
    FROM streams s
    WHERE s.stream IN (SELECT stream FROM req)
),
-- The rows as locked: the latest committed version of each, which may be newer than `seen`.
locked AS (
    SELECT s.stream, s.last_version, s.hidden_through
    FROM streams s
    WHERE s.stream IN (SELECT stream FROM req)
    ORDER BY s.stream
    FOR UPDATE
),
recorded AS (
    SELECT r.req, max(e.version) AS version
    FROM req r
    JOIN seen v ON v.stream = r.stream
    JOIN events e ON e.stream = r.stream AND e.message_id = r.message_id
    WHERE r.message_id <> ''
      AND e.message_id <> ''
      AND e.version > v.hidden_through
    GROUP BY r.req
),
-- The appends whose stream is at the expected version as locked, with what they found.
ready AS (
    SELECT r.req, d.version AS recorded
    FROM req r
    JOIN locked l ON l.stream = r.stream
    JOIN seen v ON v.stream = r.stream
    LEFT JOIN recorded d ON d.req = r.req
    WHERE (r.kind = 0 OR (r.kind = 2 AND l.last_version = r.expected))
      AND (r.message_id = ''
           OR (l.last_version = v.last_version AND l.hidden_through = v.hidden_through))
),
moved AS (
    UPDATE streams s
    SET last_version = s.last_version + r.count
    FROM req r
    WHERE s.stream = r.stream
      AND s.stream IN (SELECT stream FROM locked)
      AND r.req IN (SELECT req FROM ready WHERE recorded IS NULL)
      AND (r.kind = 0 OR (r.kind = 2 AND s.last_version = r.expected))
    RETURNING r.req, s.last_version - r.count AS before
),
created AS (
    INSERT INTO streams (stream, last_version, hidden_through)
    SELECT r.stream, r.count - 1, -1
    FROM req r
    WHERE r.kind IN (0, 1)
      AND NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream = r.stream)
    ORDER BY r.stream
    ON CONFLICT (stream) DO NOTHING
    RETURNING stream
),
base AS (
    SELECT req, before FROM moved
    UNION ALL
    SELECT r.req, -1::bigint FROM created c JOIN req r ON r.stream = c.stream
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
    SELECT slot.next + e.ord - 1, r.stream, b.before + e.idx, e.event_type, e.schema_version,
           e.data, r.message_id, r.correlation_id, r.causation_id, r.user_metadata::jsonb
    FROM unnest($9::bigint[], $10::bigint[], $11::text[], $12::bigint[], $13::bytea[])
             WITH ORDINALITY AS e (req, idx, event_type, schema_version, data, ord)
    JOIN base b ON b.req = e.req
    JOIN req r ON r.req = e.req
    CROSS JOIN slot
    RETURNING stream, position
)
SELECT b.req, b.before, NULL::bigint AS recorded,
       (SELECT max(i.position) FROM inserted i WHERE i.stream = r.stream) AS last_position
FROM base b
JOIN req r ON r.req = b.req
UNION ALL
SELECT req, NULL::bigint, recorded, NULL::bigint FROM ready WHERE recorded IS NOT NULL
