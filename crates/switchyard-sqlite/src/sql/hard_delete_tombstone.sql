-- A hard delete of stream ?1: the tombstone of its soft delete, if any.
DELETE FROM tombstones WHERE stream = ?1
