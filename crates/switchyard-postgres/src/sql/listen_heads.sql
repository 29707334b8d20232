-- The readable head (as readable_head.sql) and the newest position committed, readable or
-- still held back by an older transaction (0 when there is none).
SELECT coalesce((SELECT max(position)
                 FROM events
                 WHERE position < pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20),
                0),
       coalesce((SELECT max(position) FROM events), 0)
