-- The readable head: the greatest position below the oldest transaction still running anywhere
-- on the server (read_all's bound), 0 when there is none. Every event at or below it is
-- committed, and every transaction still to commit writes positions above it.
SELECT coalesce(max(position), 0)
FROM events
WHERE position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20
