-- Up to ?3 visible events of stream ?1 from version ?2 on, in version order. The columns are
-- those of read_all.sql, in the same order, but the stream's name, which the reader knows, is a
-- NULL literal: it costs nothing per row, where a column costs a look into the record. One
-- bound on the version (past the tombstone of a soft delete), so the (stream, version) index is
-- scanned from it.
SELECT NULL, e.version, e.position, e.event_type, e.schema_version,
       e.data, e.message_id, e.correlation_id, e.causation_id, e.user_metadata, e.recorded_at
FROM events e
WHERE e.stream = ?1
  AND e.version >= max(?2, coalesce((SELECT hidden_through FROM tombstones WHERE stream = ?1), -1) + 1)
ORDER BY e.version LIMIT ?3
