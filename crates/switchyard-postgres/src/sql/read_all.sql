-- Up to $2 visible events from position $1 on, in the global order, stopping below the oldest
-- transaction still running anywhere on the server: every transaction older than it has
-- committed or rolled back, and every later one writes positions above it (positions are
-- transaction id << 20), so no event may still appear below what this returns.
--
-- Also returns that bound and the newest position written (committed or not yet safe to
-- return), so the caller can wait for the transactions holding events back. The left join
-- yields one row of NULL event columns when no event is returned.
WITH bound AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20 AS below
),
page AS (
    SELECT e.stream, e.version, e.position, e.event_type, e.schema_version, e.data,
           e.message_id, e.correlation_id, e.causation_id, e.user_metadata::text AS user_metadata,
           e.recorded_at
    FROM events e
    JOIN streams s ON s.stream = e.stream
    CROSS JOIN bound
    WHERE e.position >= $1
      AND e.position < bound.below
      AND e.version > s.hidden_through
    ORDER BY e.position
    LIMIT $2
)
SELECT bound.below, (SELECT max(position) FROM events) AS newest,
       page.stream, page.version, page.position, page.event_type, page.schema_version,
       page.data, page.message_id, page.correlation_id, page.causation_id, page.user_metadata,
       page.recorded_at
FROM bound
LEFT JOIN page ON true
ORDER BY page.position
