-- The last version of stream ?1 that message ?2 recorded and a soft delete did not hide; NULL
-- if none (an empty message id matches nothing).
SELECT max(version) FROM events INDEXED BY events_by_message
WHERE message_id = ?2 AND message_id <> '' AND stream = ?1
  AND version > coalesce((SELECT hidden_through FROM tombstones WHERE stream = ?1), -1)
