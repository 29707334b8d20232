-- Whether stream ?1 has an event a soft delete did not hide.
SELECT coalesce(max(version) > coalesce((SELECT hidden_through FROM tombstones WHERE stream = ?1), -1), 0)
FROM events WHERE stream = ?1
